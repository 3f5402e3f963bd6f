"""Focal and cross-entropy losses: the values the classifiers train on, checked against torch's own CE."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from streamguard_pl.models.losses import FocalLoss, build_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 2, generator=g) * 3
    target = torch.randint(0, 2, (64,), generator=g)
    return logits, target


def test_focal_with_gamma_zero_is_cross_entropy(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, target = batch
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target), atol=1e-6)


def test_focal_label_smoothing_is_cross_entropys_at_gamma_zero_and_not_ignored(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, target = batch
    expected = F.cross_entropy(logits, target, label_smoothing=0.1)
    assert torch.allclose(build_loss("focal", label_smoothing=0.1, focal_gamma=0.0)(logits, target), expected, atol=1e-6)
    plain, smoothed = FocalLoss(gamma=1.5)(logits, target), FocalLoss(gamma=1.5, label_smoothing=0.1)(logits, target)
    assert smoothed.item() != pytest.approx(plain.item(), abs=1e-3)  # once, focal dropped the option silently
    with pytest.raises(ValueError, match="label_smoothing"):
        FocalLoss(label_smoothing=1.0)


def test_focal_with_gamma_zero_and_class_weights_is_weighted_cross_entropy(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, target = batch
    w = [1.0, 3.0]
    expected = F.cross_entropy(logits, target, weight=torch.tensor(w))
    assert torch.allclose(FocalLoss(gamma=0.0, class_weights=w)(logits, target), expected, atol=1e-6)


def test_class_weights_scale_the_classes_relative_to_each_other() -> None:
    # One example per class with the same per-example loss: the weighted mean is unchanged, but the
    # gradient on the up-weighted class's example is 3x the other's.
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    target = torch.tensor([1, 0])  # both wrong by the same margin
    for loss_fn in (FocalLoss(gamma=1.5, class_weights=[1.0, 3.0]), build_loss("ce", class_weights=[1.0, 3.0])):
        logits.grad = None
        loss_fn(logits, target).backward()
        g0, g1 = logits.grad[1].abs().sum(), logits.grad[0].abs().sum()  # row 1 is class 0, row 0 is class 1
        assert torch.isclose(g1 / g0, torch.tensor(3.0), rtol=1e-5), type(loss_fn).__name__


def test_focal_down_weights_easy_examples_by_one_minus_p_to_the_gamma() -> None:
    gamma = 2.0
    logits = torch.tensor([[4.0, -4.0], [0.2, -0.2]])  # an easy and a hard example of class 0
    target = torch.tensor([0, 0])
    focal = FocalLoss(gamma=gamma, class_weights=None)
    per_ce = F.cross_entropy(logits, target, reduction="none")
    per_focal = torch.stack([focal(logits[i:i + 1], target[i:i + 1]) for i in range(2)])
    p = torch.softmax(logits, -1)[:, 0]
    assert torch.allclose(per_focal, (1 - p) ** gamma * per_ce, atol=1e-6)
    ratio = per_focal / per_ce
    assert ratio[0] < 1e-6 and ratio[1] > 0.1  # the easy one is all but ignored, the hard one is not


def test_build_loss_maps_names_and_options() -> None:
    ce = build_loss("ce", class_weights=[1.0, 2.0], label_smoothing=0.1)
    assert isinstance(ce, nn.CrossEntropyLoss)
    assert ce.label_smoothing == pytest.approx(0.1) and ce.weight.tolist() == [1.0, 2.0]
    focal = build_loss("focal", focal_gamma=2.5)
    assert isinstance(focal, FocalLoss) and focal.gamma == 2.5 and focal.weight is None
    with pytest.raises(ValueError, match="'ce' or 'focal'"):
        build_loss("mse")  # type: ignore[arg-type]


def test_focal_class_weights_follow_the_module_to_another_dtype_and_are_not_saved() -> None:
    focal = FocalLoss(class_weights=[1.0, 3.0])
    assert "weight" not in focal.state_dict()  # a checkpoint rebuilds it from hyperparameters
    focal = focal.double()
    assert focal.weight.dtype == torch.float64


@pytest.mark.parametrize("gamma", [0.5, 0.9, 1.5])
def test_focal_gradients_stay_finite_on_confident_rows(gamma: float) -> None:
    # 1 - p is exactly 0 at a logit gap of 17 or more in float32, where x ** gamma (gamma < 1) has an
    # infinite slope: the loss was finite and the gradient NaN, so the next step's weights were NaN.
    logits = torch.tensor([[0.0, 20.0], [0.0, 40.0], [1.0, -1.0]], requires_grad=True)
    loss = FocalLoss(gamma=gamma)(logits, torch.tensor([1, 1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        FocalLoss(gamma=-1.0)
