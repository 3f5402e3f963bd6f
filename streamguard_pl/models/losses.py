"""Classification losses for imbalanced vulnerability labels."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Focal loss (Lin et al.) over 2-class logits: down-weights easy, mostly benign, examples.

    `label_smoothing` spreads that share of each target over all classes, as CrossEntropyLoss does
    (with gamma 0 and no class weights the two are equal); a class weight weighs the whole example.
    """

    def __init__(self, gamma: float = 1.5, class_weights: Sequence[float] | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not gamma >= 0.0:
            raise ValueError(f"focal gamma must be >= 0 (0 is cross-entropy), got {gamma}")
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        weight = torch.tensor(class_weights, dtype=torch.float) if class_weights is not None else None
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)
        q = F.one_hot(target, log_p.size(-1)).to(log_p.dtype)
        if self.label_smoothing:
            q = q * (1.0 - self.label_smoothing) + self.label_smoothing / log_p.size(-1)
        # 1 - p is exactly 0 for a confident row (logit gap ~17 in float32), where x ** gamma has an
        # infinite slope for gamma < 1: NaN gradients behind a finite loss. tiny keeps the slope finite.
        modulator = (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny) ** self.gamma
        loss = -(q * modulator * log_p).sum(-1)
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
        return FocalLoss(gamma=focal_gamma, class_weights=class_weights, label_smoothing=label_smoothing)
    if kind == "ce":
        weight = torch.tensor(class_weights, dtype=torch.float) if class_weights is not None else None
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    raise ValueError(f"loss must be 'ce' or 'focal', got {kind!r}")
