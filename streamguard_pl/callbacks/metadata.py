"""`training_metadata.json`: everything needed to trust, compare or rerun a result, kept current
while the run is alive and finalised however it ends (completed, collapsed, interrupted, failed).

Written at fit start, after every validation and train epoch, and at the end, always atomically,
so a crashed or killed run still leaves a valid file that says how far it got and why it stopped.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ..jsonsafe import atomic_write_json, safe_jsonify
from .collapse import CollapseDetection

METADATA_NAME = "training_metadata.json"
_DISTRIBUTIONS = ("torch", "lightning", "transformers", "tokenizers", "torch_geometric", "torchmetrics")


def package_versions() -> dict[str, str | None]:
    """Installed versions without importing the packages (importing transformers costs seconds)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def git_state(path: str | Path | None = None) -> dict[str, Any] | None:
    """Commit (and whether the tree had local changes) of the code that ran; None outside a repo."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}


def _latest_checkpoint(trainer: L.Trainer) -> str | None:
    """The newest epoch's checkpoint: a monitor-less ModelCheckpoint keeps exactly that (our configs'
    last.ckpt), while Lightning 2.6's save_last is rewritten only with a new best."""
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "monitor", "") is None and getattr(cb, "best_model_path", ""):
            return cb.best_model_path
    return getattr(trainer.checkpoint_callback, "last_model_path", None) or None


def _seed(config: dict[str, Any] | None) -> int | None:
    env = os.environ.get("PL_GLOBAL_SEED")
    if env not in (None, ""):
        return int(env)
    for key in ("seed_everything", "seed"):
        value = (config or {}).get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[name] = float(value.detach().cpu())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


class MetadataExport(Callback):
    """Keep `training_metadata.json` (rank zero) in `dirpath` or `trainer.default_root_dir`.

    `config` is the resolved run configuration (the CLI sets it); without it the module's and
    datamodule's hparams are recorded. A "hardware_choices" entry in config is lifted to the top.
    """

    def __init__(self, config: dict[str, Any] | None = None, dirpath: str | Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.status = "not_started"
        self.error: str | None = None
        self.epochs: dict[int, dict[str, Any]] = {}
        self._started_at: str | None = None
        self._t0: float | None = None
        self._static: dict[str, Any] | None = None  # facts fixed for the whole fit, gathered once

    def metadata_path(self, trainer: L.Trainer) -> Path:
        return (self.dirpath or Path(trainer.default_root_dir)) / METADATA_NAME

    # ---- what gets recorded ------------------------------------------------------------------
    def _config(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        if self.config is not None:
            return dict(self.config)
        datamodule = trainer.datamodule
        return {"model": {"class_path": f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
                          "init_args": dict(pl_module.hparams)},
                "data": None if datamodule is None else {
                    "class_path": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
                    "init_args": dict(getattr(datamodule, "hparams", {}))}}

    @staticmethod
    def _hardware(trainer: L.Trainer) -> dict[str, Any]:
        device = trainer.strategy.root_device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
        return {
            "accelerator": type(trainer.accelerator).__name__,
            "strategy": type(trainer.strategy).__name__,
            "device": str(device),
            "device_name": name,
            "precision": str(trainer.precision),
            "num_devices": trainer.num_devices,
            "num_nodes": trainer.num_nodes,
            "world_size": trainer.world_size,
            "cpu_count": os.cpu_count(),
        }

    @staticmethod
    def _data(trainer: L.Trainer) -> dict[str, Any] | None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "data_summary"):
            return None
        try:
            return datamodule.data_summary()
        except Exception as exc:  # recorded, not fatal: metadata must never be what kills a run
            return {"error": f"data_summary() failed: {type(exc).__name__}: {exc}"}

    @staticmethod
    def _checkpoint(trainer: L.Trainer) -> dict[str, Any] | None:
        ckpt = trainer.checkpoint_callback
        if ckpt is None:
            return None
        return {"best_model_path": getattr(ckpt, "best_model_path", None) or None,
                "best_model_score": getattr(ckpt, "best_model_score", None),
                "monitor": getattr(ckpt, "monitor", None),
                "last_model_path": _latest_checkpoint(trainer)}

    def _static_facts(self, trainer: L.Trainer) -> dict[str, Any]:
        # data_summary() may hash the whole corpus: once per fit, not once per epoch.
        if self._static is None:
            self._static = {"versions": package_versions(), "hardware": self._hardware(trainer),
                            "git": git_state(), "data": self._data(trainer)}
        return self._static

    def build(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        config = self._config(trainer, pl_module)
        datamodule = trainer.datamodule
        return {
            "status": self.status,
            "error": self.error,
            "config": config,
            "hyperparameters": {"model": dict(pl_module.hparams),
                                "data": dict(getattr(datamodule, "hparams", {})) if datamodule is not None else None,
                                "lr": getattr(pl_module, "lr", None)},
            "seed": _seed(config),
            **self._static_facts(trainer),
            "hardware_choices": config.get("hardware_choices"),
            "epochs": [self.epochs[e] for e in sorted(self.epochs)],
            "global_step": int(trainer.global_step),
            "current_epoch": int(trainer.current_epoch),
            "checkpoint": self._checkpoint(trainer),
            "started_at": self._started_at,
            "updated_at": _now(),
            "wall_time_s": None if self._t0 is None else time.monotonic() - self._t0,
        }

    @rank_zero_only
    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        atomic_write_json(self.metadata_path(trainer), self.build(trainer, pl_module))

    # ---- Lightning hooks ---------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Before a resumed checkpoint restores state_dict, so resumed runs keep earlier epochs.
        if stage == "fit":
            self.status, self.error, self.epochs, self._static = "running", None, {}, None
            self._started_at, self._t0 = _now(), time.monotonic()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module)

    def _record_epoch(self, trainer: L.Trainer) -> None:
        epoch = int(trainer.current_epoch)
        entry = self.epochs.setdefault(epoch, {"epoch": epoch})
        entry["step"] = int(trainer.global_step)
        entry.setdefault("metrics", {}).update(_scalars(dict(trainer.callback_metrics)))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_validation_epoch_end: the epoch's aggregated metrics only reach callback_metrics after it.
        if trainer.sanity_checking or self.status != "running":
            return
        self._record_epoch(trainer)
        self.write(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record_epoch(trainer)  # adds the train-epoch aggregates, which arrive after validation
        self.write(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        collapsed = any(isinstance(cb, CollapseDetection) and cb.collapsed for cb in trainer.callbacks)
        self.status = "interrupted" if trainer.interrupted else ("collapsed" if collapsed else "completed")
        self.write(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != TrainerFn.FITTING:  # a failed test of a run's checkpoint keeps the fit's record
            return
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.status, self.error = "interrupted", type(exception).__name__
        else:
            self.status, self.error = "failed", f"{type(exception).__name__}: {exception}"
        self.write(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": safe_jsonify(self.epochs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = {int(k): v for k, v in state_dict.get("epochs", {}).items()}
