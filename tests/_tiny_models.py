"""Tiny real LightningModule + DataModule that follow the VulnerabilityClassifier contract.

They are standalone (not subclasses of models/base.py) so the callback tests exercise only the
contract the callbacks rely on: step dicts with loss/preds/probs/labels, an `lr` attribute, optimizer
param groups carrying `name` and `lr_mult`, `gradient_components()` and `data_summary()`. Flags
reproduce the failures the callbacks must catch.
"""
from __future__ import annotations

import hashlib
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DEFAULT_LR = 5e-2
BODY_MULT = 0.1
HEAD_MULT = 1.0


class TinyClassifier(L.LightningModule):
    """2-layer MLP over random features; body group lr x0.1, head group lr x1.0."""

    def __init__(
        self,
        in_features: int = 8,
        hidden: int = 16,
        lr: float = DEFAULT_LR,
        nan_from_step: int | None = None,
        inf_loss_at_steps: tuple[int, ...] = (),
        freeze: bool = False,
        force_class: int | None = None,
        raise_at_step: int | None = None,
        scheduler: str = "none",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.lr = lr
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2)
        self.train_steps_run = 0  # counts every training_step call, LR-finder sweeps included
        if freeze:
            for p in self.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.body(x))
        if self.hparams.force_class is not None:
            # Far more than a few dozen steps can undo; gradients stay non-zero (misclassified rows).
            logits = logits + 1000.0 * nn.functional.one_hot(torch.tensor(self.hparams.force_class), 2).to(logits)
        return logits

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        logits = self(batch["x"])
        labels = batch["labels"]
        loss = nn.functional.cross_entropy(logits, labels)
        if self.hparams.freeze:
            # Parameter-free term so backward() works while no parameter receives a gradient.
            loss = loss + torch.zeros((), requires_grad=True)
        probs = torch.softmax(logits.detach(), dim=-1)[:, 1]
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=labels.shape[0])
        return {"loss": loss, "preds": logits.detach().argmax(-1), "probs": probs, "labels": labels}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        self.train_steps_run += 1
        step = self.global_step
        if self.hparams.raise_at_step is not None and step >= self.hparams.raise_at_step:
            raise RuntimeError(f"deliberate failure at step {step}")
        out = self._step(batch, "train")
        if self.hparams.nan_from_step is not None and step >= self.hparams.nan_from_step:
            out["loss"] = out["loss"] * float("nan")
        if step in self.hparams.inf_loss_at_steps:
            out["loss"] = out["loss"] * float("inf")
        return out

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._step(batch, "val")
        self.log("val/acc", (out["preds"] == out["labels"]).float().mean(), on_epoch=True, batch_size=out["labels"].shape[0])
        return out

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"name": "body", "params": list(self.body.parameters()), "lr_mult": BODY_MULT},
            {"name": "head", "params": list(self.head.parameters()), "lr_mult": HEAD_MULT},
        ]

    def gradient_components(self) -> dict[str, list[nn.Parameter]]:
        return {g["name"]: g["params"] for g in self.param_groups()}

    def configure_optimizers(self) -> Any:
        groups = [{**g, "lr": self.lr * g["lr_mult"]} for g in self.param_groups()]
        optimizer = torch.optim.AdamW(groups, lr=self.lr)
        if self.hparams.scheduler == "none":
            return optimizer
        scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.1, total_iters=100)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TinyDataModule(L.LightningDataModule):
    """Random features; label = sign of feature 0, so the task is learnable and balanced."""

    def __init__(self, n_train: int = 64, n_val: int = 32, in_features: int = 8, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = batch_size
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n_train + n_val, in_features, generator=gen)
        y = (x[:, 0] > 0).long()
        x[:, 0] += 2.0 * (2 * y - 1)  # a margin, so a few steps of training separate the classes
        self.train_x, self.train_y = x[:n_train], y[:n_train]
        self.val_x, self.val_y = x[n_train:], y[n_train:]

    def _loader(self, x: torch.Tensor, y: torch.Tensor, shuffle: bool) -> DataLoader:
        def collate(rows: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
            xs, ys = zip(*rows)
            return {"x": torch.stack(xs), "labels": torch.stack(ys)}

        return DataLoader(TensorDataset(x, y), batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_x, self.train_y, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_x, self.val_y, shuffle=False)

    def data_summary(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for t in (self.train_x, self.train_y, self.val_x, self.val_y):
            digest.update(t.numpy().tobytes())
        return {
            "fingerprint": digest.hexdigest()[:16],
            "split_sizes": {"train": len(self.train_y), "val": len(self.val_y)},
            "label_counts": {
                "train": {"0": int((self.train_y == 0).sum()), "1": int((self.train_y == 1).sum())},
                "val": {"0": int((self.val_y == 0).sum()), "1": int((self.val_y == 1).sum())},
            },
            "source": "synthetic",
        }


def make_trainer(tmp_path: Any, callbacks: list[Any], **kwargs: Any) -> L.Trainer:
    """The small CPU Trainer every callback test uses; kwargs override the defaults."""
    settings: dict[str, Any] = dict(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    settings.update(kwargs)
    return L.Trainer(callbacks=callbacks, **settings)
