"""Tokenizers, cached token ids and length-bucketed, dynamically padded batches for the transformer.

Source code is long-tailed in length (most functions are short, a few are huge), so padding every
batch to 512 wastes most of the compute: batches are built from length-sorted pools and padded only
to their own longest member. Encoding a corpus is cheap in Rust but not free, so ids are cached on
disk under a key that changes whenever the records, the tokenizer or the truncation change.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, Sampler, SequentialSampler
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from streamguard_pl.errors import InputError
from streamguard_pl.jsonsafe import atomic_open, atomic_write_json, read_json

from .records import records_fingerprint
from .samplers import EpochRandomSampler, epoch_seed

__all__ = [
    "DEFAULT_MODEL_MAX_LENGTH",
    "TokenizerLoadError",
    "load_tokenizer",
    "train_bpe_tokenizer",
    "get_tokenizer",
    "tokenizer_fingerprint",
    "texts_fingerprint",
    "encode_texts",
    "encode_records_cached",
    "LengthBucketBatchSampler",
    "PadCollator",
    "TokenDataset",
]

log = logging.getLogger(__name__)

Truncation = Literal["head", "head_tail"]
DEFAULT_MODEL_MAX_LENGTH = 512  # RoBERTa/CodeBERT positions; used when a tokenizer does not say
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa order: ids 0..4
_PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>", "<|padding|>")
_CORPUS_FILE = "corpus_fingerprint.json"
_CACHE_FORMAT = 1


class TokenizerLoadError(InputError, OSError):
    """A tokenizer could not be found or built; the message lists what was tried."""


# --------------------------------------------------------------------------- loading and training


def _offline_mode() -> bool:
    try:
        from huggingface_hub import is_offline_mode
    except ImportError:  # older huggingface_hub: the flag is read once at import
        from huggingface_hub.constants import HF_HUB_OFFLINE

        return bool(HF_HUB_OFFLINE)
    return bool(is_offline_mode())


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else with separators is meant as a folder.
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def load_tokenizer(
    name_or_path: str, trust_remote_code: bool = False, local_files_only: bool | None = None
) -> PreTrainedTokenizerBase:
    """AutoTokenizer from a local folder or hub id, with a pad token and a finite ``model_max_length``.

    ``local_files_only=None`` follows HF_HUB_OFFLINE. transformers' own errors for a missing folder
    read as bad hub ids ("Repo id must be in the form ..."), so missing paths are reported here.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    is_dir = path.is_dir()
    if path.is_file():
        raise TokenizerLoadError(f"{path.resolve()} is a file; give the folder that holds the tokenizer files")
    if not is_dir and _looks_like_path(name):
        raise TokenizerLoadError(f"tokenizer folder not found: {path.resolve()} (from {name!r})")
    offline = _offline_mode() if local_files_only is None else bool(local_files_only)
    source = str(path) if is_dir else name
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=offline)
    except (OSError, ValueError) as exc:
        if is_dir:
            tried = f"local folder {path.resolve()} (holds: {sorted(p.name for p in path.iterdir())})"
        else:
            from huggingface_hub.constants import HF_HUB_CACHE

            tried = (
                f"hub id {name!r} with local_files_only={offline} (HF_HUB_OFFLINE="
                f"{os.environ.get('HF_HUB_OFFLINE', 'unset')}), cache {HF_HUB_CACHE}; no local folder of that name"
            )
        raise TokenizerLoadError(f"could not load tokenizer: tried {tried}: {exc}") from exc
    _ensure_pad_token(tok, name)
    if not tok.model_max_length or tok.model_max_length > 1_000_000:  # HF's "unknown" is 1e30
        tok.model_max_length = DEFAULT_MODEL_MAX_LENGTH
    return tok


def _ensure_pad_token(tok: PreTrainedTokenizerBase, name: str) -> None:
    # Reuse an existing token rather than add one: adding would grow the vocab past the encoder's embedding.
    if tok.pad_token is not None:
        return
    vocab = tok.get_vocab()
    for candidate in (tok.eos_token, tok.unk_token, *_PAD_CANDIDATES):
        if candidate is not None and candidate in vocab:
            tok.pad_token = candidate
            log.info("tokenizer %s has no pad token; padding with %r", name, candidate)
            return
    raise TokenizerLoadError(f"tokenizer {name!r} has no pad, eos or unk token to pad with; set one in its config")


