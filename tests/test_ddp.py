"""DDP on CPU (2 processes) for each model: training works and every file is written once, by rank zero."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gnn", "transformer", "fusion"])
def test_ddp_cpu_two_processes_write_each_file_once(model: str, tmp_path: Path) -> None:
    run_dir = tmp_path / model
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STREAMGUARD_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [
        sys.executable, "-m", "streamguard_pl.cli", "fit", "--config", str(REPO / "configs" / "demo" / f"{model}.yaml"),
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1",
        "--trainer.default_root_dir", str(run_dir), "--trainer.logger.init_args.save_dir", str(run_dir),
        "--data.init_args.synthetic_size", "240", "--data.init_args.batch_size", "8",
        "--model.init_args.tune_threshold", "true",  # the cut is chosen from all ranks' val scores
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    meta = json.loads((run_dir / "training_metadata.json").read_text())
    assert meta["status"] == "completed"
    assert meta["hardware"]["num_devices"] == 2 or meta["hardware"].get("devices") == 2 or "2" in json.dumps(meta["hardware"])
    assert json.loads((run_dir / "collapse_report.json").read_text())["collapsed"] is False
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    cut = float(ckpt["state_dict"]["decision_threshold"])
    assert 0.0 <= cut <= 1.0 and cut != 0.5 and ckpt["hyper_parameters"]["tune_threshold"] is True
    events = list(run_dir.rglob("events.out.tfevents.*"))
    assert len(events) == 1, events  # one TensorBoard writer: rank zero
    # rank zero draws the PR curve over both ranks' val shards (once it drew its own half only)
    accumulator = EventAccumulator(str(events[0]), size_guidance={"tensors": 0})
    accumulator.Reload()
    counts = tensor_util.make_ndarray(accumulator.Tensors("val/pr_curve")[-1].tensor_proto)
    seen, n_val = int(counts[0, 0] + counts[1, 0]), meta["data"]["split_sizes"]["val"]  # TP + FP at cut 0
    assert seen in (n_val, 2 * math.ceil(n_val / 2)), (seen, n_val)  # the sampler may repeat one to even the shards
    # The epoch train loss is both ranks' mean, not rank zero's own (its logged steps: all of them)
    own = [e.value for e in accumulator.Scalars("train/loss_step")]
    (epoch_loss,) = [e.value for e in accumulator.Scalars("train/loss_epoch")]
    assert len(own) == 3 and all(math.isfinite(v) for v in own + [epoch_loss])
    assert abs(epoch_loss - sum(own) / len(own)) > 1e-4, (epoch_loss, own)
    # Each rank-zero artefact exists exactly once anywhere under the run (no per-rank copies).
    for name in ("training_metadata.json", "collapse_report.json", "gradient_stats.json"):
        assert len(list(tmp_path.rglob(name))) == 1, name
    assert not list(tmp_path.rglob("*.tmp*")), "a temp file of an atomic write was left behind"
