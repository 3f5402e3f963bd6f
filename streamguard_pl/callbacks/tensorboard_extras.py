"""TensorBoard views Lightning does not log by itself: PR curve, confusion matrix, hparams + results."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics.classification import BinaryConfusionMatrix

from ..distributed import gather_uneven
from ..models.threshold import metric_threshold

HP_PREFIX = "hp/"
FINAL_METRICS = ("val/f1", "val/accuracy", "val/auroc", "test/f1", "test/accuracy", "test/auroc")


class TensorBoardExtras(Callback):
    """Each validation epoch: `val/pr_curve` and a `val/confusion_matrix` image; at the end, hparams
    together with the run's result so runs compare side by side in TensorBoard's HPARAMS tab.

    The result is that of the checkpoint a run is tested and used with: `hp/val/f1`, `hp/val/accuracy`,
    `hp/val/auroc` are the validation metrics of the epoch whose checkpoint the ModelCheckpoint kept as
    best (the first epoch with its best monitored score), not the last epoch's; without a monitoring
    ModelCheckpoint (or when its best epoch was before a resume) they are the last validation's. They
    are logged at fit end, `hp/test/*` at the end of a test. The run has one hparams session, written
    with the first of them and declaring all six: TensorBoard keeps a run's first session record, so a
    second one (a test after the fit) would never show, and its test columns would stay hidden.

    The confusion matrix is drawn at `threshold`, or by default at the model's own decision cut
    (its `decision_threshold`, which `tune_threshold` moves every epoch), so the image shows the
    errors the model will make in test and predict. It is drawn in `on_validation_end`, after the
    module's `on_validation_epoch_end` has chosen this epoch's cut (callbacks' epoch-end hooks run
    before the module's).
    """

    def __init__(self, threshold: float | None = None) -> None:
        self.threshold = threshold
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self.last_cut: float | None = None
        self.last_confusion: torch.Tensor | None = None
        self._val_history: list[dict[str, float]] = []
        self._session_written = False

    @staticmethod
    def _tb(trainer: L.Trainer) -> Any:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._probs, self._labels = [], []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(outputs, dict) and "probs" in outputs:
            self._probs.append(outputs["probs"].detach().float().cpu())
            self._labels.append(outputs["labels"].detach().cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every rank takes part in the gather; rank zero then draws the whole val split, as the
        # metrics and the tuned cut see it, not its own shard.
        if trainer.world_size > 1:  # on every rank, also one without a batch, or the gather waits forever
            probs = torch.cat(self._probs) if self._probs else torch.empty(0)
            labels = torch.cat(self._labels) if self._labels else torch.empty(0, dtype=torch.long)
            probs, labels = gather_uneven(pl_module, probs).float().cpu(), gather_uneven(pl_module, labels).cpu()
            self._probs, self._labels = ([probs], [labels]) if probs.numel() else ([], [])

    def cut(self, pl_module: L.LightningModule) -> float:
        if self.threshold is not None:
            return self.threshold
        buffer = getattr(pl_module, "decision_threshold", None)
        return float(buffer) if buffer is not None else 0.5

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_history, self._session_written = [], False

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            # Every validation's metrics (and the monitored value, maybe no val/ metric) in order:
            # at fit end, the best checkpoint's are found among them.
            monitor = getattr(trainer.checkpoint_callback, "monitor", None)
            self._val_history.append({k: float(v) for k, v in trainer.callback_metrics.items()
                                      if (k.startswith("val/") and k in FINAL_METRICS) or k == monitor})
        tb = self._tb(trainer)
        if tb is None or not self._probs or trainer.sanity_checking:
            return
        probs, labels = torch.cat(self._probs), torch.cat(self._labels)
        step = trainer.global_step
        tb.add_pr_curve("val/pr_curve", labels, probs, global_step=step)
        self.last_cut = self.cut(pl_module)
        cm = BinaryConfusionMatrix(threshold=metric_threshold(self.last_cut), sync_on_compute=False)
        cm.update(probs, labels)
        self.last_confusion = cm.compute().cpu()
        fig, _ = cm.plot(labels=["benign", "vulnerable"])
        tb.add_figure("val/confusion_matrix", fig, global_step=step, close=True)

    def _best_validation(self, trainer: L.Trainer) -> dict[str, float]:
        """The val metrics of the best checkpoint's validation, else of the last one (see the class doc)."""
        ckpt = trainer.checkpoint_callback
        monitor, score = getattr(ckpt, "monitor", None), getattr(ckpt, "best_model_score", None)
        if monitor and score is not None:
            # ModelCheckpoint replaces its best only on a strictly better score: the first match is it.
            for metrics in self._val_history:
                if metrics.get(monitor) == float(score):
                    return metrics
        return self._val_history[-1] if self._val_history else {}

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        best = self._best_validation(trainer)
        self._log_hparams(trainer, pl_module, {k: v for k, v in best.items() if k in FINAL_METRICS})

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_hparams(trainer, pl_module, {k: float(v) for k, v in trainer.callback_metrics.items()
                                               if k.startswith("test/") and k in FINAL_METRICS})

    def _log_hparams(self, trainer: L.Trainer, pl_module: L.LightningModule, metrics: dict[str, float]) -> None:
        # Under their own names the HPARAMS copies would add a stray final point to the val/f1 ... curves:
        # they get an "hp/" prefix.
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and metrics:
                logger.log_metrics({f"{HP_PREFIX}{k}": v for k, v in metrics.items()}, step=trainer.global_step)
                if not self._session_written:
                    self._write_session(logger, pl_module, trainer.global_step)
        self._session_written = self._session_written or bool(metrics)

    def _write_session(self, logger: TensorBoardLogger, pl_module: L.LightningModule, step: int) -> None:
        """The run's hparams session, declaring every FINAL_METRICS column (their values are the scalars);
        the params flattened and sanitised as Lightning's own log_hyperparams does."""
        from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
        from torch.utils.tensorboard.summary import hparams

        params = logger._sanitize_params(_flatten_dict(_convert_params(pl_module.hparams)))
        writer = logger.experiment._get_file_writer()
        for summary in hparams(params, {f"{HP_PREFIX}{k}": 0.0 for k in FINAL_METRICS}):
            writer.add_summary(summary, step)