def train_bpe_tokenizer(
    texts: Iterable[str], save_dir: str | Path, vocab_size: int = 8000, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Byte-level BPE (RoBERTa specials, ``<s> ... </s>``) trained on ``texts`` and saved to ``save_dir``.

    Byte-level means no code point is ever unknown and decode(encode(code)) == code, which matters
    for source full of odd bytes. The returned tokenizer is the one reloaded from ``save_dir``, so
    training and test/predict use the very same files.
    """
    from tokenizers import ByteLevelBPETokenizer, processors

    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    bpe.train_from_iterator(
        iter(texts), vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS), show_progress=False,
    )
    bpe.post_processor = processors.RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>", model_max_length=DEFAULT_MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,  # would turn "a ," into "a," on decode
    )
    save_dir = Path(save_dir)
    tok.save_pretrained(save_dir)
    _portable_tokenizer_class(save_dir / "tokenizer_config.json")
    return load_tokenizer(str(save_dir), local_files_only=True)


def _portable_tokenizer_class(config_path: Path) -> None:
    # transformers 5 writes "TokenizersBackend", a name 4.x cannot resolve; 5.x reads the 4.x name fine.
    config = read_json(config_path)
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        atomic_write_json(config_path, config)


def texts_fingerprint(texts: Iterable[str]) -> str:
    """sha256 over the texts in order (length-prefixed, so boundaries cannot shift)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(f"{len(b)}:".encode())
        h.update(b)
    return h.hexdigest()


def get_tokenizer(
    name_or_path: str | None, train_texts: Sequence[str] | None, save_dir: str | Path, vocab_size: int = 8000
) -> PreTrainedTokenizerBase:
    """A named tokenizer, else the one trained on ``train_texts`` in ``save_dir`` (trained there if stale).

    With neither a name nor texts (test/predict from a run folder) the tokenizer already in
    ``save_dir`` is loaded. Call on one process only (``prepare_data``): training writes ``save_dir``.
    """
    if name_or_path:
        return load_tokenizer(name_or_path)
    save_dir = Path(save_dir)
    marker = save_dir / _CORPUS_FILE
    if train_texts is None:
        if not marker.is_file():
            raise TokenizerLoadError(
                f"no tokenizer name given, no training texts, and no trained tokenizer in {save_dir.resolve()}"
            )
        return load_tokenizer(str(save_dir), local_files_only=True)
    wanted = {"texts_sha256": texts_fingerprint(train_texts), "n_texts": len(train_texts), "vocab_size": vocab_size}
    if marker.is_file():
        saved = read_json(marker)
        if all(saved.get(k) == v for k, v in wanted.items()):
            try:
                tok = load_tokenizer(str(save_dir), local_files_only=True)
            except TokenizerLoadError as exc:
                log.warning("retraining tokenizer in %s: %s", save_dir, exc)
            else:
                if tokenizer_fingerprint(tok) == saved.get("tokenizer_sha256"):
                    return tok
                log.warning("retraining tokenizer in %s: files differ from the fingerprint", save_dir)
        marker.unlink()  # an interrupted retrain must not look complete
    tok = train_bpe_tokenizer(train_texts, save_dir, vocab_size=vocab_size)
    atomic_write_json(marker, {**wanted, "tokenizer_sha256": tokenizer_fingerprint(tok)})
    return tok


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of what decides the ids: vocab, merges, normalizer, pre/post-processing, special tokens.

    The Rust tokenizer's truncation/padding state is dropped: transformers leaves the last call's
    settings on it, which would otherwise change the fingerprint of an unchanged tokenizer.
    """
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    else:  # a slow (python) tokenizer: hash its vocabulary files
        with tempfile.TemporaryDirectory() as tmp:
            for f in sorted(tokenizer.save_vocabulary(tmp)):
                h.update(Path(f).name.encode())
                h.update(Path(f).read_bytes())
        h.update(type(tokenizer).__name__.encode())
    specials = {k: str(v) for k, v in tokenizer.special_tokens_map.items()}
    h.update(json.dumps(specials, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


# --------------------------------------------------------------------------- encoding


def _special_layout(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after one sequence.

    Found by encoding a probe with and without specials: transformers 5 dropped
    ``build_inputs_with_special_tokens`` from fast tokenizers, and 4.x's generic one adds none.
    """
    probe = "x"
    with_sp = tokenizer(probe, add_special_tokens=True)["input_ids"]
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for start in range(len(with_sp) - len(plain) + 1):
        if with_sp[start:start + len(plain)] == plain:
            return start, len(with_sp) - start - len(plain)
    raise ValueError(f"cannot locate the text between the special tokens of {type(tokenizer).__name__}")


def encode_untruncated(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Ids with special tokens, whole: what truncation starts from, and how long each text really is."""
    return tokenizer(
        list(texts), add_special_tokens=True, padding=False, truncation=False, verbose=False,
        return_attention_mask=False, return_token_type_ids=False,
    )["input_ids"]


def encode_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int = 512,
    truncation: Truncation = "head",
    head_fraction: float = 0.25,
) -> list[list[int]]:
    """Ids with special tokens, at most ``max_length`` each, from one batched tokenizer call.

    "head" keeps the first tokens; "head_tail" keeps ``head_fraction`` of the budget from the start
    and the rest from the end, since the end of a function (frees, returns) often matters too.
    Truncation is done here, not by the tokenizer, so a tokenizer's ``truncation_side`` cannot flip it.
    """
    if truncation not in ("head", "head_tail"):
        raise ValueError(f"truncation must be 'head' or 'head_tail', got {truncation!r}")
    if not 0.0 <= head_fraction <= 1.0:
        raise ValueError(f"head_fraction must be in [0, 1], got {head_fraction}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
    n_pre, n_post = _special_layout(tokenizer)
    budget = max_length - n_pre - n_post
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room next to {n_pre + n_post} special tokens")
    if not texts:
        return []
    encoded = encode_untruncated(tokenizer, texts)
    n_head = int(budget * head_fraction) if truncation == "head_tail" else budget
    n_tail = budget - n_head
    out: list[list[int]] = []
    for ids in encoded:
        if len(ids) > max_length:
            end = len(ids) - n_post
            ids = ids[:n_pre + n_head] + ids[end - n_tail:end] + ids[end:]  # n_tail == 0: empty middle
        out.append(ids)
    return out


def _cache_key(
    tokenizer: PreTrainedTokenizerBase, records: Sequence[Any], max_length: int, truncation: str, head_fraction: float
) -> str:
    parts = {
        "format": _CACHE_FORMAT, "records": records_fingerprint(records), "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": max_length, "truncation": truncation, "head_fraction": head_fraction,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _check_records(records: Sequence[Any]) -> None:
    for i, r in enumerate(records):
        for field in ("id", "func", "target"):
            if not hasattr(r, field):
                raise TypeError(f"record {i}: no field {field!r} (expected CodeRecord-like objects)")
        if not isinstance(r.func, str):
            where = getattr(r, "source", "") or f"record {i}"
            raise TypeError(f"{where} (id={r.id!r}): field 'func' is {type(r.func).__name__}, not str")


def encode_records_cached(
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Any],
    max_length: int = 512,
    truncation: Truncation = "head",
    cache_dir: str | Path | None = None,
    split_name: str = "data",
    head_fraction: float = 0.25,
) -> list[list[int]]:
    """``encode_texts`` over ``records[i].func``, reusing ``cache_dir/<split>-<key>.pt`` when it matches.

    The key covers (id, target, func) of every record, the tokenizer fingerprint and the truncation
    settings, so a stale file is never read. Stored as one flat int32 tensor plus offsets (a few MB
    per 100k functions), written atomically, loaded with ``weights_only=True``.
    """
    records = list(records)
    _check_records(records)
    if cache_dir is None:
        return encode_texts(tokenizer, [r.func for r in records], max_length, truncation, head_fraction)
    if not split_name or any(c in split_name for c in "/\\\0") or split_name.startswith("."):
        raise ValueError(f"split_name must be a plain file name part, got {split_name!r}")
    key = _cache_key(tokenizer, records, max_length, truncation, head_fraction)
    path = Path(cache_dir) / f"{split_name}-{key[:24]}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") == key and blob["offsets"].numel() == len(records) + 1:
                log.info("token cache hit: %s", path)
                return _unflatten(blob["flat"], blob["offsets"])
            log.warning("token cache %s does not match its key; re-encoding", path)
        except Exception as exc:  # a truncated or foreign file: rebuild rather than fail the run
            log.warning("token cache %s unreadable (%s); re-encoding", path, exc)
    ids = encode_texts(tokenizer, [r.func for r in records], max_length, truncation, head_fraction)
    flat, offsets = _flatten(ids)
    with atomic_open(path) as fh:
        torch.save({"format": _CACHE_FORMAT, "key": key, "flat": flat, "offsets": offsets}, fh)
    return ids


def _flatten(ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.int64)
    offsets = torch.zeros(len(ids) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1]))
    return torch.from_numpy(flat), offsets


def _unflatten(flat: torch.Tensor, offsets: torch.Tensor) -> list[list[int]]:
    values, bounds = flat.tolist(), offsets.tolist()
    return [values[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


# --------------------------------------------------------------------------- datasets and batching


class TokenDataset(Dataset):
    """Encoded functions with labels and record ids, held as one flat tensor.

    A flat int32 tensor (not a list of lists) keeps memory at 4 bytes a token and is shared, not
    copied, by forked DataLoader workers (Python objects are copied on first refcount touch).
    """

    def __init__(self, input_ids: list[list[int]], labels: Sequence[int], record_ids: Sequence[str]) -> None:
        if not (len(input_ids) == len(labels) == len(record_ids)):
            raise ValueError(
                f"input_ids ({len(input_ids)}), labels ({len(labels)}) and record_ids ({len(record_ids)}) differ in length"
            )
        self.flat, self.offsets = _flatten(input_ids)
        self._labels = torch.tensor([int(y) for y in labels], dtype=torch.int64)
        self.record_ids = list(record_ids)

    def __len__(self) -> int:
        return len(self.record_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i = i % len(self)
        ids = self.flat[self.offsets[i]:self.offsets[i + 1]].long()
        return {"input_ids": ids, "label": int(self._labels[i]), "index": i}

    @property
    def lengths(self) -> list[int]:
        return (self.offsets[1:] - self.offsets[:-1]).tolist()

    @property
    def labels(self) -> list[int]:
        return self._labels.tolist()


class LengthBucketBatchSampler(BatchSampler):
    """Batches of similar length: pools of ``batch_size * bucket_size_multiplier`` indices, sorted, cut, shuffled.

    Indices come from ``sampler`` (e.g. a class-balanced EpochWeightedSampler, or the
    DistributedSampler Lightning injects under DDP: it subclasses BatchSampler and takes a
    ``sampler`` argument for that reason) or from a permutation per (seed, epoch).
    ``shuffle=False`` sorts all indices by length once: deterministic batches for val/test.

    The epoch is the inner sampler's: Lightning calls `set_epoch` on ``batch_sampler.sampler``, never
    on the batch sampler itself, so an epoch kept here alone stayed 0 and every epoch had one order.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size_multiplier: int = 50,
        drop_last: bool = False,
        sampler: Sampler[int] | None = None,
    ) -> None:
        if bucket_size_multiplier < 1:
            raise ValueError(f"bucket_size_multiplier must be >= 1, got {bucket_size_multiplier}")
        self.lengths = [int(n) for n in lengths]
        if sampler is None:
            data = range(len(self.lengths))
            sampler = EpochRandomSampler(data, seed) if shuffle else SequentialSampler(data)
        super().__init__(sampler, batch_size, drop_last)
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_size_multiplier = bucket_size_multiplier
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """For callers outside Lightning (which sets the inner sampler's epoch); forwarded to it."""
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    @property
    def current_epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", self.epoch))

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.sampler)
        for i in indices:
            if not 0 <= i < len(self.lengths):
                raise IndexError(f"sampler yielded index {i}, but lengths has {len(self.lengths)} entries")
        if not self.shuffle:
            indices.sort(key=self.lengths.__getitem__)  # stable: ties keep the sampler's order
            batches = self._cut(indices)
        else:
            pool = self.batch_size * self.bucket_size_multiplier
            batches = []
            for start in range(0, len(indices), pool):
                batches.extend(self._cut(sorted(indices[start:start + pool], key=self.lengths.__getitem__)))
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.current_epoch))
            batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        yield from batches

    def _cut(self, indices: list[int]) -> list[list[int]]:
        return [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]


