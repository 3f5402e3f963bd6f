"""Does the datamodule feed a network the features it was trained on? Checked at setup.

A network trained on one tokenizer, token vocabulary or set of edge types reads another's ids as
other tokens or edges without any error: training or scoring goes on, silently wrong. So each
classifier records what its features were at its first setup, in its hyperparameters (a checkpoint,
and a fusion model built from one, carry it), and every later setup compares.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn

from ..errors import OptionError

#: Version of how the records are computed. A record of another version is not compared (an unchanged
#: feature would look changed) but replaced, with a warning; bump it whenever a fingerprint changes.
RECORD_FORMAT = 2


def tokenizer_sha256(dm: Any) -> str | None:
    """sha256 of the token -> id table: what the embedding rows mean.

    Not `tokens.tokenizer_fingerprint` (the id cache key), which hashes the tokenizer's serialised
    JSON: its layout changes between `tokenizers` releases, and an unchanged tokenizer must pass.
    """
    tokenizer = getattr(dm, "tokenizer", None)
    if tokenizer is None:
        return None
    table = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    return f"v{RECORD_FORMAT}:" + hashlib.sha256(json.dumps(table, ensure_ascii=False).encode("utf-8")).hexdigest()


def graph_features(dm: Any) -> dict[str, Any] | None:
    """What gives graph ids their meaning (edge families and order, sub-words, the token vocabulary).

    `max_nodes` and `lang` are left out: scoring longer functions, or C++ with a C-trained network,
    changes the inputs, not what an id means.
    """
    gf = getattr(dm, "graph_features", None)
    if gf is None:
        return None
    cfg = gf.config
    vocab = getattr(gf, "vocab", None)
    return {
        "format": RECORD_FORMAT,
        "edge_types": list(cfg.edge_types),
        "reverse_edges": bool(cfg.reverse_edges),
        "subtokens": int(cfg.subtokens),
        # raw ids in dense-id order: the same token set ranked otherwise gives other ids
        "vocab_sha256": (hashlib.sha256(vocab.raw[torch.argsort(vocab.dense)].numpy().tobytes()).hexdigest()
                         if vocab is not None else None),
    }


HINTS = {
    "tokenizer_sha256": "set data.tokenizer_name_or_path to the tokenizer it was trained with (a from-scratch run "
                        "saves its BPE as <run>/tokenizer) and the same data.whitespace",
    "graph_features": "use the graph settings it was trained with (data.edge_types, reverse_edges, subtokens) and "
                      "its token vocabulary (<run>/token_vocab.json, fitted on the same train split)",
}


def _format(record: Any) -> int:
    if isinstance(record, dict):
        return int(record.get("format", 1))
    version, sep, _ = str(record).partition(":")
    return int(version[1:]) if sep and version[:1] == "v" and version[1:].isdigit() else 1


#: The fields of a graph record whose computation changed at each format; the others still compare.
_CHANGED_SINCE = {1: {"vocab_sha256", "format"}}


def _comparable(trained: Any, current: Any, key: str, where: str) -> bool:
    """False (after checking what is still comparable, and a warning) for a record of an older format."""
    version = _format(trained)
    if version == RECORD_FORMAT:
        return True
    if isinstance(trained, dict) and isinstance(current, dict):
        changed = _CHANGED_SINCE.get(version, set(trained) | set(current))
        _require_equal({k: v for k, v in trained.items() if k not in changed},
                       {k: v for k, v in current.items() if k not in changed}, key, where)
    rank_zero_warn(f"{where}: its {key} record is of an older format (v{version}, now v{RECORD_FORMAT}), so "
                   "what changed since is not compared; it is recorded again")
    return False


def _require_equal(trained: Any, current: Any, key: str, where: str) -> None:
    if trained == current:
        return
    if isinstance(trained, dict) and isinstance(current, dict):
        diff = ", ".join(f"{k}: trained {trained.get(k)!r}, data {current.get(k)!r}"
                         for k in sorted(set(trained) | set(current)) if trained.get(k) != current.get(k))
    else:
        diff = f"{key} trained {str(trained)[:12]}..., data {str(current)[:12]}..."
    raise OptionError(f"{where} was trained on other features than the datamodule gives ({diff}): {HINTS[key]}")


def check_or_record(hparams: Any, key: str, current: Any, where: str) -> bool:
    """Record `current` under `key` when the network has no record yet (True), else require equality."""
    if current is None:
        return False
    if hparams.get(key) is None or not _comparable(hparams[key], current, key, where):
        hparams[key] = current
        return True
    _require_equal(hparams[key], current, key, where)
    return False


def check_restored(hparams: Any, trained: Any, key: str, where: str) -> None:
    """`--ckpt_path` restores weights after setup recorded the datamodule's features: compare, keep the checkpoint's."""
    if trained is None:
        return
    recorded = hparams.get(key)
    if recorded is not None:
        if not _comparable(trained, recorded, key, where):
            return  # keep what setup recorded
        _require_equal(trained, recorded, key, where)
    hparams[key] = trained


def check_pretrained_tokenizer(model_name_or_path: str | None, dm: Any, where: str) -> None:
    """A pretrained encoder's embedding is indexed by its own tokenizer's ids, not a BPE we train."""
    features = getattr(dm, "token_features", None)
    if model_name_or_path and features is not None and features.tokenizer_name_or_path is None:
        raise OptionError(
            f"{where}.model_name_or_path={model_name_or_path!r} is a pretrained encoder, but data.tokenizer_name_or_path "
            f"is unset, so the datamodule trains a new BPE whose ids mean other tokens: set "
            f"data.tokenizer_name_or_path: {model_name_or_path}"
        )
