"""GradientStats on a real Trainer, checked against norms computed by hand from the same gradients."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _tiny_models import TinyClassifier, TinyDataModule, make_trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.precision import MixedPrecision
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from streamguard_pl.callbacks import GradientStats

STEPS = 16  # 2 epochs x 8 batches


class ManualNorms(Callback):
    """Independent reference: concatenate each group's gradients and take one vector norm."""

    def __init__(self) -> None:
        self.norms: dict[str, list[float]] = {"body": [], "head": [], "total": []}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # type: ignore[no-untyped-def]
        for name, module in (("body", pl_module.body), ("head", pl_module.head), ("total", pl_module)):
            grads = [p.grad.flatten() for p in module.parameters() if p.grad is not None]
            self.norms[name].append(float(torch.cat(grads).norm()) if grads else 0.0)


def _stats(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "gradient_stats.json").read_text())


def test_summary_matches_manual_norms(tmp_path: Path) -> None:
    manual = ManualNorms()
    trainer = make_trainer(tmp_path, [GradientStats(), manual], max_epochs=2)
    trainer.fit(TinyClassifier(), TinyDataModule())
    stats = _stats(tmp_path)
    assert set(stats["components"]) == {"body", "head"}
    for name in ("body", "head", "total"):
        got = stats["total"] if name == "total" else stats["components"][name]
        ref = manual.norms[name]
        assert len(ref) == STEPS and got["steps"] == STEPS
        assert got["mean"] == pytest.approx(sum(ref) / len(ref), rel=1e-5)
        assert got["max"] == pytest.approx(max(ref), rel=1e-5)
        assert got["min"] == pytest.approx(min(ref), rel=1e-5)
        assert got["last"] == pytest.approx(ref[-1], rel=1e-5)
        assert got["zero_gradient_steps"] == 0 and got["nonfinite_steps"] == 0
        assert min(ref) > 0
    assert stats["components"]["head"]["num_parameters"] == 16 * 2 + 2
    assert stats["total"]["num_parameters"] == 8 * 16 + 16 + 16 * 2 + 2


def test_a_resumed_run_summarises_every_step(tmp_path: Path) -> None:
    # Reset at every fit start, the file once covered only the steps after a resume (6 of 12).
    manual = ManualNorms()
    first = make_trainer(tmp_path, [GradientStats(), manual], max_epochs=1)
    first.fit(TinyClassifier(), TinyDataModule())
    first.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed = make_trainer(tmp_path, [GradientStats(), manual], max_epochs=2)
    resumed.fit(TinyClassifier(), TinyDataModule(), ckpt_path=tmp_path / "epoch1.ckpt")
    got, ref = _stats(tmp_path)["components"]["head"], manual.norms["head"]
    assert len(ref) == STEPS and got["steps"] == STEPS
    assert got["mean"] == pytest.approx(sum(ref) / len(ref), rel=1e-5)
    assert got["max"] == pytest.approx(max(ref), rel=1e-5) and got["min"] == pytest.approx(min(ref), rel=1e-5)
    assert got["last"] == pytest.approx(ref[-1], rel=1e-5)


def test_frozen_component_counts_zero_gradient_steps(tmp_path: Path) -> None:
    model = TinyClassifier()
    model.body.requires_grad_(False)  # the optimizer still holds it: a "forgotten frozen encoder"
    trainer = make_trainer(tmp_path, [GradientStats(dirpath=tmp_path / "out")], max_epochs=2)
    trainer.fit(model, TinyDataModule())
    stats = _stats(tmp_path / "out")
    body, head = stats["components"]["body"], stats["components"]["head"]
    assert body["zero_gradient_steps"] == STEPS and body["max"] == 0.0 and body["mean"] == 0.0
    assert head["zero_gradient_steps"] == 0 and head["min"] > 0


def test_logged_every_n_steps_with_manual_values(tmp_path: Path) -> None:
    manual = ManualNorms()
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(tmp_path, [GradientStats(), manual], max_epochs=2, logger=logger, log_every_n_steps=4)
    trainer.fit(TinyClassifier(), TinyDataModule())
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    for name in ("body", "head", "total"):
        events = acc.Scalars(f"grad_norm/{name}")
        assert [e.step for e in events] == [3, 7, 11, 15]  # every 4th optimizer step only
        assert [e.value for e in events] == pytest.approx([manual.norms[name][s] for s in (3, 7, 11, 15)], rel=1e-5)


def test_amp_overflow_steps_are_counted_apart(tmp_path: Path) -> None:
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    trainer = make_trainer(tmp_path, [GradientStats()], max_epochs=1, plugins=[plugin])
    trainer.fit(TinyClassifier(inf_loss_at_steps=(2, 5)), TinyDataModule())
    total = _stats(tmp_path)["total"]
    assert total["steps"] == 8 and total["nonfinite_steps"] == 2
    assert total["max"] is not None and total["max"] < 1e3  # unscaled, and the inf steps are excluded


def test_reserved_component_name_is_rejected(tmp_path: Path) -> None:
    class Clash(TinyClassifier):
        def gradient_components(self):  # type: ignore[no-untyped-def]
            return {"total": list(self.parameters())}

    trainer = make_trainer(tmp_path, [GradientStats()], max_epochs=1)
    with pytest.raises(ValueError, match="reserved"):
        trainer.fit(Clash(), TinyDataModule())
