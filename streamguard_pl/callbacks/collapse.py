"""Stop a run that has collapsed instead of letting it burn GPU hours, and leave a report saying why.

Vulnerability detectors on imbalanced C/C++ data fail in a few recognisable ways: the loss goes
NaN, gradients vanish (e.g. an encoder left frozen), or the model settles on predicting one class.
Each check below watches one of those; `collapse_threshold` consecutive failures of the same check
mean collapse, so one odd batch never stops a run.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch.nn.utils import get_total_norm

from ..jsonsafe import atomic_write_json

log = logging.getLogger(__name__)

REPORT_NAME = "collapse_report.json"
STEP_KINDS = ("nan_loss", "zero_gradient", "constant_predictions")
VAL_KIND = "val_one_class"


def _class_counts(values: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    return torch.bincount(values.detach().long().view(-1).cpu(), minlength=num_classes)


def _distribution(counts: torch.Tensor) -> dict[str, int]:
    return {str(c): int(n) for c, n in enumerate(counts.tolist())}


class CollapseDetection(Callback):
    """Watch loss, gradient norm and predictions; stop after `collapse_threshold` consecutive events.

    Step checks (NaN/Inf loss, total grad norm < `grad_norm_threshold`, one predicted class over the
    last `window_size` training batches) and the validation check (one predicted class over the whole
    validation epoch) each keep their own streak. Prediction checks wait `warmup_epochs`, because a
    freshly initialised classifier legitimately predicts one class for a while. A validation epoch
    predicting fewer than `min_pred_ratio` x the true vulnerable count only warns.
    """

    # Below this GradScaler scale a "skipped" step is no longer calibration but a scaler fighting a
    # persistent NaN; from the default 2**16 that is 16 consecutive skips.
    MIN_AMP_SCALE = 1.0
    # Bound on events kept in the report when auto-stop is off; the total is always counted.
    MAX_EVENTS = 1000

    def __init__(
        self,
        window_size: int = 50,
        collapse_threshold: int = 3,
        enable_auto_stop: bool = True,
        grad_norm_threshold: float = 1e-8,
        warmup_epochs: int = 1,
        min_pred_ratio: float = 0.2,
        dirpath: str | Path | None = None,
    ) -> None:
        super().__init__()
        if window_size < 1 or collapse_threshold < 1:
            raise ValueError("window_size and collapse_threshold must be >= 1")
        self.window_size = window_size
        self.collapse_threshold = collapse_threshold
        self.enable_auto_stop = enable_auto_stop
        self.grad_norm_threshold = grad_norm_threshold
        self.warmup_epochs = warmup_epochs
        self.min_pred_ratio = min_pred_ratio
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self._reset()

    def _reset(self) -> None:
        self.collapsed = False
        self.reason: str | None = None
        self.events: list[dict[str, Any]] = []
        self.total_events = 0
        self.warnings: list[dict[str, Any]] = []
        self.amp_skipped_steps: list[int] = []
        self.streaks = {kind: 0 for kind in (*STEP_KINDS, VAL_KIND)}
        self._window: deque[torch.Tensor] = deque(maxlen=self.window_size)
        self._step = 0
        self._scale_before: float | None = None
        self._grad_norm: float | None = None
        self._val_preds = torch.zeros(2, dtype=torch.long)
        self._val_labels = torch.zeros(2, dtype=torch.long)

    # ---- where the report goes ---------------------------------------------------------------
    def report_path(self, trainer: L.Trainer) -> Path:
        return (self.dirpath or Path(trainer.default_root_dir)) / REPORT_NAME

    def report(self, trainer: L.Trainer) -> dict[str, Any]:
        return {
            "collapsed": self.collapsed,
            "reason": self.reason,
            "total_steps": int(trainer.global_step),
            "total_events": self.total_events,
            "events": self.events,
            "events_not_listed": self.total_events - len(self.events),
            "warnings": self.warnings,
            "amp_skipped_steps": self.amp_skipped_steps,
            "settings": {
                "window_size": self.window_size,
                "collapse_threshold": self.collapse_threshold,
                "enable_auto_stop": self.enable_auto_stop,
                "grad_norm_threshold": self.grad_norm_threshold,
                "warmup_epochs": self.warmup_epochs,
                "min_pred_ratio": self.min_pred_ratio,
            },
        }

    def _write_report(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:
            atomic_write_json(self.report_path(trainer), self.report(trainer))

    # ---- training steps ----------------------------------------------------------------------
    @staticmethod
    def _scaler(trainer: L.Trainer) -> Any:
        return getattr(trainer.precision_plugin, "scaler", None)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Before a resumed checkpoint restores our state_dict, so a resumed run keeps its history.
        if stage == "fit":
            self._reset()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed checkpoint saved after a collapse restores `collapsed`: the first check would stop
        # the run after one batch with no word (the warning fires when the flag first turns true).
        if self.collapsed and self.enable_auto_stop:
            rank_zero_warn(f"resumed from a checkpoint saved after training collapsed ({self.reason}): not training "
                           f"on; resume from an earlier checkpoint, or set enable_auto_stop=False to train on anyway")
            trainer.should_stop = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step = int(trainer.global_step)
        self._grad_norm = None
        scaler = self._scaler(trainer)
        self._scale_before = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else None

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        # Lightning's precision plugin has unscaled the gradients before this hook.
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self._grad_norm = float(get_total_norm(grads)) if grads else 0.0

    def _amp_skipped(self, trainer: L.Trainer) -> bool:
        """True when the GradScaler dropped this step on purpose (inf grads -> smaller scale)."""
        scaler = self._scaler(trainer)
        if self._scale_before is None or scaler is None:
            return False
        after = float(scaler.get_scale())
        return after < self._scale_before and after >= self.MIN_AMP_SCALE

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        out = outputs if isinstance(outputs, dict) else {"loss": outputs}
        loss = out.get("loss")
        loss_value = float(loss.detach().float()) if isinstance(loss, torch.Tensor) else None
        loss_finite = loss_value is None or math.isfinite(loss_value)
        preds = out.get("preds")
        if isinstance(preds, torch.Tensor):
            self._window.append(_class_counts(preds))
        window = torch.stack(list(self._window)).sum(0) if self._window else None

        skipped = self._amp_skipped(trainer)
        if skipped:
            self.amp_skipped_steps.append(self._step)
        checks: dict[str, bool | None] = {kind: None for kind in STEP_KINDS}  # None = not checked
        if loss_value is not None and not skipped:
            checks["nan_loss"] = not loss_finite
        if self._grad_norm is not None and not skipped:
            checks["zero_gradient"] = self._grad_norm < self.grad_norm_threshold
        if window is not None and len(self._window) == self.window_size and trainer.current_epoch >= self.warmup_epochs:
            checks["constant_predictions"] = int((window > 0).sum()) <= 1

        for kind, failed in checks.items():
            if failed is None:
                continue
            self.streaks[kind] = self.streaks[kind] + 1 if failed else 0
            if failed:
                self._record(trainer, kind, loss_value, loss_finite, window)
        self._after_checks(trainer, pl_module, on_step=True)

    # ---- validation epochs -------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_preds = torch.zeros(2, dtype=torch.long)
        self._val_labels = torch.zeros(2, dtype=torch.long)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not isinstance(outputs, dict) or "preds" not in outputs or "labels" not in outputs:
            return
        self._val_preds = self._add_counts(self._val_preds, _class_counts(outputs["preds"]))
        self._val_labels = self._add_counts(self._val_labels, _class_counts(outputs["labels"]))

    @staticmethod
    def _add_counts(total: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        size = max(total.numel(), counts.numel())
        return torch.nn.functional.pad(total, (0, size - total.numel())) + torch.nn.functional.pad(counts, (0, size - counts.numel()))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        # Every rank saw a shard of the validation set: sum the class counts before judging.
        counts = torch.stack([self._val_preds[:2], self._val_labels[:2]]).to(pl_module.device)
        counts = trainer.strategy.reduce(counts, reduce_op="sum").cpu().long()
        preds, labels = counts[0], counts[1]
        if int(preds.sum()) == 0:
            return
        epoch, step = int(trainer.current_epoch), int(trainer.global_step)
        predicted_vuln, actual_vuln = int(preds[1]), int(labels[1])
        if actual_vuln > 0 and predicted_vuln < self.min_pred_ratio * actual_vuln:
            message = (
                f"epoch {epoch}: model predicted {predicted_vuln} vulnerable functions but validation has "
                f"{actual_vuln} (< {self.min_pred_ratio:g}x); it is drifting towards 'safe' for everything"
            )
            self.warnings.append({"epoch": epoch, "step": step, "kind": "few_vulnerable_predictions",
                                  "predicted_vulnerable": predicted_vuln, "actual_vulnerable": actual_vuln,
                                  "message": message})
            rank_zero_warn(message)
        if epoch >= self.warmup_epochs:
            one_class = int((preds > 0).sum()) <= 1
            self.streaks[VAL_KIND] = self.streaks[VAL_KIND] + 1 if one_class else 0
            if one_class:
                self._record(trainer, VAL_KIND, None, True, preds, grad_checked=False)
        self._after_checks(trainer, pl_module, on_step=False)

    # ---- shared bookkeeping ------------------------------------------------------------------
    def _record(
        self, trainer: L.Trainer, kind: str, loss: float | None, finite: bool,
        counts: torch.Tensor | None, grad_checked: bool = True,
    ) -> None:
        self.total_events += 1
        if len(self.events) >= self.MAX_EVENTS:
            return
        norm = self._grad_norm if grad_checked else None
        self.events.append({
            "step": self._step if kind != VAL_KIND else int(trainer.global_step),
            "epoch": int(trainer.current_epoch),
            "kind": kind,
            "gradient_check": {"norm": norm, "zero": None if norm is None else norm < self.grad_norm_threshold},
            "prediction_check": {
                "unique_predictions": None if counts is None else int((counts > 0).sum()),
                "distribution": None if counts is None else _distribution(counts),
            },
            "loss_check": {"value": loss, "finite": finite},
        })
        log.warning("collapse check %s failed at step %d (streak %d/%d)", kind, self.events[-1]["step"],
                    self.streaks[kind], self.collapse_threshold)

    def _after_checks(self, trainer: L.Trainer, pl_module: L.LightningModule, on_step: bool) -> None:
        if trainer.logger is not None:
            pl_module.log("collapse/events", float(self.total_events), on_step=on_step, on_epoch=not on_step, batch_size=1)
        if not self.collapsed:
            worst = max(self.streaks, key=lambda k: self.streaks[k])
            if self.streaks[worst] >= self.collapse_threshold:
                self.collapsed = True
                self.reason = f"{self.streaks[worst]} consecutive '{worst}' events"
                rank_zero_warn(f"Training collapse detected: {self.reason}; report in {self.report_path(trainer)}")
                self._write_report(trainer)
        stop = self.collapsed and self.enable_auto_stop
        # Like EarlyStopping: all ranks must agree, or one rank waits forever in a collective.
        trainer.should_stop = trainer.should_stop or trainer.strategy.reduce_boolean_decision(stop, all=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_report(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # A test or validate that fails on a run's folder must leave the report its fit wrote.
        if trainer.state.fn == TrainerFn.FITTING:
            self._write_report(trainer)

    # ---- checkpoint resume -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"collapsed": self.collapsed, "reason": self.reason, "events": self.events,
                "total_events": self.total_events, "warnings": self.warnings, "streaks": dict(self.streaks),
                "amp_skipped_steps": self.amp_skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict.items():
            setattr(self, key, value)