class PadCollator:
    """Pads a batch to its longest sequence (rounded up to ``pad_to_multiple_of``) or to ``fixed_length``.

    Multiples of 8 keep tensor-core shapes on GPU; ``fixed_length`` reproduces the CodeXGLUE
    baseline (always 512) for benchmarks. An item longer than ``fixed_length`` is an error, not a cut.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = 8, fixed_length: int | None = None) -> None:
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: load the tokenizer with load_tokenizer, which sets one")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1 or None, got {pad_to_multiple_of}")
        if fixed_length is not None and fixed_length < 1:
            raise ValueError(f"fixed_length must be >= 1 or None, got {fixed_length}")
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.fixed_length = fixed_length

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("PadCollator got an empty batch")
        seqs = [torch.as_tensor(it["input_ids"], dtype=torch.long) for it in items]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        longest = int(lengths.max())
        if self.fixed_length is not None:
            if longest > self.fixed_length:
                i = int(lengths.argmax())
                raise ValueError(
                    f"item index {items[i].get('index')} has {longest} tokens > fixed_length={self.fixed_length}"
                )
            width = self.fixed_length
        elif self.pad_to_multiple_of:
            width = math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of
        else:
            width = longest
        input_ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        for row, s in enumerate(seqs):
            input_ids[row, : len(s)] = s
        attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": torch.tensor([int(it["label"]) for it in items], dtype=torch.long),
            "index": torch.tensor([int(it["index"]) for it in items], dtype=torch.long),
        }
