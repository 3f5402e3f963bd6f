"""MetadataExport on a real Trainer: the file is valid JSON while the run is alive and ends with the
right status for completed, failed, collapsed and interrupted runs."""
from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from _tiny_models import DEFAULT_LR, TinyClassifier, TinyDataModule, make_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from streamguard_pl.callbacks import CollapseDetection, MetadataExport

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
REPO = Path(__file__).resolve().parents[1]


def _meta(path: Path) -> dict[str, Any]:
    return json.loads((path / "training_metadata.json").read_text())


class Probe(Callback):
    """Reads the metadata file while training runs, as a dashboard would."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen.append(_meta(self.path))


def test_completed_run_records_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    L.seed_everything(123)
    dm = TinyDataModule()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val/loss", mode="min")
    probe = Probe(tmp_path)
    trainer = make_trainer(tmp_path, [MetadataExport(), ckpt, probe], max_epochs=2, enable_checkpointing=True)
    trainer.fit(TinyClassifier(), dm)
    meta = _meta(tmp_path)

    assert meta["status"] == "completed" and meta["error"] is None
    assert [s["status"] for s in probe.seen] == ["running", "running"]
    assert [len(s["epochs"]) for s in probe.seen] == [0, 1]  # epoch 0 on disk before epoch 1 starts
    assert meta["seed"] == 123
    assert meta["config"]["model"]["init_args"]["lr"] == DEFAULT_LR
    assert meta["config"]["data"]["init_args"]["batch_size"] == 8
    assert meta["hyperparameters"]["lr"] == DEFAULT_LR
    assert meta["versions"]["torch"] == torch.__version__ and meta["versions"]["lightning"] == L.__version__
    assert meta["hardware"]["precision"] == "32-true" and meta["hardware"]["num_devices"] == 1
    assert meta["hardware"]["accelerator"] == "CPUAccelerator"
    assert meta["data"] == dm.data_summary()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert meta["git"]["commit"] == head
    assert [e["epoch"] for e in meta["epochs"]] == [0, 1]
    last = meta["epochs"][-1]["metrics"]
    assert last["val/loss"] == pytest.approx(float(trainer.callback_metrics["val/loss"]))
    assert "train/loss_epoch" in last and last["val/acc"] >= 0
    assert meta["checkpoint"]["best_model_path"] == ckpt.best_model_path and Path(ckpt.best_model_path).exists()
    assert meta["checkpoint"]["best_model_score"] == pytest.approx(float(ckpt.best_model_score))
    assert meta["global_step"] == 16 and meta["wall_time_s"] > 0


def test_exception_in_training_step_is_recorded_as_failed(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, [MetadataExport()], max_epochs=2)
    with pytest.raises(RuntimeError, match="deliberate failure"):
        trainer.fit(TinyClassifier(raise_at_step=3), TinyDataModule())
    meta = _meta(tmp_path)
    assert meta["status"] == "failed"
    assert meta["error"] == "RuntimeError: deliberate failure at step 3"
    assert meta["global_step"] == 3


def test_collapse_is_reported_as_status(tmp_path: Path) -> None:
    callbacks = [CollapseDetection(warmup_epochs=5), MetadataExport(dirpath=tmp_path / "meta")]
    trainer = make_trainer(tmp_path, callbacks, max_epochs=2)
    trainer.fit(TinyClassifier(freeze=True), TinyDataModule())
    assert _meta(tmp_path / "meta")["status"] == "collapsed"


class BrokenValidation(TinyClassifier):
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        raise RuntimeError("scoring failed")


def test_a_failed_validate_on_the_run_folder_keeps_the_fits_records(tmp_path: Path) -> None:
    # `streamguard test/validate --ckpt_path` runs the config's callbacks again in the run's folder;
    # once, a failure there rewrote a collapsed run's files as "failed, 0 epochs, not collapsed".
    def callbacks() -> list[Callback]:
        return [CollapseDetection(warmup_epochs=5), MetadataExport()]

    make_trainer(tmp_path, callbacks(), max_epochs=2).fit(TinyClassifier(freeze=True), TinyDataModule())
    fitted = _meta(tmp_path)
    report = json.loads((tmp_path / "collapse_report.json").read_text())
    assert fitted["status"] == "collapsed" and len(fitted["epochs"]) >= 1 and report["collapsed"] is True
    with pytest.raises(RuntimeError, match="scoring failed"):
        make_trainer(tmp_path, callbacks()).validate(BrokenValidation(), TinyDataModule())
    assert _meta(tmp_path) == fitted
    assert json.loads((tmp_path / "collapse_report.json").read_text()) == report


class Interrupted(TinyClassifier):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.global_step == 2:
            raise KeyboardInterrupt
        return super().training_step(batch, batch_idx)


def test_keyboard_interrupt_is_recorded(tmp_path: Path) -> None:
    previous = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after catching Ctrl+C
    try:
        trainer = make_trainer(tmp_path, [MetadataExport()], max_epochs=2)
        with pytest.raises(SystemExit):
            trainer.fit(Interrupted(), TinyDataModule())
    finally:
        signal.signal(signal.SIGINT, previous)
    meta = _meta(tmp_path)
    assert meta["status"] == "interrupted" and meta["global_step"] == 2


def test_config_from_cli_and_hardware_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    choices = {"precision": {"requested": "auto", "value": "32-true", "reason": "no CUDA device"}}
    config = {"seed_everything": 7, "model": {"class_path": "x.Y"}, "hardware_choices": choices,
              "ratio": float("nan")}
    trainer = make_trainer(tmp_path, [MetadataExport(config=config)], max_epochs=1)
    trainer.fit(TinyClassifier(), TinyDataModule())
    meta = _meta(tmp_path)
    assert meta["seed"] == 7 and meta["hardware_choices"] == choices
    assert meta["config"]["model"] == {"class_path": "x.Y"}
    assert meta["config"]["ratio"] is None  # NaN made strict JSON
