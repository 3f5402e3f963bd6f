"""Decision threshold chosen on the validation split.

Focal loss and a balanced sampler move a model's probabilities away from the test split's class
ratio, so 0.5 is rarely the accuracy-maximising cut; choosing the cut on val (never on test)
is the held-out way to correct that.
"""
from __future__ import annotations

import torch


def best_accuracy_threshold(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The cut `t` (predict vulnerable when p >= t) with the best accuracy on these probabilities.

    Cuts lie halfway between neighbouring distinct probabilities, so a slightly different score
    of the same example never flips its side; ties in accuracy go to the cut closest to 0.5.
    """
    probs, labels = probs.detach().double().flatten().cpu(), labels.detach().flatten().cpu().long()
    if probs.numel() == 0:
        raise ValueError("best_accuracy_threshold needs at least one validation example")
    order = torch.argsort(probs, descending=True)
    p, y = probs[order], labels[order]
    # Predicting the top k as vulnerable: correct = positives among them + negatives outside them.
    tp = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(y, 0)])
    k = torch.arange(p.numel() + 1)
    correct = tp + (int((y == 0).sum()) - (k - tp))
    upper = torch.cat([torch.tensor([1.0 + 1e-6], dtype=p.dtype), p])        # the k-th cut lies below p[k-1]
    lower = torch.cat([p, torch.tensor([-1e-6], dtype=p.dtype)])             # and above p[k]
    cuts = (upper + lower) / 2
    valid = torch.cat([torch.tensor([True]), p[:-1] > p[1:], torch.tensor([True])])  # no cut inside a tie
    correct = torch.where(valid, correct, torch.full_like(correct, -1))
    best = correct.max()
    candidates = (correct == best).nonzero().flatten()
    pick = candidates[torch.argmin((cuts[candidates] - 0.5).abs())]
    return float(cuts[pick].clamp(0.0, 1.0)), float(best) / p.numel()
