"""Classification losses for imbalanced vulnerability labels."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Focal loss (Lin et al.) over 2-class logits: down-weights easy, mostly benign, examples."""

    def __init__(self, gamma: float = 1.5, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        weight = torch.tensor(class_weights, dtype=torch.float) if class_weights is not None else None
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)
        log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()


def build_loss(
    kind: Literal["ce", "focal"] = "ce",
    class_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 1.5,
) -> nn.Module:
    """One place that maps config names to loss modules, so every classifier accepts the same options."""
    if kind == "focal":
        return FocalLoss(gamma=focal_gamma, class_weights=class_weights)
    if kind == "ce":
        weight = torch.tensor(class_weights, dtype=torch.float) if class_weights is not None else None
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    raise ValueError(f"loss must be 'ce' or 'focal', got {kind!r}")
