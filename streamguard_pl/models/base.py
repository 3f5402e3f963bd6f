"""Shared LightningModule for the three detectors: loss, metrics, optimizer groups and schedule.

Subclasses only say how a batch becomes logits (`forward`) and which parameter groups exist
(`param_groups`); everything a run must get right the same way for every model lives here once.
"""
from __future__ import annotations

import inspect
from typing import Any, Literal, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
)
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from ..distributed import gather_uneven
from .compat import check_restored
from .losses import build_loss
from .threshold import best_accuracy_threshold, metric_threshold

_SCHEDULES = {
    "linear": get_linear_schedule_with_warmup,
    "cosine": get_cosine_schedule_with_warmup,
    "constant": get_constant_schedule_with_warmup,
}


class _AUROC(BinaryAUROC):
    """NaN, not torchmetrics' 0.0 (with a warning), when the labels hold one class: a checkpoint or
    HPARAMS column on val/auroc must not read an undefined ranking as the worst one."""

    def compute(self) -> torch.Tensor:
        target = dim_zero_cat(self.target) if isinstance(self.target, list) else self.target
        if target.numel() and bool(target.min() == target.max()):
            return torch.tensor(float("nan"), device=target.device)
        return super().compute()


def _metrics(threshold: float) -> MetricCollection:
    t = metric_threshold(threshold)  # torchmetrics flags p > t, our predictions p >= threshold
    return MetricCollection(
        {
            "accuracy": BinaryAccuracy(threshold=t),
            "precision": BinaryPrecision(threshold=t),
            "recall": BinaryRecall(threshold=t),
            "f1": BinaryF1Score(threshold=t),
            "auroc": _AUROC(),
            "average_precision": BinaryAveragePrecision(),
        }
    )


def _warn_unused_settings(cls: type, settings: dict[str, Any]) -> None:
    """Names a setting that the chosen loss or schedule ignores, when it differs from its default.

    Defaults are always filled in, so only a changed value can tell that a user meant it; a
    checkpoint that carries the defaults loads without a word.
    """
    unused = {"focal_gamma": settings["loss"] != "focal", "warmup_ratio": settings["scheduler"] == "none"}
    defaults = inspect.signature(cls.__init__).parameters
    for name, ignored in unused.items():
        default = defaults[name].default if name in defaults else inspect.Parameter.empty
        if ignored and settings[name] != default:
            owner = "loss" if name == "focal_gamma" else "scheduler"
            rank_zero_warn(f"{cls.__name__}: {name}={settings[name]} has no effect with "
                           f"{owner}={settings[owner]!r}")


