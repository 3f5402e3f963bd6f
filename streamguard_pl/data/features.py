"""Per-split feature builders shared by the datamodules: tokens, graphs, or both joined by record id.

Each builder turns a list of CodeRecord into a torch Dataset and knows how to batch it; the
datamodules only decide which builder(s) to use, so the fusion datamodule reuses the same caches
and code as the token and graph ones instead of repeating them.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from .graphs import RAW_TOKEN_IDS, GraphBuilder, GraphBuildStats, GraphConfig, build_graphs, graph_statistics
from .records import CodeRecord
from .tokens import PadCollator, TokenDataset, encode_records_cached, encode_untruncated, get_tokenizer
from .vocab import TokenVocabulary


class GraphListDataset(Dataset):
    """A list of PyG graphs; `idx` on each graph is the record's position in its split."""

    def __init__(self, graphs: list[Data]) -> None:
        self.graphs = graphs

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> Data:
        return self.graphs[i]

    @property
    def labels(self) -> list[int]:
        return [int(g.y.view(-1)[0]) for g in self.graphs]


@dataclass
class GraphFeatures:
    """Builds (and caches) tree-sitter graphs for a split and keeps the build statistics.

    `min_token_count` > 0 replaces hashed token buckets with a vocabulary fitted on the train
    graphs (`TokenVocabulary`): the train split must be built first, or `vocab` set (a saved run).
    """

    config: GraphConfig
    cache_dir: Path | None
    on_error: Literal["raise", "skip"] = "raise"
    min_token_count: int = 0
    vocab: TokenVocabulary | None = None
    stats: dict[str, GraphBuildStats] = field(default_factory=dict)
    graphs: dict[str, list[Data]] = field(default_factory=dict)
    token_counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.min_token_count, bool) or not isinstance(self.min_token_count, int) or self.min_token_count < 0:
            raise ValueError(f"min_token_count must be an int >= 0 (0 = hashed buckets), got {self.min_token_count!r}")

    @property
    def needs_vocab(self) -> bool:
        return self.min_token_count > 0 and self.vocab is None

    def build(self, records: Sequence[CodeRecord], split: str) -> list[Data]:
        cache = self.cache_dir if split != "predict" else None
        config = dataclasses.replace(self.config, token_buckets=RAW_TOKEN_IDS) if self.min_token_count else self.config
        graphs, stats = build_graphs(records, GraphBuilder(config), self.on_error, cache, split)
        if self.min_token_count:
            if self.vocab is None:
                if split != "train":
                    raise RuntimeError(f"min_token_count: build the train split before {split!r} (it fits the vocabulary)")
                self.vocab = TokenVocabulary.fit(graphs, self.min_token_count, self.config.token_buckets - 2)
            self.token_counts[split] = self.vocab.apply(graphs)
        position = {r.id: i for i, r in enumerate(records)}
        if len(position) != len(records):  # a graph would be joined to another record's position
            raise ValueError(f"{split}: record ids repeat ({len(records) - len(position)} of {len(records)})")
        for g in graphs:
            g.idx = torch.tensor([position[g.rid]], dtype=torch.long)
        self.stats[split] = stats
        self.graphs[split] = graphs
        return graphs

    def outcomes(self, split: str) -> tuple[dict[str, str], set[str]]:
        """Why records of `split` got no graph (reason by id), and the ids whose graph was cut to `max_nodes`."""
        failed = {f["id"]: f["reason"] for f in self.stats[split].failed}
        return failed, {g.rid for g in self.graphs[split] if int(g.truncated)}

    def statistics(self) -> dict[str, Any]:
        out = graph_statistics({k: v for k, v in self.graphs.items() if k != "predict"},
                               {k: v for k, v in self.stats.items() if k != "predict"})
        if self.vocab is not None:
            for split, entry in out.items():
                leaves, unknown = self.token_counts.get(split, (0, 0))
                entry["token_vocabulary"] = {**self.vocab.summary(), "leaf_tokens": leaves, "unknown_tokens": unknown,
                                             "unknown_fraction": unknown / leaves if leaves else None}
        return out


_WHITESPACE = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    """Every whitespace run (indentation, line breaks) as one space: the code without its formatting."""
    return _WHITESPACE.sub(" ", text).strip()


