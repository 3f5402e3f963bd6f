"""Tokenizer training/loading, truncation, the token cache, bucketed batching and padding.

All tokenizers here are real (byte-level BPE trained in seconds on C snippets written below);
nothing touches the network: every load is local or ``local_files_only=True``.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, WeightedRandomSampler
from transformers import PreTrainedTokenizerFast

from streamguard_pl.data.tokens import (
    LengthBucketBatchSampler,
    PadCollator,
    TokenDataset,
    TokenizerLoadError,
    encode_records_cached,
    encode_texts,
    get_tokenizer,
    load_tokenizer,
    tokenizer_fingerprint,
    train_bpe_tokenizer,
)

JULIET = Path("/work/shared/data/juliet")

# --------------------------------------------------------------------------- a small C corpus

_TYPES = ["int", "char", "size_t", "unsigned long", "double", "struct node *", "uint8_t"]
_NAMES = ["buf", "len", "count", "ptr", "data", "idx", "src", "dst", "node", "head", "tmp", "result"]
_BODIES = [
    "    {t} {a} = {n};\n    for (int i = 0; i < {n}; i++) {{\n        {a} += i * {m};\n    }}\n    return {a};\n",
    "    char {a}[{n}];\n    if ({b} == NULL) return -1;\n    strncpy({a}, {b}, sizeof({a}) - 1);\n    return 0;\n",
    "    {t} *{a} = malloc({n} * sizeof({t}));\n    if (!{a}) {{\n        perror(\"malloc\");\n        exit(1);\n    }}\n"
    "    memset({a}, 0, {n});\n    free({a});\n    return {m};\n",
    "    while ({a} != NULL) {{\n        {b} = {a}->next;\n        free({a});\n        {a} = {b};\n    }}\n    return {n};\n",
    "    switch ({a}) {{\n    case {n}: return {m};\n    case {m}: {b}++; break;\n    default: break;\n    }}\n"
    "    printf(\"%d\\n\", {b});\n    return 0;\n",
    "    if ({a} > {n} && {b} < {m}) {{\n        {a} = {a} << 2 | ({b} & 0xff);\n    }} else {{\n        {a} ^= {b};\n"
    "    }}\n    return {a} >= {m} ? {a} : -{b};\n",
]


def c_snippets(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        t = rng.choice(_TYPES)
        a, b = rng.sample(_NAMES, 2)
        body = rng.choice(_BODIES).format(t=t, a=a, b=b, n=rng.randint(1, 4096), m=rng.randint(0, 99))
        out.append(f"static {t} fn_{k}({t} {a}, const char *{b})\n{{\n{body}}}\n")
    return out


# Texts a byte-level BPE must still round-trip although nothing like them was in training.
UNSEEN = [
    "int main(void) { return 0; }",
    "  \tchar *s = \"h\u00e9llo w\u00f6rld \u2014 \u6f22\u5b57 \U0001F600\";\r\n  return s[0] ;  ",
    "f(a , b) ; x = y ' s ;\n\n\n",
    "",
    "#define MAX(a,b) ((a)>(b)?(a):(b))\n/* comment */ // trailing\\\n",
    "\x00\x01\x7f binary-ish \ufffd",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return c_snippets()


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory, corpus) -> Path:
    d = tmp_path_factory.mktemp("bpe")
    train_bpe_tokenizer(corpus, d, vocab_size=600)
    return d


@pytest.fixture(scope="module")
def tok(tok_dir):
    return load_tokenizer(str(tok_dir), local_files_only=True)


# --------------------------------------------------------------------------- tokenizers


def test_trained_bpe_round_trips_and_has_roberta_specials(tok, corpus):
    assert [tok.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 4]
    assert tok.pad_token_id == 1 and tok.model_max_length == 512
    assert 300 < len(tok) <= 600  # 256 bytes + 5 specials + merges
    for text in corpus[:50] + UNSEEN:
        ids = tok(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text
    # merges were learnt: a training snippet takes far fewer tokens than bytes
    assert len(tok(corpus[0])["input_ids"]) < len(corpus[0].encode()) / 2


def test_reload_from_save_dir_gives_identical_ids(tok_dir, tok, corpus):
    again = load_tokenizer(str(tok_dir), local_files_only=True)
    texts = corpus + UNSEEN
    assert again(texts)["input_ids"] == tok(texts)["input_ids"]
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tok)
    # saved under the class name both transformers 4.x and 5.x resolve
    assert json.loads((tok_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_fingerprint_ignores_call_state_but_not_vocab(tok, tmp_path, corpus):
    before = tokenizer_fingerprint(tok)
    tok(corpus[:3], truncation=True, max_length=7, padding="max_length")  # leaves state on the Rust tokenizer
    assert tokenizer_fingerprint(tok) == before
    other = train_bpe_tokenizer(corpus, tmp_path, vocab_size=500)
    assert tokenizer_fingerprint(other) != before


def test_load_tokenizer_from_plain_save_pretrained_folder_offline(tok_dir, tmp_path, monkeypatch):
    # a folder written by transformers' own save_pretrained (class name "TokenizersBackend" under 5.x)
    raw = PreTrainedTokenizerFast(tokenizer_file=str(tok_dir / "tokenizer.json"), eos_token="</s>", pad_token="<pad>")
    raw.save_pretrained(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_tokenizer(str(tmp_path), local_files_only=True)
    assert loaded("int x;")["input_ids"] == raw("int x;")["input_ids"]
    assert loaded.pad_token == "<pad>"


def test_load_tokenizer_pads_with_eos_then_vocab_and_caps_max_length(tok_dir, tmp_path):
    with_eos = tmp_path / "eos"
    PreTrainedTokenizerFast(tokenizer_file=str(tok_dir / "tokenizer.json"), eos_token="</s>").save_pretrained(with_eos)
    assert load_tokenizer(str(with_eos), local_files_only=True).pad_token == "</s>"
    bare = tmp_path / "bare"  # tokenizer.json alone: no special tokens declared, model_max_length "unknown" (1e30)
    bare.mkdir()
    shutil.copy(tok_dir / "tokenizer.json", bare)
    loaded = load_tokenizer(str(bare), local_files_only=True)
    assert loaded.pad_token == "<pad>" and loaded.pad_token_id == 1
    assert loaded.model_max_length == 512


def test_load_tokenizer_without_any_pad_candidate_fails_clearly(tmp_path):
    wl = Tokenizer(WordLevel({"int": 0, "x": 1, ";": 2}, unk_token=None))
    wl.pre_tokenizer = Whitespace()
    wl.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TokenizerLoadError, match="no pad, eos or unk"):
        load_tokenizer(str(tmp_path), local_files_only=True)


@pytest.mark.parametrize("name", ["./no_such_tokenizer_dir", "/nonexistent/tok", "a/b/c"])
def test_load_tokenizer_missing_local_path(name):
    with pytest.raises(TokenizerLoadError, match="tokenizer folder not found") as err:
        load_tokenizer(name, local_files_only=True)
    assert str(Path(name).name) in str(err.value)


def test_load_tokenizer_empty_folder_and_file_and_uncached_hub_id(tmp_path, tok_dir):
    with pytest.raises(TokenizerLoadError, match=r"local folder .* \(holds: \[\]\)"):
        load_tokenizer(str(tmp_path), local_files_only=True)
    with pytest.raises(TokenizerLoadError, match="is a file"):
        load_tokenizer(str(tok_dir / "tokenizer.json"), local_files_only=True)
    with pytest.raises(TokenizerLoadError, match=r"hub id 'streamguard-test/no-such-model' with local_files_only=True"):
        load_tokenizer("streamguard-test/no-such-model", local_files_only=True)


def test_get_tokenizer_trains_once_then_reuses(tmp_path, corpus, tok_dir):
    save = tmp_path / "tok"
    first = get_tokenizer(None, corpus, save, vocab_size=600)
    stamp = (save / "tokenizer.json").stat().st_mtime_ns
    marker = json.loads((save / "corpus_fingerprint.json").read_text())
    assert marker["n_texts"] == len(corpus) and marker["tokenizer_sha256"] == tokenizer_fingerprint(first)

    second = get_tokenizer(None, corpus, save, vocab_size=600)
    assert (save / "tokenizer.json").stat().st_mtime_ns == stamp  # not retrained
    assert tokenizer_fingerprint(second) == tokenizer_fingerprint(first)
    # test/predict: no texts at hand, the trained one is loaded
    assert tokenizer_fingerprint(get_tokenizer(None, None, save)) == tokenizer_fingerprint(first)

    changed = get_tokenizer(None, corpus[:150], save, vocab_size=600)
    assert json.loads((save / "corpus_fingerprint.json").read_text())["n_texts"] == 150
    assert tokenizer_fingerprint(changed) != tokenizer_fingerprint(first)
    # a name wins over training
    assert tokenizer_fingerprint(get_tokenizer(str(tok_dir), corpus, save)) == tokenizer_fingerprint(load_tokenizer(str(tok_dir)))
    with pytest.raises(TokenizerLoadError, match="no trained tokenizer"):
        get_tokenizer(None, None, tmp_path / "empty")


@pytest.mark.skipif(not (JULIET / "train-00.jsonl").is_file(), reason="Juliet data not present")
def test_bpe_on_real_juliet_functions_round_trips(tmp_path):
    def funcs(path: Path, n: int) -> list[str]:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line)["func"] for line, _ in zip(fh, range(n))]

    tok = train_bpe_tokenizer(funcs(JULIET / "train-00.jsonl", 400), tmp_path, vocab_size=2000)
    held_out = funcs(JULIET / "valid-00.jsonl", 200)
    ids = encode_texts(tok, held_out, max_length=100_000)
    assert [tok.decode(x, skip_special_tokens=True) for x in ids] == held_out
    assert sum(map(len, ids)) < 0.5 * sum(len(f.encode()) for f in held_out)  # merges transfer to unseen functions


# --------------------------------------------------------------------------- truncation

LONG = "int f(void) {\n" + "".join(f"    x{i} = y{i} + {i};\n" for i in range(200)) + "    return 0;\n}\n"


def test_encode_texts_matches_tokenizer_and_keeps_short_texts(tok, corpus):
    texts = corpus[:40] + UNSEEN
    full = tok(texts)["input_ids"]
    assert max(map(len, full)) < 512
    assert encode_texts(tok, texts, max_length=512) == full
    assert encode_texts(tok, texts, max_length=512, truncation="head_tail") == full
    assert encode_texts(tok, [], max_length=8) == []


def test_head_truncation_keeps_first_tokens_and_specials(tok):
    full = tok(LONG)["input_ids"]
    assert len(full) > 300
    (out,) = encode_texts(tok, [LONG], max_length=32, truncation="head")
    assert len(out) == 32
    assert out == full[:31] + [tok.eos_token_id]
    assert out[0] == tok.bos_token_id
    assert tok.decode(out, skip_special_tokens=True) == tok.decode(full[1:31])


def test_head_tail_truncation_keeps_both_ends(tok):
    full = tok(LONG)["input_ids"]
    (out,) = encode_texts(tok, [LONG], max_length=32, truncation="head_tail", head_fraction=0.25)
    # budget 30 = 7 head + 23 tail content tokens, <s> and </s> kept at the ends
    assert len(out) == 32
    assert out == full[:1 + 7] + full[-(23 + 1):]
    assert out[0] == tok.bos_token_id and out[-1] == tok.eos_token_id
    assert tok.decode(out, skip_special_tokens=True).endswith("    return 0;\n}\n")
    (all_head,) = encode_texts(tok, [LONG], max_length=32, truncation="head_tail", head_fraction=1.0)
    assert all_head == encode_texts(tok, [LONG], max_length=32, truncation="head")[0]
    (all_tail,) = encode_texts(tok, [LONG], max_length=32, truncation="head_tail", head_fraction=0.0)
    assert all_tail == full[:1] + full[-31:]


def test_encode_texts_rejects_bad_arguments(tok):
    with pytest.raises(ValueError, match="truncation must be"):
        encode_texts(tok, ["x"], truncation="tail")
    with pytest.raises(ValueError, match="leaves no room"):
        encode_texts(tok, ["x"], max_length=2)
    with pytest.raises(ValueError, match="head_fraction"):
        encode_texts(tok, ["x"], truncation="head_tail", head_fraction=1.5)
    with pytest.raises(TypeError, match="text 1 is NoneType"):
        encode_texts(tok, ["x", None])


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class Rec:
    """The three fields the cache reads (CodeRecord carries more)."""

    id: str
    func: str
    target: int


class CountingTokenizer(PreTrainedTokenizerFast):
    """A real fast tokenizer that counts its calls: proves a cache hit does not encode."""

    calls = 0

    def __call__(self, *args, **kwargs):
        type(self).calls += 1
        return super().__call__(*args, **kwargs)


@pytest.fixture()
def counting_tok(tok_dir):
    CountingTokenizer.calls = 0
    return CountingTokenizer.from_pretrained(str(tok_dir), local_files_only=True)


def test_cache_hit_does_not_encode_and_miss_on_max_length(counting_tok, tok, corpus, tmp_path):
    records = [Rec(f"r{i}", f, i % 2) for i, f in enumerate(corpus[:60] + [LONG])]
    assert tokenizer_fingerprint(counting_tok) == tokenizer_fingerprint(tok)
    first = encode_records_cached(counting_tok, records, 64, "head", tmp_path, "train")
    files = list(tmp_path.glob("train-*.pt"))
    assert len(files) == 1 and CountingTokenizer.calls > 0
    assert first == encode_texts(tok, [r.func for r in records], 64, "head")
    blob = torch.load(files[0], weights_only=True)
    assert blob["flat"].dtype == torch.int32 and blob["offsets"].tolist()[-1] == sum(map(len, first))

    calls, stamp = CountingTokenizer.calls, files[0].stat().st_mtime_ns
    assert encode_records_cached(counting_tok, records, 64, "head", tmp_path, "train") == first
    assert CountingTokenizer.calls == calls  # hit: the tokenizer was never called
    assert files[0].stat().st_mtime_ns == stamp

    longer = encode_records_cached(counting_tok, records, 128, "head", tmp_path, "train")
    assert CountingTokenizer.calls > calls and len(list(tmp_path.glob("train-*.pt"))) == 2
    assert max(map(len, longer)) == 128 and max(map(len, first)) == 64


def test_cache_misses_when_records_or_truncation_change(counting_tok, corpus, tmp_path):
    records = [Rec(f"r{i}", f, 0) for i, f in enumerate(corpus[:20] + [LONG])]
    encode_records_cached(counting_tok, records, 64, "head", tmp_path)
    for variant in (
        dict(records=records[:-1] + [Rec("r20", LONG + " ", 0)], truncation="head"),  # func changed
        dict(records=records[:-1] + [Rec("r20", LONG, 1)], truncation="head"),  # label changed
        dict(records=records, truncation="head_tail"),
    ):
        calls = CountingTokenizer.calls
        encode_records_cached(counting_tok, variant["records"], 64, variant["truncation"], tmp_path)
        assert CountingTokenizer.calls > calls
    assert len(list(tmp_path.glob("data-*.pt"))) == 4


def test_corrupt_cache_is_rebuilt(tok, corpus, tmp_path, caplog):
    records = [Rec(f"r{i}", f, 0) for i, f in enumerate(corpus[:10])]
    good = encode_records_cached(tok, records, 64, "head", tmp_path, "val")
    (path,) = tmp_path.glob("val-*.pt")
    path.write_bytes(b"not a torch file")
    assert encode_records_cached(tok, records, 64, "head", tmp_path, "val") == good
    assert "unreadable" in caplog.text
    torch.load(path, weights_only=True)  # rewritten whole


def test_bad_record_is_named(tok, tmp_path):
    with pytest.raises(TypeError, match=r"record 1 \(id='b'\): field 'func' is int"):
        encode_records_cached(tok, [Rec("a", "int x;", 0), Rec("b", 5, 0)], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="split_name"):
        encode_records_cached(tok, [Rec("a", "int x;", 0)], cache_dir=tmp_path, split_name="../x")


# --------------------------------------------------------------------------- bucketed batches


def skewed_lengths(n: int = 2000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [min(512, max(4, int(rng.lognormvariate(4.5, 0.9)))) for _ in range(n)]


def padding_fraction(batches, lengths) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - real / padded


@pytest.mark.parametrize("shuffle", [True, False])
def test_bucket_sampler_yields_every_index_once(shuffle):
    lengths = skewed_lengths(1003)
    sampler = LengthBucketBatchSampler(lengths, 16, shuffle=shuffle, seed=1, bucket_size_multiplier=5)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 63
        assert sorted(i for b in batches for i in b) == list(range(1003))
        assert sum(len(b) < 16 for b in batches) == 1
    dropped = LengthBucketBatchSampler(lengths, 16, shuffle=shuffle, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 62 and all(len(b) == 16 for b in dropped)


def test_unshuffled_batches_are_sorted_and_deterministic():
    lengths = skewed_lengths(500)
    a = list(LengthBucketBatchSampler(lengths, 32, shuffle=False))
    assert a == list(LengthBucketBatchSampler(lengths, 32, shuffle=False, seed=99))
    flat = [lengths[i] for b in a for i in b]
    assert flat == sorted(lengths)


def test_bucketing_cuts_padding_versus_random_batches():
    lengths = skewed_lengths(4000)
    bucketed = LengthBucketBatchSampler(lengths, 32, shuffle=True, seed=0, bucket_size_multiplier=50)
    random_batches = list(BatchSampler(RandomSampler(lengths, generator=torch.Generator().manual_seed(0)), 32, False))
    bucket_pad = padding_fraction(list(bucketed), lengths)
    random_pad = padding_fraction(random_batches, lengths)
    assert random_pad > 0.6
    assert bucket_pad < 0.08
    assert padding_fraction(list(LengthBucketBatchSampler(lengths, 32, shuffle=False)), lengths) < 0.02


def test_epochs_differ_but_are_reproducible():
    lengths = skewed_lengths(800)
    s = LengthBucketBatchSampler(lengths, 16, seed=5, bucket_size_multiplier=4)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1
    assert {frozenset(b) for b in e0} != {frozenset(b) for b in e1}  # different groupings, not just order
    s.set_epoch(0)
    assert list(s) == e0
    other = LengthBucketBatchSampler(lengths, 16, seed=5, bucket_size_multiplier=4)
    assert list(other) == e0  # epoch 0 by default, same seed -> same batches
    assert list(LengthBucketBatchSampler(lengths, 16, seed=6, bucket_size_multiplier=4)) != e0


def test_combines_with_class_balanced_weighted_sampler():
    labels = [1] * 200 + [0] * 800  # 20 / 80
    lengths = skewed_lengths(1000)
    weights = torch.tensor([1 / 200 if y else 1 / 800 for y in labels], dtype=torch.double)
    inner = WeightedRandomSampler(weights, num_samples=1000, replacement=True, generator=torch.Generator().manual_seed(0))
    s = LengthBucketBatchSampler(lengths, 32, seed=0, sampler=inner)
    drawn = []
    for epoch in range(20):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == 32
        drawn += [i for b in batches for i in b]
    assert len(drawn) == 20_000
    positive = sum(labels[i] for i in drawn) / len(drawn)
    assert 0.48 < positive < 0.52
    assert padding_fraction(batches, lengths) < 0.15  # still bucketed


def test_distributed_sampler_shards_and_gets_epoch():
    lengths = skewed_lengths(101)
    shards = [DistributedSampler(range(101), num_replicas=2, rank=r, shuffle=True, seed=0) for r in (0, 1)]
    samplers = [LengthBucketBatchSampler(lengths, 8, sampler=d) for d in shards]
    seen = [[i for b in s for i in b] for s in samplers]
    assert set(seen[0]) | set(seen[1]) == set(range(101))
    assert len(set(seen[0]) & set(seen[1])) == 1  # the one index repeated to even out 101 over 2 ranks
    assert len(seen[0]) == len(seen[1]) == 51  # DistributedSampler pads to equal shards
    samplers[0].set_epoch(3)
    assert shards[0].epoch == 3


# --------------------------------------------------------------------------- padding and dataset


def test_pad_collator_shapes_masks_values():
    items = [
        {"input_ids": [0, 5, 6, 2], "label": 1, "index": 7},
        {"input_ids": torch.tensor([0, 9, 9, 9, 9, 9, 9, 9, 9, 2]), "label": 0, "index": 3},
    ]
    out = PadCollator(pad_token_id=1, pad_to_multiple_of=8)(items)
    assert out["input_ids"].shape == (2, 16) and out["input_ids"].dtype == torch.long
    assert out["input_ids"][0].tolist() == [0, 5, 6, 2] + [1] * 12
    assert out["input_ids"][1, :10].tolist() == [0] + [9] * 8 + [2]
    assert out["attention_mask"].dtype == torch.long
    assert out["attention_mask"].sum(1).tolist() == [4, 10]
    assert out["attention_mask"][1].tolist() == [1] * 10 + [0] * 6
    assert out["labels"].tolist() == [1, 0] and out["index"].tolist() == [7, 3]
    assert PadCollator(1, pad_to_multiple_of=None)(items)["input_ids"].shape == (2, 10)


def test_pad_collator_fixed_length():
    items = [{"input_ids": [0, 5, 2], "label": 0, "index": 0}]
    out = PadCollator(1, fixed_length=512)(items)
    assert out["input_ids"].shape == (1, 512) and int(out["attention_mask"].sum()) == 3
    assert (out["input_ids"][0, 3:] == 1).all()
    with pytest.raises(ValueError, match="item index 0 has 3 tokens > fixed_length=2"):
        PadCollator(1, fixed_length=2)(items)
    with pytest.raises(ValueError, match="pad_token_id is None"):
        PadCollator(None)


def test_token_dataset_through_a_dataloader(tok, corpus):
    ids = encode_texts(tok, corpus[:50], max_length=64)
    labels = [i % 2 for i in range(50)]
    ds = TokenDataset(ids, labels, [f"r{i}" for i in range(50)])
    assert len(ds) == 50 and ds.lengths == [len(x) for x in ids] and ds.labels == labels
    item = ds[7]
    assert item["input_ids"].tolist() == ids[7] and item["label"] == 1 and item["index"] == 7
    assert ds[-1]["index"] == 49
    loader = DataLoader(ds, batch_sampler=LengthBucketBatchSampler(ds.lengths, 8, shuffle=False),
                        collate_fn=PadCollator(tok.pad_token_id))
    seen = []
    for batch in loader:
        for row, idx in enumerate(batch["index"].tolist()):
            n = int(batch["attention_mask"][row].sum())
            assert batch["input_ids"][row, :n].tolist() == ids[idx]
            assert int(batch["labels"][row]) == labels[idx]
            seen.append(idx)
    assert sorted(seen) == list(range(50))
    with pytest.raises(ValueError, match="differ in length"):
        TokenDataset(ids, labels[:-1], [f"r{i}" for i in range(50)])
    with pytest.raises(IndexError):
        ds[50]
