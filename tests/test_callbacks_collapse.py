"""CollapseDetection on a real Trainer: each failure mode is provoked and must be caught, and a
healthy run must not be."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _tiny_models import TinyClassifier, TinyDataModule, make_trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.precision import MixedPrecision
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from streamguard_pl.callbacks import CollapseDetection

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

STEPS_PER_EPOCH = 8  # TinyDataModule: 64 train rows / batch 8


def _report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "collapse_report.json").read_text())


def _kinds(report: dict, kind: str) -> list[dict]:
    return [e for e in report["events"] if e["kind"] == kind]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_healthy_run_writes_a_clean_report(tmp_path: Path, seed: int) -> None:
    torch.manual_seed(seed)
    cb = CollapseDetection(warmup_epochs=1, window_size=8)
    trainer = make_trainer(tmp_path, [cb], max_epochs=3)
    trainer.fit(TinyClassifier(), TinyDataModule())
    report = _report(tmp_path)
    assert trainer.global_step == 3 * STEPS_PER_EPOCH
    assert report["collapsed"] is False and report["events"] == [] and report["total_steps"] == 24
    assert not cb.collapsed


def test_nan_loss_stops_within_threshold_and_names_the_steps(tmp_path: Path) -> None:
    cb = CollapseDetection(collapse_threshold=3, warmup_epochs=5)
    trainer = make_trainer(tmp_path, [cb], max_epochs=3)
    trainer.fit(TinyClassifier(nan_from_step=3), TinyDataModule())
    report = _report(tmp_path)
    nan_events = _kinds(report, "nan_loss")
    assert [e["step"] for e in nan_events] == [3, 4, 5]
    assert all(e["loss_check"] == {"value": None, "finite": False} for e in nan_events)
    assert report["collapsed"] is True and "nan_loss" in report["reason"]
    assert trainer.global_step == 6  # stopped right after the third NaN step, not at max_epochs


def test_resuming_a_collapsed_run_says_so_and_trains_no_batch(tmp_path: Path) -> None:
    cb = CollapseDetection(collapse_threshold=3, warmup_epochs=5)
    trainer = make_trainer(tmp_path, [cb], max_epochs=3)
    trainer.fit(TinyClassifier(nan_from_step=3), TinyDataModule())
    trainer.save_checkpoint(tmp_path / "collapsed.ckpt")
    resumed = make_trainer(tmp_path / "again", [CollapseDetection(collapse_threshold=3, warmup_epochs=5)], max_epochs=6)
    with pytest.warns(UserWarning, match=r"resumed from a checkpoint saved after training collapsed \(3 consecutive "
                                         r"'nan_loss' events\): not training on"):
        resumed.fit(TinyClassifier(), TinyDataModule(), ckpt_path=tmp_path / "collapsed.ckpt")
    assert resumed.global_step == trainer.global_step == 6


def test_auto_stop_off_records_but_keeps_training(tmp_path: Path) -> None:
    cb = CollapseDetection(collapse_threshold=3, warmup_epochs=5, enable_auto_stop=False)
    trainer = make_trainer(tmp_path, [cb], max_epochs=2)
    trainer.fit(TinyClassifier(nan_from_step=3), TinyDataModule())
    report = _report(tmp_path)
    assert trainer.global_step == 2 * STEPS_PER_EPOCH
    assert report["collapsed"] is True
    assert [e["step"] for e in _kinds(report, "nan_loss")] == list(range(3, 16))


def test_frozen_parameters_trigger_zero_gradient(tmp_path: Path) -> None:
    cb = CollapseDetection(collapse_threshold=3, warmup_epochs=5)
    trainer = make_trainer(tmp_path, [cb], max_epochs=2)
    trainer.fit(TinyClassifier(freeze=True), TinyDataModule())
    report = _report(tmp_path)
    zero = _kinds(report, "zero_gradient")
    assert [e["step"] for e in zero] == [0, 1, 2]
    assert all(e["gradient_check"] == {"norm": 0.0, "zero": True} for e in zero)
    assert all(e["loss_check"]["finite"] for e in zero)
    assert report["collapsed"] is True and trainer.global_step == 3


def test_forced_one_class_triggers_window_check_after_warmup(tmp_path: Path) -> None:
    dm = TinyDataModule()
    cb = CollapseDetection(window_size=4, collapse_threshold=3, warmup_epochs=1)
    trainer = make_trainer(tmp_path, [cb], max_epochs=4)
    trainer.fit(TinyClassifier(force_class=0), dm)
    report = _report(tmp_path)
    const = _kinds(report, "constant_predictions")
    # Window is full long before, but the check waits for epoch 1 (warmup_epochs=1).
    assert [e["step"] for e in const] == [8, 9, 10] and {e["epoch"] for e in const} == {1}
    assert const[0]["prediction_check"] == {"unique_predictions": 1, "distribution": {"0": 32, "1": 0}}
    assert report["collapsed"] is True and trainer.global_step == 11
    # The 0.2x warning already fires during warmup (epoch 0): it is a warning, not an event.
    actual_vulnerable = int(dm.val_y.sum())
    warning = report["warnings"][0]
    assert warning["epoch"] == 0 and warning["kind"] == "few_vulnerable_predictions"
    assert warning["predicted_vulnerable"] == 0 and warning["actual_vulnerable"] == actual_vulnerable > 0


def test_one_class_validation_epochs_collapse(tmp_path: Path) -> None:
    # A window longer than the run disables the step check, leaving only the per-epoch one.
    cb = CollapseDetection(window_size=10_000, collapse_threshold=2, warmup_epochs=1)
    trainer = make_trainer(tmp_path, [cb], max_epochs=6)
    trainer.fit(TinyClassifier(force_class=1), TinyDataModule())
    report = _report(tmp_path)
    val = _kinds(report, "val_one_class")
    assert [e["epoch"] for e in val] == [1, 2]
    assert val[0]["prediction_check"] == {"unique_predictions": 1, "distribution": {"0": 0, "1": 32}}
    assert report["collapsed"] is True and trainer.current_epoch == 3  # stopped after epoch 2
    assert report["warnings"] == []  # predicting everything vulnerable is not the "too few" case


def test_amp_skipped_steps_are_not_collapse(tmp_path: Path) -> None:
    """Inf loss under a GradScaler: the scaler skips the step and halves the scale (normal AMP)."""
    amp_dir, fp32_dir = tmp_path / "amp", tmp_path / "fp32"
    scaler = torch.amp.GradScaler("cpu")
    amp = CollapseDetection(collapse_threshold=2, warmup_epochs=5)
    trainer = make_trainer(amp_dir, [amp], max_epochs=1, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    trainer.fit(TinyClassifier(inf_loss_at_steps=(2, 3, 4)), TinyDataModule())
    report = _report(amp_dir)
    assert report["amp_skipped_steps"] == [2, 3, 4] and scaler.get_scale() == 2.0**16 / 8
    assert report["events"] == [] and report["collapsed"] is False and trainer.global_step == STEPS_PER_EPOCH

    # Same model without a scaler: those steps are real non-finite losses.
    fp32 = CollapseDetection(collapse_threshold=2, warmup_epochs=5)
    trainer = make_trainer(fp32_dir, [fp32], max_epochs=1)
    trainer.fit(TinyClassifier(inf_loss_at_steps=(2, 3, 4)), TinyDataModule())
    report = _report(fp32_dir)
    assert [e["step"] for e in _kinds(report, "nan_loss")] == [2, 3] and report["collapsed"] is True


def test_events_are_logged_to_tensorboard(tmp_path: Path) -> None:
    cb = CollapseDetection(collapse_threshold=3, warmup_epochs=5)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(tmp_path, [cb], max_epochs=1, logger=logger, log_every_n_steps=1)
    trainer.fit(TinyClassifier(freeze=True), TinyDataModule())
    assert float(trainer.callback_metrics["collapse/events"]) == 3.0
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    values = [s.value for s in acc.Scalars("collapse/events")]
    assert values == [1.0, 2.0, 3.0, 3.0]  # one per training step, then the validation epoch


def test_state_dict_round_trip_keeps_history() -> None:
    cb = CollapseDetection()
    cb.events = [{"step": 1, "kind": "nan_loss"}]
    cb.total_events, cb.collapsed = 1, True
    restored = CollapseDetection()
    restored.load_state_dict(cb.state_dict())
    assert restored.events == cb.events and restored.collapsed and restored.total_events == 1


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        CollapseDetection(window_size=0)
