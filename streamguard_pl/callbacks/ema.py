"""Exponential moving average of the weights, on Lightning's own `EMAWeightAveraging`.

Lightning's callback validates and checkpoints the averaged weights, which is what noisy labels
(Devign) want. It also swaps and copies *buffers* between the live and the averaged model, and our
modules keep their decision cut in a buffer (`decision_threshold`) that `tune_threshold` re-chooses
in `on_validation_epoch_end`, a hook that runs after the callback has swapped the live weights back.
Averaging that buffer would save a lagging cut, and copying the averaged model's buffers at the end
of training would reset it. So here only parameters are averaged, and every buffer in a checkpoint,
or left on the module when training ends, is the live module's.

Lightning copies the module in the callback's `setup`, which runs before the module's own; a
from-scratch `TransformerClassifier` only builds its encoder there (the tokenizer sizes it). So the
copy is made at fit start (or when a resumed checkpoint is restored), once the module is whole and,
at fit start, on its device. Outside fit, a checkpoint is evaluated with its averaged weights, also on
the trainer that fitted it.
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMAWeights(EMAWeightAveraging):
    """EMA of the parameters (decay per optimizer step); buffers stay the live module's."""

    def __init__(self, decay: float = 0.999, update_starting_at_step: int | None = None,
                 update_every_n_steps: int = 1) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMAWeights decay must be in (0, 1), got {decay!r}")
        self.decay = decay  # Lightning keeps it only inside its averaging function
        super().__init__(decay=decay, use_buffers=False, update_starting_at_step=update_starting_at_step,
                         update_every_n_steps=update_every_n_steps)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:
            self._average_model = None  # a new fit averages afresh, from the module as on_fit_start finds it

    def _ensure_average(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._average_model is None:
            super().setup(trainer, pl_module, TrainerFn.FITTING)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure_average(trainer, pl_module)
        # Resuming restores the average before the strategy moves the module to its device: made on
        # the CPU then, it would stay there and cost a host-device copy every step.
        if self._device is None and self._average_model is not None:
            self._average_model.to(pl_module.device)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            # test / validate / predict evaluate the averaged weights the checkpoint's state_dict holds.
            # Lightning's callback, still holding its average after a fit on the same trainer (as in
            # `trainer.test(ckpt_path="best")` after `fit`), would load the live weights over them.
            return
        self._ensure_average(trainer, pl_module)  # resuming: restore the average into a copy of the built module
        super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Outside fit the module already holds what is to be scored: a checkpoint's averaged weights, or
        # the average the fit left behind. Lightning's swap would put the fit's last average over a
        # loaded checkpoint in `trainer.validate(ckpt_path=...)` on the trainer that fitted.
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_validation_epoch_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        live = checkpoint.get("current_model_state")
        if live is None:
            return
        for name, _ in pl_module.named_buffers():
            if name in live:
                checkpoint["state_dict"][name] = live[name]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        buffers = {name: b.detach().clone() for name, b in pl_module.named_buffers()}
        super().on_train_end(trainer, pl_module)
        with torch.no_grad():
            for name, b in pl_module.named_buffers():
                b.copy_(buffers[name])
