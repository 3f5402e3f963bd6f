"""TensorBoard views Lightning does not log by itself: PR curve, confusion matrix, hparams + results."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics.classification import BinaryConfusionMatrix

from ..distributed import gather_uneven

HP_PREFIX = "hp/"
FINAL_METRICS = ("val/f1", "val/accuracy", "val/auroc", "test/f1", "test/accuracy", "test/auroc")


class TensorBoardExtras(Callback):
    """Each validation epoch: `val/pr_curve` and a `val/confusion_matrix` image; at the end, hparams
    together with the final metrics so runs compare side by side in TensorBoard's HPARAMS tab.

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

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tb = self._tb(trainer)
        if tb is None or not self._probs or trainer.sanity_checking:
            return
        probs, labels = torch.cat(self._probs), torch.cat(self._labels)
        step = trainer.global_step
        tb.add_pr_curve("val/pr_curve", labels, probs, global_step=step)
        self.last_cut = self.cut(pl_module)
        cm = BinaryConfusionMatrix(threshold=self.last_cut, sync_on_compute=False)
        cm.update(probs, labels)
        self.last_confusion = cm.compute().cpu()
        fig, _ = cm.plot(labels=["benign", "vulnerable"])
        tb.add_figure("val/confusion_matrix", fig, global_step=step, close=True)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_hparams(trainer, pl_module)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_hparams(trainer, pl_module)

    def _log_hparams(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # log_hyperparams also writes the metrics as scalars: under their own names they would add a
        # stray final point at step 0 to the val/f1 ... curves, so the HPARAMS copies get an "hp/" prefix.
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                metrics = {f"{HP_PREFIX}{k}": float(v) for k, v in trainer.callback_metrics.items() if k in FINAL_METRICS}
                if metrics:
                    logger.log_hyperparams(pl_module.hparams, metrics, step=trainer.global_step)