@dataclass
class TokenFeatures:
    """Owns the tokenizer (pretrained, or BPE trained on the train split) and cached encodings.

    `whitespace="collapse"` feeds the tokenizer the code without its formatting: on Devign the
    formatting gives labels away (docs/devign.md), and a byte-level BPE keeps every newline and space.
    """

    tokenizer_name_or_path: str | None
    vocab_size: int
    max_length: int
    truncation: Literal["head", "head_tail"]
    cache_dir: Path | None
    tokenizer: Any = None
    whitespace: Literal["keep", "collapse"] = "keep"

    def _as_tokenized(self, records: Sequence[CodeRecord]) -> Sequence[CodeRecord]:
        """The records with the text the tokenizer is trained on and encodes (the cache key covers it)."""
        if self.whitespace == "keep":
            return records
        return [dataclasses.replace(r, func=collapse_whitespace(r.func)) for r in records]

    def fit_tokenizer(self, train_records: Sequence[CodeRecord], save_dir: Path) -> Any:
        texts = None if self.tokenizer_name_or_path else [r.func for r in self._as_tokenized(train_records)]
        self.tokenizer = get_tokenizer(self.tokenizer_name_or_path, texts, save_dir, self.vocab_size)
        return self.tokenizer

    def build(self, records: Sequence[CodeRecord], split: str) -> TokenDataset:
        if self.tokenizer is None:
            raise RuntimeError("tokenizer not fitted: call fit_tokenizer on the train split first")
        cache = self.cache_dir if split != "predict" else None
        ids = encode_records_cached(self.tokenizer, self._as_tokenized(records), self.max_length, self.truncation, cache,
                                    split)
        return TokenDataset(ids, [r.target for r in records], [r.id for r in records])

    def overlong(self, records: Sequence[CodeRecord]) -> set[str]:
        """Ids of the records longer than `max_length` tokens: the model reads only their head (and tail)."""
        texts = [r.func for r in self._as_tokenized(records)]
        lengths = [len(ids) for ids in encode_untruncated(self.tokenizer, texts)] if texts else []
        return {r.id for r, n in zip(records, lengths) if n > self.max_length}

    def collator(self, pad_to_multiple_of: int | None, fixed_padding: bool) -> PadCollator:
        fixed = self.max_length if fixed_padding else None
        return PadCollator(self.tokenizer.pad_token_id, pad_to_multiple_of=pad_to_multiple_of, fixed_length=fixed)


class FusionDataset(Dataset):
    """Token items with the graph of the same record attached (joined by record id)."""

    def __init__(self, tokens: TokenDataset, graphs_by_index: dict[int, Data], positions: list[int]) -> None:
        self.tokens = tokens
        self.graphs_by_index = graphs_by_index
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pos = self.positions[i]
        item = dict(self.tokens[pos])
        item["graph"] = self.graphs_by_index[pos]
        return item

    @property
    def lengths(self) -> list[int]:
        lengths = self.tokens.lengths
        return [lengths[p] for p in self.positions]

    @property
    def labels(self) -> list[int]:
        labels = self.tokens.labels
        return [int(labels[p]) for p in self.positions]


def placeholder_graph(label: int, index: int, rid: str = "", width: int = 2) -> Data:
    """One `<unk>` node, no edges: what `missing_graph: placeholder` substitutes for an unparsable record.

    It carries every attribute a built graph has (rid, num_error_nodes, truncated, lang) and the
    same feature width (2 + subtokens): PyG collates the keys of the first graph of a batch, so a
    missing one is a KeyError mid-epoch, and a narrower x cannot be concatenated.
    """
    from .graphs import NODE_TYPES

    unk = NODE_TYPES.index("<unk>") if "<unk>" in NODE_TYPES else 0
    return Data(
        x=torch.tensor([[unk, 1] + [0] * (width - 2)], dtype=torch.long),
        edge_index=torch.zeros((2, 0), dtype=torch.long),
        edge_type=torch.zeros((0,), dtype=torch.long),
        y=torch.tensor([label], dtype=torch.long),
        idx=torch.tensor([index], dtype=torch.long),
        num_nodes=1,
        rid=str(rid),
        num_error_nodes=0,
        truncated=0,
        lang="",
    )


class FusionCollator:
    """Pads the token part and batches the graph part of the same records, in the same order."""

    def __init__(self, pad: PadCollator) -> None:
        self.pad = pad

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        graphs = [it.pop("graph") for it in items]
        tokens = self.pad(items)
        return {
            "tokens": {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]},
            "graph": Batch.from_data_list(graphs),
            "labels": tokens["labels"],
            "index": tokens["index"],
        }
