"""Heads that turn pooled encoder vectors into 2-class logits; fusion variants combine two vectors."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

FusionKind = Literal["concat", "gated", "cross_attention"]


class ClassifierHead(nn.Module):
    """Dropout -> Linear -> act -> Dropout -> Linear(2): the head every single-encoder model uses."""

    def __init__(self, in_dim: int, hidden_dim: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        self.net = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FusionHead(nn.Module):
    """Fuses a text vector and a graph vector.

    concat: [t; g]. gated: a learned sigmoid gate mixes the two projections per dimension.
    cross_attention: the two projected vectors form a 2-token sequence and attend to each other.
    """

    def __init__(self, text_dim: int, graph_dim: int, hidden_dim: int = 256, kind: FusionKind = "gated", dropout: float = 0.1) -> None:
        super().__init__()
        if kind not in ("concat", "gated", "cross_attention"):
            raise ValueError(f"fusion kind must be concat, gated or cross_attention; got {kind!r}")
        self.kind = kind
        self.text_proj = nn.Linear(text_dim, hidden_dim)
        self.graph_proj = nn.Linear(graph_dim, hidden_dim)
        if kind == "gated":
            self.gate = nn.Linear(2 * hidden_dim, hidden_dim)
        elif kind == "cross_attention":
            heads = 4 if hidden_dim % 4 == 0 else 1
            self.attention = nn.MultiheadAttention(hidden_dim, heads, dropout=dropout, batch_first=True)
            self.attn_norm = nn.LayerNorm(hidden_dim)
        in_dim = 2 * hidden_dim if kind in ("concat", "cross_attention") else hidden_dim
        self.classifier = ClassifierHead(in_dim, hidden_dim, dropout)

    def forward(self, text: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        t, g = self.text_proj(text), self.graph_proj(graph)
        if self.kind == "concat":
            fused = torch.cat([t, g], dim=-1)
        elif self.kind == "gated":
            z = torch.sigmoid(self.gate(torch.cat([t, g], dim=-1)))
            fused = z * t + (1 - z) * g
        else:
            seq = torch.stack([t, g], dim=1)
            attended, _ = self.attention(seq, seq, seq)
            fused = self.attn_norm(seq + attended).flatten(1)
        return self.classifier(fused)
