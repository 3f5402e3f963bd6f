"""Per-component gradient norms, so a fusion run shows whether the transformer, the GNN or the head
is actually learning (a frozen or starved branch shows up as zero / tiny norms).

Norms are taken in on_before_optimizer_step, where Lightning's precision plugin has already unscaled
AMP gradients, and accumulated on the device so the summary costs no host sync per step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.nn.utils import get_total_norm

from ..jsonsafe import atomic_write_json

STATS_NAME = "gradient_stats.json"
TOTAL = "total"


class _Running:
    """Device-side running summary of one component's norm (non-finite steps counted apart)."""

    def __init__(self, device: torch.device) -> None:
        zero = torch.zeros((), dtype=torch.float64, device=device)
        self.sum, self.last = zero.clone(), zero.clone()
        self.max = torch.full((), -torch.inf, dtype=torch.float64, device=device)
        self.min = torch.full((), torch.inf, dtype=torch.float64, device=device)
        self.finite, self.zero, self.nonfinite = zero.clone(), zero.clone(), zero.clone()
        self.steps = 0

    def update(self, norm: torch.Tensor, has_grads: bool) -> None:
        norm = norm.to(torch.float64)
        ok = torch.isfinite(norm)
        safe = torch.where(ok, norm, torch.zeros_like(norm))
        self.steps += 1
        self.last = norm
        self.sum += safe
        self.max = torch.where(ok, torch.maximum(self.max, norm), self.max)
        self.min = torch.where(ok, torch.minimum(self.min, norm), self.min)
        self.finite += ok.to(torch.float64)
        self.nonfinite += (~ok).to(torch.float64)
        self.zero += (norm == 0).to(torch.float64) if has_grads else 1.0

    _TENSORS = ("sum", "last", "max", "min", "finite", "zero", "nonfinite")

    def state(self) -> dict[str, Any]:
        return {**{k: float(getattr(self, k).item()) for k in self._TENSORS}, "steps": self.steps}

    def restore(self, state: dict[str, Any]) -> None:
        for k in self._TENSORS:
            setattr(self, k, torch.tensor(float(state[k]), dtype=torch.float64, device=self.sum.device))
        self.steps = int(state["steps"])

    def summary(self, num_parameters: int) -> dict[str, Any]:
        finite = int(self.finite.item())
        return {
            "mean": (self.sum / finite).item() if finite else None,
            "max": self.max.item() if finite else None,
            "min": self.min.item() if finite else None,
            "last": self.last.item() if self.steps else None,
            "steps": self.steps,
            "zero_gradient_steps": int(self.zero.item()),
            "nonfinite_steps": int(self.nonfinite.item()),
            "num_parameters": num_parameters,
        }


class GradientStats(Callback):
    """Log `grad_norm/<component>` and `grad_norm/total` (L2, after unscaling) every optimizer step and
    write mean/max/min/last/steps/zero_gradient_steps per component to `gradient_stats.json` at fit end.

    Components come from `pl_module.gradient_components()` (all parameters as "model" if the module
    has no such method). Logging goes through `pl_module.log`, so `log_every_n_steps` applies.
    """

    def __init__(self, dirpath: str | Path | None = None, norm_type: float = 2.0) -> None:
        super().__init__()
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.norm_type = float(norm_type)
        self._components: dict[str, list[torch.nn.Parameter]] = {}
        self._stats: dict[str, _Running] = {}
        self._total_parameters = 0
        self._restored: dict[str, dict[str, Any]] = {}

    def stats_path(self, trainer: L.Trainer) -> Path:
        return (self.dirpath or Path(trainer.default_root_dir)) / STATS_NAME

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        getter = getattr(pl_module, "gradient_components", None)
        components = getter() if callable(getter) else {"model": list(pl_module.parameters())}
        if TOTAL in components:
            raise ValueError(f"gradient_components() may not use the reserved name {TOTAL!r}")
        self._components = {name: list(params) for name, params in components.items()}
        self._stats = {name: _Running(pl_module.device) for name in [*self._components, TOTAL]}
        self._total_parameters = sum(p.numel() for p in pl_module.parameters())
        # A resumed run goes on from the checkpoint's summaries (restored before this hook), so the
        # file covers every step of the run, not only those after the resume.
        for name, state in self._restored.items():
            if name in self._stats:
                self._stats[name].restore(state)
        self._restored = {}

    def state_dict(self) -> dict[str, Any]:
        return {name: running.state() for name, running in self._stats.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)

    def _norm(self, params: list[torch.nn.Parameter], device: torch.device) -> tuple[torch.Tensor, bool]:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=device), False
        return get_total_norm(grads, norm_type=self.norm_type), True

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not self._stats:  # fit_start not seen (e.g. a bare loop in a test harness)
            return
        device = pl_module.device
        norms: dict[str, torch.Tensor] = {}
        for name, params in self._components.items():
            norms[name], has = self._norm(params, device)
            self._stats[name].update(norms[name], has)
        norms[TOTAL], has = self._norm(list(pl_module.parameters()), device)
        self._stats[TOTAL].update(norms[TOTAL], has)
        if trainer.logger is not None:
            for name, value in norms.items():
                pl_module.log(f"grad_norm/{name}", value.float(), on_step=True, on_epoch=False, batch_size=1)

    def summary(self) -> dict[str, Any]:
        counts = {name: sum(p.numel() for p in params) for name, params in self._components.items()}
        return {
            "norm_type": self.norm_type,
            "components": {name: self._stats[name].summary(counts[name]) for name in self._components},
            TOTAL: self._stats[TOTAL].summary(self._total_parameters) if TOTAL in self._stats else None,
        }

    def _write(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero and self._stats:
            atomic_write_json(self.stats_path(trainer), self.summary())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # A crashed run's gradients are often the best clue to why it crashed.
        self._write(trainer)
