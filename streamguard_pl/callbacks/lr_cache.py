"""Lightning's LR finder, remembered: the same model, data and data settings, effective batch (batch
size, accumulation, devices), clipping and precision reuse the last suggestion instead of spending
another sweep, and the per-group LR multipliers survive the search.

Lightning's finder sweeps one LR across every param group and then writes that single LR into all
groups; our modules build groups as `lr * lr_mult` in configure_optimizers, so after any suggestion
(found or cached) the optimizers are rebuilt from the module's new base `lr`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateFinder
from lightning.pytorch.utilities.parsing import lightning_setattr
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from ..jsonsafe import atomic_write_json, read_json, safe_jsonify

try:  # POSIX only; elsewhere concurrent runs may lose an entry (never corrupt the file).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: datamodule settings that say where files are or how they are loaded, not what a batch holds
#: (the data fingerprint covers the records themselves)
_DATA_KEYS_WITHOUT_EFFECT = frozenset({"data_dir", "cache_dir", "output_dir", "num_workers", "eval_batch_size"})

DEFAULT_CACHE_PATH = Path("~/.cache/streamguard_pl/lr_cache.json")
CACHE_VERSION = 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CacheCorrupt(ValueError):
    """The cache file exists but is not a cache we wrote."""


def load_cache(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Entries by key; {} when the file does not exist. Raises CacheCorrupt naming the file."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CacheCorrupt(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise CacheCorrupt(f"{path}: expected an object with an 'entries' object")
    return data["entries"]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on a side file; the cache itself is replaced atomically, so it cannot hold the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def store_entry(path: str | os.PathLike, key: str, entry: dict[str, Any]) -> None:
    """Read-modify-write one entry under the lock, so concurrent runs sharing the file keep all entries."""
    path = Path(path)
    with _locked(path):
        try:
            entries = load_cache(path)
        except CacheCorrupt as exc:
            rank_zero_warn(f"LR cache {exc}; starting a new cache file")
            entries = {}
        entries[key] = entry
        atomic_write_json(path, {"version": CACHE_VERSION, "entries": entries})


def _entry_problem(entry: Any, max_age_hours: float) -> str | None:
    """Why a cached entry cannot be used, or None when it can."""
    if not isinstance(entry, dict):
        return "entry is not an object"
    lr = entry.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        return f"entry has no usable 'lr' ({lr!r})"
    try:
        created = dt.datetime.fromisoformat(str(entry.get("created")))
    except ValueError:
        return f"entry has no valid 'created' time ({entry.get('created')!r})"
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.timezone.utc)
    age_h = (_now() - created).total_seconds() / 3600
    if age_h > max_age_hours:
        return f"entry is stale ({age_h:.1f} h old > max_age_hours={max_age_hours:g})"
    return None


class CachedLRFinder(LearningRateFinder):
    """LearningRateFinder that caches its suggestion for the base LR (`pl_module.lr`).

    Key: sha256 of model class, model hparams (minus the LR itself, which the sweep replaces), data
    fingerprint, batch size, trainer precision and the sweep settings. Entries expire after
    `max_age_hours`; stale, corrupt or unreadable entries are recomputed with a warning, and a sweep
    that yields no suggestion is not cached.
    """

    def __init__(
        self,
        min_lr: float = 1e-8,
        max_lr: float = 1.0,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        cache_path: str | os.PathLike | None = None,
        max_age_hours: float = 168.0,
        attr_name: str = "lr",
    ) -> None:
        super().__init__(min_lr=min_lr, max_lr=max_lr, num_training_steps=num_training_steps, mode=mode,
                         early_stop_threshold=early_stop_threshold, update_attr=True, attr_name=attr_name)
        self.cache_path = Path(cache_path if cache_path is not None else DEFAULT_CACHE_PATH).expanduser()
        self.max_age_hours = max_age_hours
        self.cache_hit: bool | None = None
        self.suggested_lr: float | None = None
        self.key: str | None = None

    # ---- key ---------------------------------------------------------------------------------
    def key_parts(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        hparams = {k: v for k, v in dict(pl_module.hparams).items() if k != self._attr_name}
        datamodule = trainer.datamodule
        fingerprint = None
        if datamodule is not None and hasattr(datamodule, "data_summary"):
            fingerprint = (datamodule.data_summary() or {}).get("fingerprint")
        if fingerprint is None:
            rank_zero_warn("CachedLRFinder: no data fingerprint (datamodule.data_summary()); the cache key ignores the data")
        batch_size = getattr(datamodule, "batch_size", None) if datamodule is not None else None
        if batch_size is None:
            batch_size = dict(pl_module.hparams).get("batch_size")
        cls = type(pl_module)
        data_settings = {k: v for k, v in dict(getattr(datamodule, "hparams", None) or {}).items()
                         if k not in _DATA_KEYS_WITHOUT_EFFECT}
        return safe_jsonify({
            "model": f"{cls.__module__}.{cls.__qualname__}",
            "hparams": hparams,
            "data_fingerprint": fingerprint,
            # what a sweep step sees besides the records: truncation, sampler, graph settings ...
            "data_settings": data_settings,
            "batch_size": batch_size,
            # the sweep records one loss per optimizer step: the effective batch and the clipping count
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "world_size": trainer.world_size,
            "gradient_clip": [trainer.gradient_clip_val, str(trainer.gradient_clip_algorithm)],
            "precision": str(trainer.precision),
            "finder": {"min_lr": self._min_lr, "max_lr": self._max_lr, "num_training_steps": self._num_training_steps,
                       "mode": self._mode, "early_stop_threshold": self._early_stop_threshold},
        })

    @staticmethod
    def hash_key(parts: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()

    # ---- lookup / store ----------------------------------------------------------------------
    def lookup(self, key: str) -> dict[str, Any] | None:
        """The usable entry for key, or None (after warning why an existing one is not used)."""
        try:
            entries = load_cache(self.cache_path)
        except (CacheCorrupt, OSError) as exc:
            rank_zero_warn(f"LR cache unreadable, recomputing: {exc}")
            return None
        if key not in entries:
            return None
        problem = _entry_problem(entries[key], self.max_age_hours)
        if problem is not None:
            rank_zero_warn(f"LR cache {self.cache_path}: {problem}; recomputing")
            return None
        return entries[key]

    # ---- Lightning hook ----------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run:
            rank_zero_info("CachedLRFinder: skipped under fast_dev_run")
            return
        if trainer.ckpt_path:
            # The resumed optimizer state carries its own learning rates; a sweep would be overwritten.
            rank_zero_info("CachedLRFinder: resuming from a checkpoint, keeping its learning rates")
            return
        parts = self.key_parts(trainer, pl_module)
        self.key = self.hash_key(parts)
        entry = self.lookup(self.key) if trainer.is_global_zero else None
        # Rank 0 decides for everyone: ranks that disagreed would deadlock inside the sweep.
        entry = trainer.strategy.broadcast(entry, src=0)
        if entry is not None:
            self.cache_hit = True
            self.suggested_lr = float(entry["lr"])
            self._apply(trainer, pl_module, self.suggested_lr)
            message = f"using cached LR {self.suggested_lr:.2e} from {entry['created']}"
            rank_zero_info(f"CachedLRFinder: {message}")
            self._log(trainer, hit=True)
            return

        self.cache_hit = False
        super().on_fit_start(trainer, pl_module)  # Lightning's sweep; sets pl_module.lr on success
        suggestion = self.optimal_lr.suggestion() if self.optimal_lr is not None else None
        if suggestion is None or not math.isfinite(suggestion) or suggestion <= 0:
            # Lightning already restored the optimizers as they were before the sweep.
            rank_zero_warn(f"CachedLRFinder: no LR suggestion; keeping lr={getattr(pl_module, self._attr_name)} "
                           "and caching nothing")
            return
        self.suggested_lr = float(suggestion)
        self._apply(trainer, pl_module, self.suggested_lr)
        if trainer.is_global_zero:
            store_entry(self.cache_path, self.key,
                        {"lr": self.suggested_lr, "created": _now().isoformat(), "key_parts": parts})
        rank_zero_info(f"CachedLRFinder: found LR {self.suggested_lr:.2e}, cached in {self.cache_path}")
        self._log(trainer, hit=False)

    def _log(self, trainer: L.Trainer, hit: bool) -> None:
        # pl_module.log is not allowed in on_fit_start, so go to the loggers directly.
        for logger in trainer.loggers:
            logger.log_metrics({"lr_finder/lr": float(self.suggested_lr or 0.0), "lr_finder/cache_hit": float(hit)}, step=0)

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule, lr: float) -> None:
        """Set the base LR and rebuild optimizers + schedulers so every group gets lr * lr_mult again."""
        lightning_setattr(pl_module, self._attr_name, lr)
        trainer.strategy.setup_optimizers(trainer)
