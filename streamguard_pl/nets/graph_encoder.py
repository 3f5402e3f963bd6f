"""GNN encoder over tree-sitter code graphs: node embedding -> message passing -> graph readout."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import (
    AttentionalAggregation,
    GATv2Conv,
    GatedGraphConv,
    GCNConv,
    GINEConv,
    GINConv,
    RGCNConv,
    global_add_pool,
    global_max_pool,
    global_mean_pool,
)
from torch_geometric.utils import to_dense_batch

EncoderKind = Literal["ggnn", "gcn", "gat", "gin"]
Readout = Literal["mean", "max", "sum", "attention", "mean_max"]


class GraphEncoder(nn.Module):
    """Embeds (node type, token bucket) pairs and runs a PyG encoder; `out_dim` is the pooled size.

    Extra columns of `x` (sub-word buckets, 0 = none) share the token table: a node's token vector
    is the mean over its whole-token and sub-word embeddings, so graphs with and without sub-words
    use the same weights.

    `typed_aggr` is how the edge-type-aware GGNN step combines the messages of one edge type:
    summed ("add", Devign's GGNN) or averaged ("mean", bounded however many AST children or data
    flow uses a node has). Other encoders have no such choice (the typed GCN averages), so "mean"
    with them is an error rather than a setting without effect.

    `sequence_kernel=k` runs a width-k convolution over each graph's leaves in source order before
    message passing. Untyped message passing sums neighbours, so it cannot tell ``a - b`` from
    ``b - a``, nor a token's left neighbour from its right; the convolution gives every token its
    ordered n-gram context, which sequence models (TextCNN, the transformer) have and GGNN lacks.

    `global_context` adds, before every message-passing layer, a projection of the graph's mean node
    state to each node (a mean-aggregating virtual node): two layers of local messages cannot carry
    a fact from one end of a 300-node function to the other, which the transformer's attention can.

    `edge_type_aware` makes message passing depend on the edge family (AST / CFG / DFG / NCS):
    relational GCN messages for ggnn/gcn (a typed GGNN, as in Devign), edge embeddings for gat/gin.
    """

    def __init__(
        self,
        num_node_types: int,
        token_buckets: int = 50_000,
        num_edge_types: int = 8,
        hidden_dim: int = 128,
        num_layers: int = 4,
        encoder: EncoderKind = "ggnn",
        readout: Readout = "attention",
        dropout: float = 0.2,
        edge_type_aware: bool = False,
        sequence_kernel: int = 0,
        typed_aggr: Literal["add", "mean"] = "add",
        global_context: bool = False,
    ) -> None:
        super().__init__()
        if typed_aggr not in ("add", "mean"):
            raise ValueError(f"typed_aggr must be 'add' or 'mean', got {typed_aggr!r}")
        if typed_aggr != "add" and not (encoder == "ggnn" and edge_type_aware):
            raise ValueError(f"typed_aggr={typed_aggr!r} applies to the edge-type-aware GGNN only "
                             f"(encoder={encoder!r}, edge_type_aware={edge_type_aware})")
        if sequence_kernel < 0 or (sequence_kernel and sequence_kernel % 2 == 0):
            raise ValueError(f"sequence_kernel must be 0 (off) or an odd width, got {sequence_kernel!r}")
        self.sequence_conv = (nn.Conv1d(hidden_dim, hidden_dim, sequence_kernel, padding=sequence_kernel // 2)
                              if sequence_kernel else None)
        if global_context and encoder == "ggnn" and not edge_type_aware:
            raise ValueError("global_context needs per-layer message passing: encoder gcn, gat or gin, "
                             "or the edge-type-aware ggnn")
        self.context = (nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers))
                        if global_context else None)
        self.encoder_kind = encoder
        self.edge_type_aware = edge_type_aware
        self.readout_kind = readout
        self.type_embedding = nn.Embedding(num_node_types, hidden_dim)
        self.token_embedding = nn.EmbeddingBag(token_buckets, hidden_dim, mode="mean", padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_dim)
        self.layers = nn.ModuleList()
        self.edge_embedding: nn.Embedding | None = None
        if encoder == "ggnn":
            if edge_type_aware:
                self.layers.extend(RGCNConv(hidden_dim, hidden_dim, num_edge_types, aggr=typed_aggr)
                                   for _ in range(num_layers))
                self.gru = nn.GRUCell(hidden_dim, hidden_dim)
            else:
                self.layers.append(GatedGraphConv(hidden_dim, num_layers=num_layers, aggr="add"))
        elif encoder == "gcn":
            self.layers.extend(
                (RGCNConv(hidden_dim, hidden_dim, num_edge_types) if edge_type_aware else GCNConv(hidden_dim, hidden_dim))
                for _ in range(num_layers)
            )
        elif encoder in ("gat", "gin"):
            if edge_type_aware:
                self.edge_embedding = nn.Embedding(num_edge_types, hidden_dim)
            for _ in range(num_layers):
                if encoder == "gat":
                    self.layers.append(
                        GATv2Conv(hidden_dim, hidden_dim // 4, heads=4, edge_dim=hidden_dim if edge_type_aware else None)
                    )
                else:
                    mlp = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim))
                    self.layers.append(GINEConv(mlp, edge_dim=hidden_dim) if edge_type_aware else GINConv(mlp))
        else:
            raise ValueError(f"encoder must be one of ggnn, gcn, gat, gin; got {encoder!r}")
        if readout == "attention":
            gate = nn.Sequential(nn.Linear(hidden_dim, hidden_dim // 2), nn.Tanh(), nn.Linear(hidden_dim // 2, 1))
            self.pool = AttentionalAggregation(gate)
        elif readout not in ("mean", "max", "sum", "mean_max"):
            raise ValueError(f"readout must be mean, max, sum, mean_max or attention; got {readout!r}")
        self.out_dim = hidden_dim * (2 if readout == "mean_max" else 1)

    def node_states(self, batch: Batch) -> torch.Tensor:
        x = batch.x
        h = self.type_embedding(x[:, 0]) + self.token_embedding(x[:, 1:])
        if self.sequence_conv is not None:
            h = self._leaf_context(h, x[:, 1] > 0, batch.batch)
        h = self.dropout(h)
        edge_index, edge_type = batch.edge_index, batch.edge_type
        if self.encoder_kind == "ggnn" and not self.edge_type_aware:
            return self.norm(self.layers[0](h, edge_index))
        for i, conv in enumerate(self.layers):
            if self.context is not None:
                pooled = global_mean_pool(h, batch.batch, batch.num_graphs)
                h = h + torch.relu(self.context[i](pooled))[batch.batch]
            if isinstance(conv, RGCNConv):
                m = conv(h, edge_index, edge_type)
                h_new = self.gru(m, h) if self.encoder_kind == "ggnn" else torch.relu(m) + h
            elif self.edge_embedding is not None:
                h_new = torch.relu(conv(h, edge_index, self.edge_embedding(edge_type))) + h
            else:
                h_new = torch.relu(conv(h, edge_index)) + h
            h = self.dropout(h_new)
        return self.norm(h)

    def _leaf_context(self, h: torch.Tensor, is_leaf: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        # Node ids are pre-order positions and PyG keeps each graph's nodes together, so the leaves
        # of a graph, taken in node order, are its tokens in source order.
        leaves = is_leaf.nonzero().view(-1)
        dense, mask = to_dense_batch(h[leaves], graph[leaves])
        context = self.sequence_conv(dense.transpose(1, 2)).transpose(1, 2)[mask]
        return h.index_add(0, leaves, torch.relu(context))

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.node_states(batch)
        index, size = batch.batch, batch.num_graphs
        if self.readout_kind == "attention":
            return self.pool(h, index, dim_size=size)
        if self.readout_kind == "mean":
            return global_mean_pool(h, index, size)
        if self.readout_kind == "max":
            return global_max_pool(h, index, size)
        if self.readout_kind == "sum":
            return global_add_pool(h, index, size)
        return torch.cat([global_mean_pool(h, index, size), global_max_pool(h, index, size)], dim=-1)
