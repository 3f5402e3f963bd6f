"""The `streamguard` entry point: help and errors, `data synth`, `fit` recording precision auto, and
`validate` / `test` on a checkpoint from that fit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from streamguard_pl.cli import build_cli, main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GNN_CONF = Path(__file__).resolve().parent / "conf" / "gnn.yaml"


def _out(path: Path) -> list[str]:
    return ["--trainer.default_root_dir", str(path), "--trainer.logger.init_args.save_dir", str(path)]


@pytest.fixture(scope="module")
def gnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny GNN fit through `streamguard fit` (2 train batches, 1 epoch)."""
    run = tmp_path_factory.mktemp("gnn_run")
    assert main(["fit", "--config", str(GNN_CONF), *_out(run)]) == 0
    return run


def test_help_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "predict", "study", "report", "data synth", "demo"):
        assert command in out


def test_unknown_command_returns_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["data", "shuffle"]) == 2  # `data` knows only `synth`


def test_bad_input_is_one_line_naming_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad records, a missing data folder or checkpoint: exit 2 and a message, never a traceback."""
    data = tmp_path / "data"
    data.mkdir()
    good = json.dumps({"func": "int f(void) { return 0; }", "target": 0})
    (data / "train.jsonl").write_text(good + "\n" + json.dumps({"func": "int g(void) { return 1; }", "target": 2}) + "\n")
    assert main(["fit", "--config", str(GNN_CONF), *_out(tmp_path / "run"), "--data.init_args.data_dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"streamguard fit: error: {data / 'train.jsonl'}:2: field 'target': must be 0 or 1" in err
    assert "--data.init_args.on_error skip" in err and "Traceback" not in err
    assert main(["fit", "--config", str(GNN_CONF), *_out(tmp_path / "run"),
                 "--data.init_args.data_dir", str(tmp_path / "absent")]) == 2
    assert f"streamguard fit: error: data folder not found: {tmp_path / 'absent'}" in capsys.readouterr().err
    assert main(["predict", "--ckpt", str(tmp_path / "none.ckpt"), "--input", str(data)]) == 2
    assert "streamguard predict: error: checkpoint not found:" in capsys.readouterr().err
    # raised inside a model's __init__, where jsonargparse wraps it in an error of its own
    assert main(["fit", "--config", str(GNN_CONF.with_name("fusion.yaml")), *_out(tmp_path / "run"),
                 "--model.init_args.gnn_ckpt", str(tmp_path / "gone.ckpt")]) == 2
    err = capsys.readouterr().err
    assert f"streamguard fit: error: GNNClassifier checkpoint not found: {tmp_path / 'gone.ckpt'}" in err
    assert "Traceback" not in err


def test_data_synth_writes_the_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "--n", "200", "--out", str(tmp_path)]) == 0
    lines = {name: (tmp_path / name).read_text().splitlines() for name in ("train.jsonl", "valid.jsonl", "test.jsonl")}
    assert sum(len(v) for v in lines.values()) == 200
    assert len(lines["train.jsonl"]) > len(lines["valid.jsonl"]) > 0 and len(lines["test.jsonl"]) > 0
    first = json.loads(lines["train.jsonl"][0])
    assert {"id", "func", "target"} <= set(first) and first["target"] in (0, 1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n"] == 200 and summary["splits"]["train"]["count"] == len(lines["train.jsonl"])
    assert "train: " in capsys.readouterr().out


def test_fit_records_precision_auto(gnn_run: Path) -> None:
    meta = json.loads((gnn_run / "training_metadata.json").read_text())
    assert meta["status"] == "completed"
    # the resolved choice lives in the recorded config and is lifted to the top level
    assert meta["config"]["hardware_choices"] == {"precision_requested": "auto", "precision": "32-true"}
    assert meta["hardware_choices"]["precision"] == "32-true"
    assert meta["hardware"]["precision"] == "32-true"
    assert meta["config"]["trainer"]["precision"] == "auto"
    assert meta["global_step"] == 2  # limit_train_batches: 2, one epoch
    assert (gnn_run / "checkpoints" / "best.ckpt").is_file() and (gnn_run / "config.yaml").is_file()


def test_validate_on_checkpoint_reproduces_best_score(gnn_run: Path, tmp_path: Path) -> None:
    best = gnn_run / "checkpoints" / "best.ckpt"
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    best_score = next(v["best_model_score"] for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
    args = ["--config", str(gnn_run / "config.yaml"), "--ckpt_path", str(best), *_out(tmp_path)]
    assert main(["validate", *args]) == 0
    cli = build_cli(["validate", *args], run=True)
    # same weights, same validation batch -> the very score the checkpoint was selected on
    assert float(cli.trainer.callback_metrics["val/f1"]) == pytest.approx(float(best_score), abs=1e-6)


def test_last_ckpt_is_the_newest_epoch_and_a_resume_goes_on_from_it(tmp_path: Path) -> None:
    """Lightning 2.6's save_last rewrites last.ckpt only with a new best, so `--ckpt_path last` went back
    to the best epoch and trained the later ones again; the configs keep the newest epoch in last.ckpt."""
    conf = yaml.safe_load(GNN_CONF.read_text())
    conf["trainer"]["callbacks"][0]["init_args"].update(monitor="epoch", mode="min")  # best.ckpt stays epoch 0
    config = tmp_path / "gnn.yaml"
    config.write_text(yaml.safe_dump(conf))
    run = tmp_path / "run"
    assert main(["fit", "--config", str(config), *_out(run), "--trainer.max_epochs", "3"]) == 0
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert [torch.load(ckpts / n, map_location="cpu", weights_only=False)["epoch"]
            for n in ("best.ckpt", "last.ckpt")] == [0, 2]
    meta = json.loads((run / "training_metadata.json").read_text())
    assert meta["checkpoint"]["last_model_path"] == str(ckpts / "last.ckpt")
    first = set(run.glob("events.out.tfevents.*"))
    assert main(["fit", "--config", str(config), *_out(run), "--trainer.max_epochs", "4", "--ckpt_path", "last"]) == 0
    (resumed,) = set(run.glob("events.out.tfevents.*")) - first
    events = EventAccumulator(str(resumed), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss_step")] == [6, 7]  # only the fourth epoch's 2 batches


def test_test_on_checkpoint_refuses_other_graph_settings(gnn_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    best = gnn_run / "checkpoints" / "best.ckpt"
    recorded = torch.load(best, map_location="cpu", weights_only=True)["hyper_parameters"]["graph_features"]
    assert recorded["edge_types"] == ["ast", "ncs", "cfg", "dfg"] and recorded["reverse_edges"] is False
    # 2 of the 4 edge ids: the num_edge_types check passes, yet the network would run without the flow edges it learnt from
    assert main(["test", "--config", str(gnn_run / "config.yaml"), "--ckpt_path", str(best), *_out(tmp_path),
                 "--data.init_args.edge_types", "[ast, ncs]"]) == 2
    err = capsys.readouterr().err
    assert ("streamguard test: error: model was trained on other features than the datamodule gives (edge_types: "
            "trained ['ast', 'ncs', 'cfg', 'dfg'], data ['ast', 'ncs'])") in err


def test_test_on_checkpoint_uses_its_weights(gnn_run: Path, tmp_path: Path) -> None:
    best = gnn_run / "checkpoints" / "best.ckpt"
    base = ["--config", str(gnn_run / "config.yaml")]
    assert main(["test", *base, "--ckpt_path", str(best), *_out(tmp_path / "a")]) == 0
    trained = build_cli(["test", *base, "--ckpt_path", str(best), *_out(tmp_path / "b")], run=True)
    fresh = build_cli(["test", *base, "--seed_everything", "7", *_out(tmp_path / "c")], run=True)
    trained_loss = float(trained.trainer.callback_metrics["test/loss"])
    assert 0.0 <= float(trained.trainer.callback_metrics["test/f1"]) <= 1.0
    assert trained_loss != pytest.approx(float(fresh.trainer.callback_metrics["test/loss"]), abs=1e-6)
    # and it is deterministic: the checkpoint, not the seed, decides the result
    again = build_cli(["test", *base, "--seed_everything", "7", "--ckpt_path", str(best), *_out(tmp_path / "d")],
                      run=True)
    assert float(again.trainer.callback_metrics["test/loss"]) == pytest.approx(trained_loss, abs=1e-6)


@pytest.mark.parametrize("kind", ["gnn", "transformer"])
def test_testing_a_run_on_other_data_keeps_its_features(kind: str, tmp_path: Path, tiny_corpus: Path) -> None:
    """`test` with the run's config on another data set scores with the run's tokenizer / vocabulary:
    it used to refit them on the other data, over the files in the run folder, and then stop."""
    from streamguard_pl.data.synthetic import write_synthetic_corpus

    run = tmp_path / "run"
    extra = ["--data.init_args.data_dir", str(tiny_corpus)]
    if kind == "gnn":
        extra += ["--data.init_args.min_token_count", "2", "--model.init_args.min_token_count", "2"]
    assert main(["fit", "--config", str(GNN_CONF.with_name(f"{kind}.yaml")), *_out(run), *extra]) == 0
    kept = [run / "config.yaml", run / ("token_vocab.json" if kind == "gnn" else "tokenizer/tokenizer.json")]
    if kind == "gnn":
        kept.append(run / "graph_statistics.json")  # the train and val statistics, not the other data's test split
    before = [f.read_bytes() for f in kept]
    write_synthetic_corpus(tmp_path / "other", n=240, seed=5, difficulty="easy")
    assert main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "best.ckpt"),
                 "--data.init_args.data_dir", str(tmp_path / "other")]) == 0
    assert [f.read_bytes() for f in kept] == before
    # the features come from beside the checkpoint, not from default_root_dir: here another, empty folder
    assert main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "best.ckpt"),
                 "--data.init_args.data_dir", str(tmp_path / "other"), *_out(tmp_path / "elsewhere")]) == 0
    assert [f.read_bytes() for f in kept] == before
    assert not (tmp_path / "elsewhere" / kept[1].relative_to(run)).exists()  # nothing refitted there
    # a checkpoint copied out of its run folder has no features beside it: refitted on the other data,
    # they no longer fit it (an error), and the run's own files, where the config writes, stay as they were
    moved = tmp_path / "moved" / "best.ckpt"
    moved.parent.mkdir()
    shutil.copy(run / "checkpoints" / "best.ckpt", moved)
    assert main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(moved),
                 "--data.init_args.data_dir", str(tmp_path / "other")]) == 2
    assert [f.read_bytes() for f in kept] == before
    # copied with its features, it scores with them
    for feature in kept[1:2]:
        (moved.parent / feature.relative_to(run)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(feature, moved.parent / feature.relative_to(run))
    assert main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(moved),
                 "--data.init_args.data_dir", str(tmp_path / "other")]) == 0
