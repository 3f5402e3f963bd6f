"""GNNClassifier: the GraphEncoder network over tree-sitter code graphs, trained as a LightningModule."""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch_geometric.data import Batch

from ..nets.fusion_head import ClassifierHead
from ..nets.graph_encoder import EncoderKind, GraphEncoder, Readout
from .base import VulnerabilityClassifier
from .compat import check_or_record, graph_features


def default_num_node_types() -> int:
    from ..data.graphs import NODE_TYPES

    return len(NODE_TYPES)


def check_graph_settings(dm: Any, token_buckets: int, num_edge_types: int, where: str = "model",
                         min_token_count: int = 0) -> None:
    """Fail fast, by name, when the datamodule's graph settings do not fit the network (else an opaque IndexError).

    `min_token_count` decides what a token id means (a hashed bucket or a vocabulary entry): a
    network trained on one reads the other as noise without any error.
    """
    buckets, edge_types = getattr(dm, "token_buckets", None), getattr(dm, "num_edge_types", None)
    if buckets is not None and buckets != token_buckets:
        raise ValueError(f"data.token_buckets={buckets} but {where}.token_buckets={token_buckets}")
    data_min = getattr(dm, "min_token_count", None)
    if data_min is not None and data_min != min_token_count:
        raise ValueError(f"data.min_token_count={data_min} but {where}.min_token_count={min_token_count}")
    if edge_types is not None and edge_types > num_edge_types:
        raise ValueError(f"the data has {edge_types} edge types but {where}.num_edge_types={num_edge_types}")


def check_graph_features(hparams: Any, dm: Any, where: str) -> bool:
    """True when the features were recorded now (a network's first setup)."""
    return check_or_record(hparams, "graph_features", graph_features(dm), where)


class GNNClassifier(VulnerabilityClassifier):
    """Devign-style GGNN by default; gcn / gat / gin and an edge-type-aware variant by option.

    `token_buckets`, `num_edge_types` and `min_token_count` must match the GraphDataModule's settings
    (checked at setup); `min_token_count` is kept so that a checkpoint says what its token ids mean.
    `graph_features` (edge families, sub-words, the token vocabulary's hash) is recorded at the first
    setup and checked at every later one.
    """

    model_type = "gnn"
    feature_keys = ("graph_features",)

    def __init__(
        self,
        hidden_dim: int = 128,
        num_layers: int = 4,
        encoder: EncoderKind = "ggnn",
        readout: Readout = "attention",
        dropout: float = 0.2,
        edge_type_aware: bool = False,
        sequence_kernel: int = 0,
        typed_aggr: Literal["add", "mean"] = "add",
        global_context: bool = False,
        num_node_types: int | None = None,
        token_buckets: int = 50_000,
        num_edge_types: int = 8,
        min_token_count: int = 0,
        graph_features: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_ratio: float = 0.05,
        scheduler: Literal["linear", "cosine", "constant", "none"] = "cosine",
        loss: Literal["ce", "focal"] = "focal",
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        focal_gamma: float = 1.5,
        threshold: float = 0.5,
        tune_threshold: bool = False,
    ) -> None:
        super().__init__(
            lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio, scheduler=scheduler, loss=loss,
            class_weights=class_weights, label_smoothing=label_smoothing, focal_gamma=focal_gamma, threshold=threshold,
            tune_threshold=tune_threshold,
        )
        if num_node_types is None:
            num_node_types = default_num_node_types()
            self.hparams.num_node_types = num_node_types
        self.encoder = GraphEncoder(
            num_node_types=num_node_types, token_buckets=token_buckets, num_edge_types=num_edge_types,
            hidden_dim=hidden_dim, num_layers=num_layers, encoder=encoder, readout=readout,
            dropout=dropout, edge_type_aware=edge_type_aware,
            sequence_kernel=sequence_kernel, typed_aggr=typed_aggr, global_context=global_context,
        )
        self.head = ClassifierHead(self.encoder.out_dim, hidden_dim, dropout)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        check_graph_settings(dm, self.hparams.token_buckets, self.hparams.num_edge_types,
                             min_token_count=self.hparams.min_token_count)
        check_graph_features(self.hparams, dm, "model")

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.encoder(batch))

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"name": "gnn", "params": list(self.encoder.parameters()), "lr_mult": 1.0},
            {"name": "head", "params": list(self.head.parameters()), "lr_mult": 1.0},
        ]

    def batch_labels(self, batch: Batch) -> torch.Tensor:
        return batch.y.view(-1)

    def batch_index(self, batch: Batch) -> torch.Tensor:
        return batch.idx.view(-1)

    def batch_size_of(self, batch: Batch) -> int:
        return int(batch.num_graphs)
