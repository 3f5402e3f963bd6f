"""Heads that turn pooled encoder vectors into 2-class logits; fusion variants combine two vectors."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

FusionKind = Literal["concat", "gated", "cross_attention", "residual"]


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
    residual: the text model's own trained head (`text_head`) plus a correction read from [t; g]
    whose last layer starts at zero, so fusion starts as exactly its text model and training moves
    it from there; a head trained from scratch on an overfit text encoder's training features starts
    below that text model and can end there (Devign: docs/devign.md).
    """

    def __init__(self, text_dim: int, graph_dim: int, hidden_dim: int = 256, kind: FusionKind = "gated", dropout: float = 0.1,
                 text_head: nn.Module | None = None) -> None:
        super().__init__()
        if kind not in ("concat", "gated", "cross_attention", "residual"):
            raise ValueError(f"fusion kind must be concat, gated, cross_attention or residual; got {kind!r}")
        if (kind == "residual") != (text_head is not None):
            raise ValueError("the residual fusion kind, and only it, takes the text model's head (text_head)")
        self.kind = kind
        self.text_head = text_head
        self.text_proj = nn.Linear(text_dim, hidden_dim)
        self.graph_proj = nn.Linear(graph_dim, hidden_dim)
        if kind == "gated":
            self.gate = nn.Linear(2 * hidden_dim, hidden_dim)
        elif kind == "cross_attention":
            heads = 4 if hidden_dim % 4 == 0 else 1
            self.attention = nn.MultiheadAttention(hidden_dim, heads, dropout=dropout, batch_first=True)
            self.attn_norm = nn.LayerNorm(hidden_dim)
        in_dim = hidden_dim if kind == "gated" else 2 * hidden_dim
        self.classifier = ClassifierHead(in_dim, hidden_dim, dropout)
        if kind == "residual":
            last = self.classifier.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, text: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        t, g = self.text_proj(text), self.graph_proj(graph)
        if self.kind == "residual":
            assert self.text_head is not None
            return self.text_head(text) + self.classifier(torch.cat([t, g], dim=-1))
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
