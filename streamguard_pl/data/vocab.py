"""A token vocabulary for graph leaves, fitted on the train split, in place of hashed buckets.

Hashing every leaf text into `token_buckets` ids gives each of Devign's ~140k distinct names a
bucket shared with a dozen others, and a name seen in one or two train functions (a project's own
helper, often in near-duplicates from the same commit) is a bucket the network memorises labels
by. The vocabulary gives each text that appears in at least `min_count` train graphs an id of its
own and every rarer one the shared unknown id (1), the way word-level code models cut their
vocabulary (Devign: docs/devign.md).

Graphs are built with the text's crc32 + 2 as the token column (`RAW_TOKEN_IDS` buckets), so the
graph cache does not depend on the vocabulary; `apply` maps those ids to dense ones (0 = inner
node and 1 = empty/unknown stay as they are). Sub-token columns are mapped by the same table: a
piece has the id of the whole token with the same text, as in the hashed scheme.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch_geometric.data import Data

from ..jsonsafe import atomic_write_json

VOCAB_FILE = "token_vocab.json"
_FORMAT = 1


@dataclass
class TokenVocabulary:
    """Raw leaf ids (crc32 + 2) kept, in id order: `raw[i]` gets dense id i + 2."""

    raw: torch.Tensor          # sorted int64 raw ids, for searchsorted
    dense: torch.Tensor        # the dense id of each entry of `raw`
    min_count: int
    qualified: int             # texts that met min_count (more than `size` when the table was too small)
    distinct: int              # distinct texts in the train graphs

    @classmethod
    def fit(cls, graphs: Sequence[Data], min_count: int, size: int) -> "TokenVocabulary":
        """Texts in >= min_count graphs; the `size` most frequent when more qualify (ties: lower raw id)."""
        if min_count < 1 or size < 1:
            raise ValueError(f"min_count and size must be >= 1, got {min_count!r} and {size!r}")
        per_graph = [torch.unique(g.x[:, 1:]) for g in graphs]
        ids, counts = torch.unique(torch.cat(per_graph) if per_graph else torch.zeros(0, dtype=torch.long),
                                   return_counts=True)
        leaf = ids > 1
        ids, counts = ids[leaf], counts[leaf]
        ok = counts >= min_count
        kept, kept_counts = ids[ok], counts[ok]
        # most frequent first, ties by raw id: the same train split always gives the same table
        order = torch.argsort(kept_counts * (2**33) - kept, descending=True)[:size]
        return cls.from_ranked(kept[order], min_count, int(ok.sum()), int(ids.numel()))

    @classmethod
    def from_ranked(cls, ranked: torch.Tensor, min_count: int, qualified: int, distinct: int) -> "TokenVocabulary":
        raw, pos = torch.sort(ranked.to(torch.long))
        return cls(raw, pos + 2, min_count, qualified, distinct)

    @property
    def size(self) -> int:
        return int(self.raw.numel())

    def apply(self, graphs: Sequence[Data]) -> tuple[int, int]:
        """Rewrites each graph's token columns to dense ids; returns (leaf tokens, of them unknown)."""
        leaves = unknown = 0
        for g in graphs:
            tok = g.x[:, 1:].contiguous()  # a column slice: searchsorted would copy it and warn
            is_leaf = tok > 1
            if self.size:
                pos = torch.searchsorted(self.raw, tok).clamp(max=self.size - 1)
                hit = is_leaf & (self.raw[pos] == tok)
                mapped = torch.where(hit, self.dense[pos], torch.where(is_leaf, 1, tok))
            else:
                hit = torch.zeros_like(is_leaf)
                mapped = torch.where(is_leaf, 1, tok)
            g.x = torch.cat((g.x[:, :1], mapped), 1)
            leaves += int(is_leaf.sum())
            unknown += int((is_leaf & ~hit).sum())
        return leaves, unknown

    def summary(self) -> dict[str, Any]:
        return {"min_count": self.min_count, "size": self.size, "qualified": self.qualified,
                "distinct_train_tokens": self.distinct}

    def save(self, path: Path) -> None:
        ranked = torch.empty_like(self.raw)
        ranked[self.dense - 2] = self.raw
        atomic_write_json(path, {"format": _FORMAT, **self.summary(), "raw_ids": ranked.tolist()})

    @classmethod
    def load(cls, path: Path) -> "TokenVocabulary":
        blob = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT or not isinstance(blob.get("raw_ids"), list):
            raise ValueError(f"{path}: not a token vocabulary (format {_FORMAT}, a raw_ids list)")
        return cls.from_ranked(torch.tensor(blob["raw_ids"], dtype=torch.long), int(blob["min_count"]),
                               int(blob["qualified"]), int(blob["distinct_train_tokens"]))
