"""Decision threshold chosen on the validation split.

Focal loss and a balanced sampler move a model's probabilities away from the test split's class
ratio, so 0.5 is rarely the accuracy-maximising cut; choosing the cut on val (never on test)
is the held-out way to correct that.
"""
from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_roc


def best_accuracy_threshold(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The cut `t` (predict vulnerable when p >= t) with the best accuracy on these probabilities.

    Cuts lie halfway between neighbouring distinct probabilities, so a slightly different score
    of the same example never flips its side; ties in accuracy go to the cut closest to 0.5.
    """
    probs, labels = probs.detach().flatten().double().cpu(), labels.detach().flatten().long().cpu()
    if probs.numel() == 0:
        raise ValueError("best_accuracy_threshold needs at least one validation example")
    # The ROC points: for each distinct score s (descending, after a leading "predict none"), the
    # rates of predicting p >= s; accuracy follows from them and the class counts.
    fpr, tpr, scores = binary_roc(probs, labels)
    positives = int(labels.sum())
    correct = (tpr * positives + (1 - fpr) * (labels.numel() - positives)).round()
    cuts = (scores + torch.cat([scores[1:], scores.new_zeros(1)])) / 2
    # "Predict none" must lie above the top score as the model's float32 probabilities compare: the
    # leading ROC threshold is 1.0, so with a saturated score (softmax gives exactly 1.0 for a logit
    # gap of ~17) the halfway cut would be 1.0 itself and still flag those examples.
    above_top = torch.nextafter(scores[1].float(), torch.tensor(float("inf"))).double()
    cuts[0] = torch.maximum(cuts[0].float().double(), above_top)
    # The cut lives in a float32 buffer: a halfway value between two adjacent float32 scores rounds
    # onto the lower one, which `p >= cut` would then flag too. There the upper score is the cut.
    upper, lower = scores[1:].float(), torch.cat([scores[2:], scores.new_zeros(1)]).float()
    kept = cuts[1:].float()
    cuts[1:] = torch.where(kept <= lower, upper, kept).double()
    candidates = (correct == correct.max()).nonzero().flatten()
    pick = candidates[torch.argmin((cuts[candidates] - 0.5).abs())]
    return float(cuts[pick]), float(correct[pick]) / labels.numel()


def metric_threshold(cut: float) -> float:
    """The threshold that makes torchmetrics, which flags `p > t`, flag what `p >= cut` does here.

    For float32 probabilities the two rules agree at the float32 number just below the cut; at the
    cut itself a probability equal to it (0.5 from equal logits, common in bf16) was counted
    positive in predict and negative in the logged metrics.
    """
    cut32 = torch.tensor(cut, dtype=torch.float32)
    return float(torch.nextafter(cut32, torch.tensor(float("-inf"))))
