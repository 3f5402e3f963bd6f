"""CachedLRFinder on a real Trainer: the sweep runs once per key, the cached base LR is re-applied
with each param group's multiplier, and a bad cache is recomputed rather than trusted."""
from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _tiny_models import BODY_MULT, DEFAULT_LR, HEAD_MULT, TinyClassifier, TinyDataModule, make_trainer
from lightning.pytorch.callbacks import LearningRateFinder

from streamguard_pl.callbacks import CachedLRFinder
from streamguard_pl.callbacks.lr_cache import load_cache

SWEEP = 20  # finder steps; 256 rows / batch 8 = 32 real steps per epoch
REAL_STEPS = 32


class CountingFinder(CachedLRFinder):
    """Counts how often Lightning's sweep is entered."""

    sweeps = 0

    def lr_find(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        type(self).sweeps += 1
        super().lr_find(trainer, pl_module)


def _fit(tmp_path: Path, cache: Path, batch_size: int = 8, sweep: int = SWEEP, **model_kwargs) -> tuple[CachedLRFinder, TinyClassifier, object]:
    finder = CountingFinder(num_training_steps=sweep, cache_path=cache)
    model = TinyClassifier(**model_kwargs)
    trainer = make_trainer(tmp_path, [finder], max_epochs=1)
    trainer.fit(model, TinyDataModule(n_train=256, batch_size=batch_size))
    return finder, model, trainer


@pytest.fixture(autouse=True)
def _reset_counter() -> None:
    CountingFinder.sweeps = 0


def _group_lrs(trainer) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}


def test_miss_runs_sweep_and_reapplies_group_multipliers(tmp_path: Path) -> None:
    cache = tmp_path / "lr_cache.json"
    finder, model, trainer = _fit(tmp_path, cache)
    assert finder.cache_hit is False and CountingFinder.sweeps == 1
    lr = finder.suggested_lr
    assert lr is not None and lr != DEFAULT_LR
    assert model.lr == lr and model.hparams.lr == lr
    assert _group_lrs(trainer) == pytest.approx({"body": lr * BODY_MULT, "head": lr * HEAD_MULT})
    assert model.train_steps_run == SWEEP + REAL_STEPS
    entry = load_cache(cache)[finder.key]
    assert entry["lr"] == lr and entry["key_parts"]["batch_size"] == 8
    assert entry["key_parts"]["precision"] == "32-true" and entry["key_parts"]["data_fingerprint"]
    assert dt.datetime.fromisoformat(entry["created"]).tzinfo is not None


def test_plain_lightning_finder_flattens_groups(tmp_path: Path) -> None:
    """Why CachedLRFinder rebuilds the optimizers: Lightning writes one LR into every group."""
    model = TinyClassifier()
    trainer = make_trainer(tmp_path, [LearningRateFinder(num_training_steps=SWEEP)], max_epochs=1)
    trainer.fit(model, TinyDataModule(n_train=256))
    lrs = _group_lrs(trainer)
    assert lrs["body"] == lrs["head"] == model.lr


def test_scheduler_base_lrs_follow_the_new_base_lr(tmp_path: Path) -> None:
    finder, model, trainer = _fit(tmp_path, tmp_path / "c.json", scheduler="linear")
    lr = finder.suggested_lr
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == pytest.approx([lr * BODY_MULT, lr * HEAD_MULT])


