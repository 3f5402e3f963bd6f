"""The Devign configs run as they are on a handful of real Devign records (skipped without the data)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamguard_pl.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", ["gnn", "transformer", "fusion"])
def test_devign_cpu_config_fast_dev_run(model: str, devign_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / model
    args = [
        "fit", "--config", str(REPO / "configs" / "devign" / f"{model}.yaml"),
        "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir", str(run),
        "--data.init_args.data_dir", str(devign_dir), "--data.init_args.max_records", "24",
        "--data.init_args.batch_size", "4",
    ]
    if model == "transformer":
        args += ["--data.init_args.bpe_vocab_size", "600"]
    if model == "fusion":
        args += ["--model.init_args.transformer_ckpt", "null", "--model.init_args.gnn_ckpt", "null",
                 "--data.init_args.bpe_vocab_size", "600",
                 "--model.init_args.transformer", json.dumps({"config": {
                     "model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 514}}),
                 "--model.init_args.gnn", json.dumps({"hidden_dim": 16, "num_layers": 2, "token_buckets": 65536,
                                                          "min_token_count": 3})]
    assert main(args) == 0
    meta = json.loads((run / "training_metadata.json").read_text())
    assert meta["status"] == "completed"
    sizes = meta["data"]["split_sizes"]
    # Model selection on a commit-grouped slice of train; the official valid split is the test split.
    assert sizes["train"] == 24 and sizes["val"] > 0 and sizes["test"] == 24
    assert str(devign_dir) in meta["data"]["source"]