def _is_no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases and normalisation weights are not decayed (BERT/RoBERTa fine-tuning practice)."""
    lowered = name.lower()
    return param.ndim < 2 or name.endswith("bias") or "layernorm" in lowered or "layer_norm" in lowered or ".norm" in lowered


class VulnerabilityClassifier(L.LightningModule):
    """Base task: 2-class logits -> loss, P(vulnerable), torchmetrics, AdamW + warmup schedule."""

    model_type: str = "base"
    #: hyperparameters that record the features the network was trained on (models.compat)
    feature_keys: tuple[str, ...] = ()
    #: submodule name of each part classifier -> the key of its hyperparameters in this model's
    part_hparams: dict[str, str] = {}

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        scheduler: Literal["linear", "cosine", "constant", "none"] = "linear",
        loss: Literal["ce", "focal"] = "ce",
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        focal_gamma: float = 1.5,
        threshold: float = 0.5,
        tune_threshold: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= warmup_ratio < 1.0:  # 1.5 never reached the peak nor decayed; < 0 started above zero
            raise ValueError(f"warmup_ratio is the share of steps spent warming up, in [0, 1); got {warmup_ratio}")
        _warn_unused_settings(type(self), {"loss": loss, "focal_gamma": focal_gamma, "scheduler": scheduler,
                                           "warmup_ratio": warmup_ratio})
        # Collects the init args of the whole subclass chain, so checkpoints rebuild any subclass.
        self.save_hyperparameters()
        self.lr = lr
        self.criterion = build_loss(loss, class_weights, label_smoothing, focal_gamma)
        # The epoch train loss is a metric so that, under DDP, it is the mean over all ranks (synced
        # once, at compute); the step value stays each rank's own, without a collective every step.
        self.train_loss = MeanMetric()
        self.val_metrics = _metrics(threshold).clone(prefix="val/")
        self.test_metrics = _metrics(threshold).clone(prefix="test/")
        # The cut test and predict use. With tune_threshold it is re-chosen on every validation
        # epoch, and, being a buffer, saved with the weights: the best checkpoint carries the cut
        # chosen on its own epoch. Validation itself always scores at `threshold`, so val/accuracy
        # (and model selection on it) is the same with or without tuning.
        self.register_buffer("decision_threshold", torch.tensor(float(threshold)))
        self._val_probs: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    # ---- what subclasses provide -------------------------------------------------------------
    def forward(self, batch: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        """Named parameter groups with an `lr_mult` each; fusion overrides this for x0.1/x0.5/x1.0."""
        return [{"name": "model", "params": [p for p in self.parameters()], "lr_mult": 1.0}]

    def batch_labels(self, batch: Any) -> torch.Tensor:
        return batch["labels"]

    def batch_index(self, batch: Any) -> torch.Tensor:
        """Dataset positions of the batch's records, so predictions map back to files and functions."""
        return batch["index"]

    def batch_size_of(self, batch: Any) -> int:
        return int(self.batch_labels(batch).shape[0])

    # ---- steps -------------------------------------------------------------------------------
    def _step(self, batch: Any, stage: str) -> dict[str, torch.Tensor]:
        logits = self(batch)
        labels = self.batch_labels(batch).long().view(-1)
        loss = self.criterion(logits.float(), labels)
        probs = torch.softmax(logits.detach().float(), dim=-1)[:, 1]
        cut = self.decision_threshold if stage == "test" else self.hparams.threshold  # a tensor: no device sync
        preds = (probs >= cut).long()
        bs = self.batch_size_of(batch)
        if stage == "train":
            self.train_loss(loss.detach(), bs)
            self.log("train/loss", self.train_loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs)
        else:  # averaged over all ranks under DDP: EarlyStopping may monitor it
            self.log(f"{stage}/loss", loss, prog_bar=stage != "test", on_epoch=True, batch_size=bs, sync_dist=True)
        metrics = {"val": self.val_metrics, "test": self.test_metrics}.get(stage)
        if stage == "val" and self.hparams.get("tune_threshold"):
            self._val_probs.append(probs)
            self._val_labels.append(labels)
        if metrics is not None:
            metrics.update(probs, labels)
            self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=bs, prog_bar=False)
        return {"loss": loss, "preds": preds, "probs": probs, "labels": labels}

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        probs = torch.softmax(self(batch).float(), dim=-1)[:, 1]
        out = {"probs": probs, "preds": (probs >= self.decision_threshold).long()}
        out["index"] = self.batch_index(batch)
        return out

    # ---- decision threshold ------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_probs, self._val_labels = [], []

    def on_validation_epoch_end(self) -> None:
        if not self.hparams.get("tune_threshold"):
            return
        probs = torch.cat(self._val_probs) if self._val_probs else self.decision_threshold.new_empty(0)
        labels = torch.cat(self._val_labels) if self._val_labels else torch.empty(0, dtype=torch.long, device=probs.device)
        # every rank must choose the same cut from the whole val split (and join the gather without a batch)
        probs, labels = gather_uneven(self, probs), gather_uneven(self, labels)
        self._val_probs, self._val_labels = [], []
        if not probs.numel():
            return
        cut, accuracy = best_accuracy_threshold(probs, labels)
        if not self.trainer.sanity_checking:
            self.decision_threshold.fill_(cut)
        self.log_dict({"val/threshold": cut, "val/accuracy_tuned": accuracy}, sync_dist=False)

    def on_test_epoch_start(self) -> None:
        cut = metric_threshold(float(self.decision_threshold))
        for metric in self.test_metrics.values():
            if hasattr(metric, "threshold"):
                metric.threshold = cut

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters") or {}
        for name, module in self.named_modules():
            if isinstance(module, VulnerabilityClassifier) and module.feature_keys:
                part = self.part_hparams.get(name, name)
                trained = saved if not name else (saved.get(part) or {})
                for key in module.feature_keys:
                    check_restored(module.hparams, trained.get(key), key, f"model.{part}" if name else "model")
        # Checkpoints from before the tuned cut (this model's or a fusion's parts') decided at `threshold`.
        state = checkpoint.get("state_dict")
        if state is None:
            return
        for name, module in self.named_modules():
            if isinstance(module, VulnerabilityClassifier):
                state.setdefault(f"{name}.decision_threshold" if name else "decision_threshold",
                                 torch.tensor(float(module.hparams.get("threshold", 0.5))))

    # ---- optimisation ------------------------------------------------------------------------
    def gradient_components(self) -> dict[str, list[nn.Parameter]]:
        return {g["name"]: list(g["params"]) for g in self.param_groups()}

    def _optimizer_groups(self) -> list[dict[str, Any]]:
        names = {id(p): n for n, p in self.named_parameters()}
        groups: list[dict[str, Any]] = []
        for group in self.param_groups():
            # Frozen parameters stay in the optimizer (AdamW skips tensors without .grad), so an
            # encoder unfrozen after N epochs trains on without rebuilding the optimizer.
            params = list(group["params"])
            decay = [p for p in params if not _is_no_decay(names.get(id(p), ""), p)]
            no_decay = [p for p in params if _is_no_decay(names.get(id(p), ""), p)]
            mult = float(group.get("lr_mult", 1.0))
            for suffix, ps, wd in (("", decay, self.hparams.weight_decay), ("_no_decay", no_decay, 0.0)):
                if ps:
                    groups.append({"name": group["name"] + suffix, "params": ps, "weight_decay": wd,
                                   "lr_mult": mult, "lr": self.lr * mult})
        return groups

    def configure_optimizers(self) -> Any:
        groups = self._optimizer_groups()
        if not any(p.requires_grad for g in groups for p in g["params"]):
            raise RuntimeError(f"{type(self).__name__}: no trainable parameters (is every encoder frozen?)")
        optimizer = torch.optim.AdamW(groups, lr=self.lr)
        if self.hparams.scheduler == "none":
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(self.hparams.warmup_ratio * total)
        schedule = _SCHEDULES[self.hparams.scheduler]
        kwargs = {} if self.hparams.scheduler == "constant" else {"num_training_steps": total}
        scheduler = schedule(optimizer, num_warmup_steps=warmup, **kwargs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