def test_hit_skips_the_sweep(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "lr_cache.json"
    first, _, _ = _fit(tmp_path, cache)
    with caplog.at_level(logging.INFO):
        second, model, trainer = _fit(tmp_path, cache)
    assert CountingFinder.sweeps == 1 and second.cache_hit is True
    assert model.train_steps_run == REAL_STEPS  # no finder steps at all
    assert second.suggested_lr == model.lr == model.hparams.lr == first.suggested_lr
    assert _group_lrs(trainer) == pytest.approx({"body": model.lr * BODY_MULT, "head": model.lr * HEAD_MULT})
    created = load_cache(cache)[second.key]["created"]
    assert f"using cached LR {model.lr:.2e} from {created}" in caplog.text


def test_key_ignores_initial_lr_but_not_batch_size(tmp_path: Path) -> None:
    cache = tmp_path / "lr_cache.json"
    first, _, _ = _fit(tmp_path, cache, lr=1e-2)
    second, _, _ = _fit(tmp_path, cache, lr=3e-4)  # the sweep replaces the LR, so same key
    assert second.cache_hit is True and second.key == first.key
    third, _, _ = _fit(tmp_path, cache, batch_size=16)
    assert third.cache_hit is False and third.key != first.key
    assert CountingFinder.sweeps == 2 and len(load_cache(cache)) == 2


class SettingsDataModule(TinyDataModule):
    """The tiny data with settings of the kind real datamodules have: one shapes batches, one does not."""

    def __init__(self, max_length: int = 128, num_workers: int = 0) -> None:
        super().__init__(n_train=256)
        self.save_hyperparameters()


def test_key_follows_the_effective_batch_clipping_and_data_settings(tmp_path: Path) -> None:
    # Once, a run with 8x the effective batch, clipping or another truncation reused another's sweep.
    cache = tmp_path / "lr_cache.json"

    def fit(dm: TinyDataModule, **trainer_kwargs) -> CachedLRFinder:
        finder = CountingFinder(num_training_steps=SWEEP, cache_path=cache)
        make_trainer(tmp_path, [finder], max_epochs=1, **trainer_kwargs).fit(TinyClassifier(), dm)
        return finder

    first = fit(SettingsDataModule())
    assert first.cache_hit is False and load_cache(cache)[first.key]["key_parts"]["data_settings"]["max_length"] == 128
    assert fit(SettingsDataModule(num_workers=1)).cache_hit is True  # how batches are loaded is not what they hold
    misses = [fit(SettingsDataModule(max_length=64)), fit(SettingsDataModule(), accumulate_grad_batches=2),
              fit(SettingsDataModule(), gradient_clip_val=1.0)]
    assert [f.cache_hit for f in misses] == [False, False, False]
    assert len({first.key, *(f.key for f in misses)}) == 4 and CountingFinder.sweeps == 4


def test_stale_entry_is_recomputed_with_warning(tmp_path: Path) -> None:
    cache = tmp_path / "lr_cache.json"
    first, _, _ = _fit(tmp_path, cache)
    data = json.loads(cache.read_text())
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=200)).isoformat()
    data["entries"][first.key]["created"] = old
    cache.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="stale"):
        second, _, _ = _fit(tmp_path, cache)
    assert second.cache_hit is False and CountingFinder.sweeps == 2
    assert load_cache(cache)[first.key]["created"] != old  # refreshed


def test_entry_within_max_age_is_used(tmp_path: Path) -> None:
    cache = tmp_path / "lr_cache.json"
    first, _, _ = _fit(tmp_path, cache)
    data = json.loads(cache.read_text())
    data["entries"][first.key]["created"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=100)).isoformat()
    cache.write_text(json.dumps(data))
    second, _, _ = _fit(tmp_path, cache)
    assert second.cache_hit is True and CountingFinder.sweeps == 1


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"entries": {"%KEY%": {"lr": "fast"}}}'])
def test_corrupt_cache_is_recomputed_with_warning(tmp_path: Path, content: str) -> None:
    cache = tmp_path / "lr_cache.json"
    probe, _, _ = _fit(tmp_path / "probe", tmp_path / "probe.json")  # learn the key
    cache.write_text(content.replace("%KEY%", probe.key or ""))
    with pytest.warns(UserWarning, match="lr_cache.json|usable 'lr'"):
        finder, model, _ = _fit(tmp_path, cache)
    assert finder.cache_hit is False and CountingFinder.sweeps == 2
    assert load_cache(cache)[finder.key]["lr"] == model.lr  # file repaired with the new entry


def test_failed_suggestion_is_not_cached(tmp_path: Path) -> None:
    cache = tmp_path / "lr_cache.json"
    # Lightning needs > 11 sweep points to suggest anything.
    with pytest.warns(UserWarning, match="no LR suggestion"):
        finder, model, trainer = _fit(tmp_path, cache, sweep=5)
    assert finder.suggested_lr is None and not cache.exists()
    assert model.lr == DEFAULT_LR
    assert _group_lrs(trainer) == pytest.approx({"body": DEFAULT_LR * BODY_MULT, "head": DEFAULT_LR * HEAD_MULT})


_WRITER = """
import sys, time
from pathlib import Path
from streamguard_pl.callbacks.lr_cache import store_entry
cache, tag, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
(go.parent / f"ready-{tag}").touch()
while not go.exists():
    time.sleep(0.005)
for i in range(40):
    store_entry(cache, f"{tag}{i}", {"lr": 1e-3, "created": "2024-01-01T00:00:00+00:00", "key_parts": {}})
"""


def test_concurrent_writers_keep_every_entry(tmp_path: Path) -> None:
    """Without the flock, about half of the 80 entries are lost (measured: 43 kept)."""
    cache, go = tmp_path / "shared" / "lr_cache.json", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(cache), tag, str(go)]) for tag in ("a", "b")]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{t}").exists() for t in "ab") and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both are importing no more: their read-modify-write loops overlap
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    keys = set(load_cache(cache))
    assert keys == {f"{t}{i}" for t in "ab" for i in range(40)}
