"""`streamguard study` / `report` on the tiny test configs (tests/conf): run layout, summary statistics,
report and plots, resuming, k-fold, and fusion starting from the same seed's part checkpoints."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import statistics
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from streamguard_pl.cli import main
from streamguard_pl.study import METRICS
from streamguard_pl.study_plots import read_scalars

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CONF = Path(__file__).resolve().parent / "conf"
MODELS = ("transformer", "gnn", "fusion")
SEEDS = (1, 2)
PNG = b"\x89PNG\r\n\x1a\n"


def _run(argv: list[str]) -> str:
    """Run the CLI and return what it printed (module fixtures cannot use capsys)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> tuple[Path, str]:
    """3 models x 2 seeds, one short epoch each, on the 240-function corpus."""
    out = tmp_path_factory.mktemp("study")
    printed = _run(["study", "--models", *MODELS, "--seeds", *map(str, SEEDS), "--config-dir", str(CONF),
                    "--output-dir", str(out), "--data-dir", str(tiny_corpus),
                    "--", "--model.init_args.tune_threshold", "true"])
    return out, printed


def test_every_run_has_its_outputs(study: tuple[Path, str], tiny_corpus: Path) -> None:
    out, printed = study
    assert printed.count("[study] run ") == len(MODELS) * len(SEEDS)
    cuts = []
    for model in MODELS:
        for seed in SEEDS:
            run = out / model / f"seed_{seed}"
            assert (run / "checkpoints" / "best.ckpt").is_file(), run
            assert not (run / ".study_running.json").exists()  # only while a process trains it
            assert list(run.glob("events.out.tfevents.*")), run
            meta = _json(run / "training_metadata.json")
            assert meta["status"] == "completed" and meta["seed"] == seed
            assert meta["data"]["source"] == str(tiny_corpus)
            result = _json(run / "run_result.json")
            assert (result["model"], result["seed"], result["fold"], result["status"]) == (model, seed, None, "completed")
            assert result["best_checkpoint"] == str(run / "checkpoints" / "best.ckpt")
            assert result["monitor"] == "val/f1" and 0.0 <= result["best_val_score"] <= 1.0
            best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
            assert result["decision_threshold"] == pytest.approx(float(best["state_dict"]["decision_threshold"]))
            cuts.append(result["decision_threshold"])
            assert set(METRICS) <= set(result["test"]) and all(0.0 <= result["test"][m] <= 1.0 for m in METRICS)
            assert read_scalars(run)["val/f1"], run  # curves readable for the plots
    assert any(c != 0.5 for c in cuts)  # tuned on val: run_result reports the cut, not the default


def test_summary_statistics(study: tuple[Path, str]) -> None:
    out, _ = study
    summary = _json(out / "production_summary.json")
    assert list(summary["models"]) == list(MODELS) and summary["metrics"] == list(METRICS)
    for model in MODELS:
        entry = summary["models"][model]
        results = [_json(out / model / f"seed_{s}" / "run_result.json")["test"] for s in SEEDS]
        for metric in METRICS:
            values = [r[metric] for r in results]
            assert entry[metric]["mean"] == pytest.approx(statistics.fmean(values)), (model, metric)
            assert entry[metric]["std"] == pytest.approx(statistics.stdev(values)), (model, metric)
        assert entry["seeds"] == list(SEEDS) and entry["n_runs"] == len(SEEDS)
        best = max(range(len(SEEDS)), key=lambda i: results[i]["f1"])
        assert entry["best_seed"] == SEEDS[best] and entry["best_f1"] == pytest.approx(results[best]["f1"])
    means = {m: summary["models"][m]["f1"]["mean"] for m in MODELS}
    assert means[summary["best_model"]] == max(means.values())


def test_report_and_plots(study: tuple[Path, str]) -> None:
    out, printed = study
    report = (out / "production_report.md").read_text()
    assert f"[study] report: {out / 'production_report.md'}" in printed
    summary = _json(out / "production_summary.json")
    for model in MODELS:
        f1 = summary["models"][model]["f1"]
        assert f"| {model} | {len(SEEDS)} | {f1['mean']:.4f} ± {f1['std']:.4f} |" in report
    for png in ("metrics_comparison.png", "training_curves.png"):
        assert (out / png).read_bytes()[:8] == PNG
        assert f"]({png})" in report
    # `streamguard report` rebuilds the same summary from the run folders alone
    (out / "production_summary.json").unlink()
    _run(["report", "--output-dir", str(out)])
    assert _json(out / "production_summary.json") == summary


def test_fusion_starts_from_same_seed_parts(study: tuple[Path, str]) -> None:
    out, _ = study
    for seed in SEEDS:
        ckpt = torch.load(out / "fusion" / f"seed_{seed}" / "checkpoints" / "best.ckpt", map_location="cpu",
                          weights_only=False)
        hp = ckpt["hyper_parameters"]
        assert hp["transformer_ckpt"] == str(out / "transformer" / f"seed_{seed}" / "checkpoints" / "best.ckpt")
        assert hp["gnn_ckpt"] == str(out / "gnn" / f"seed_{seed}" / "checkpoints" / "best.ckpt")
        # the encoders are the parts' (sizes from tests/conf/gnn.yaml and transformer.yaml), not the fresh
        # ones tests/conf/fusion.yaml would build (hidden 12 / 24)
        assert hp["gnn"]["hidden_dim"] == 16 and hp["transformer"]["config"]["hidden_size"] == 32
        assert ckpt["state_dict"]["graph.encoder.type_embedding.weight"].shape[1] == 16
        # the fusion run's BPE tokenizer (trained on the same train split) gives the loaded encoder its own ids
        part_tok = out / "transformer" / f"seed_{seed}" / "tokenizer" / "tokenizer.json"
        assert (out / "fusion" / f"seed_{seed}" / "tokenizer" / "tokenizer.json").read_bytes() == part_tok.read_bytes()


def test_rerun_skips_completed_runs_made_the_same_way_only(study: tuple[Path, str], tiny_corpus: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = study
    results = sorted(out.glob("*/seed_*/run_result.json"))
    before = {p: p.stat().st_mtime_ns for p in results}
    same = ["study", "--models", *MODELS, "--seeds", *map(str, SEEDS), "--config-dir", str(CONF),
            "--output-dir", str(out), "--data-dir", str(tiny_corpus)]
    printed = _run([*same, "--", "--model.init_args.tune_threshold", "true"])
    assert printed.count("[study] skip ") == len(MODELS) * len(SEEDS) and "[study] run " not in printed
    # the same config folder spelt another way is the same study
    respelt = [a if a != str(CONF) else f"{CONF}/../{CONF.name}" for a in same]
    printed = _run([*respelt, "--", "--model.init_args.tune_threshold", "true"])
    assert printed.count("[study] skip ") == len(MODELS) * len(SEEDS) and "[study] run " not in printed
    assert {p: p.stat().st_mtime_ns for p in results} == before
    # without the override, the runs there are not what this study would make: no silent reuse
    assert main(same) == 2
    err = capsys.readouterr().err
    assert (f"streamguard study: error: {out / 'transformer' / 'seed_1'} holds a completed run made with other "
            "settings (no longer --model.init_args.tune_threshold true)") in err
    assert {p: p.stat().st_mtime_ns for p in results} == before


def test_folds(tmp_path: Path, tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["study", "--models", "gnn", "--seeds", "1", "--folds", "2", "--config-dir", str(CONF),
            "--output-dir", str(tmp_path), "--data-dir", str(tiny_corpus)]
    monkeypatch.setattr("sys.argv", ["streamguard", *argv])  # as from the console
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        printed = _run(argv)
    assert printed.count("[study] run ") == 2
    # the study's own arguments are not the run's: LightningCLI warned that it got both, on every run
    assert not [w for w in caught if "args parameter" in str(w.message)]
    metas = [_json(tmp_path / "gnn" / "seed_1" / f"fold_{k}" / "training_metadata.json") for k in (0, 1)]
    # each fold validates on a different half of train+valid (192 + 24 records)
    assert sum(m["data"]["split_sizes"]["val"] for m in metas) == 216
    assert metas[0]["data"]["fingerprint"] != metas[1]["data"]["fingerprint"]
    for k in (0, 1):
        result = _json(tmp_path / "gnn" / "seed_1" / f"fold_{k}" / "run_result.json")
        assert result["fold"] == k and result["status"] == "completed"
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == PNG  # curves of fold runs too
    entry = _json(tmp_path / "production_summary.json")["models"]["gnn"]
    assert entry["n_runs"] == 2 and sorted(r["fold"] for r in entry["runs"]) == [0, 1]
    # the best run is one fold of seed 1: the summary and the report name which
    best = max(entry["runs"], key=lambda r: r["f1"])
    assert (entry["best_seed"], entry["best_fold"]) == (1, best["fold"])
    report = (tmp_path / "production_report.md").read_text()
    assert f"| 1 fold {best['fold']} ({best['f1']:.4f}) |" in report


def test_a_fusion_run_without_its_part_runs_says_which_setting_applies(tmp_path: Path) -> None:
    from streamguard_pl.study import RunSpec, _cli_args

    part = _completed_part(tmp_path, "transformer", 7)
    unfinished = tmp_path / "gnn" / "seed_7" / "checkpoints" / "best.ckpt"  # an attempt without run_result.json
    unfinished.parent.mkdir(parents=True)
    unfinished.write_bytes(b"")
    spec = RunSpec("fusion", 7, None, tmp_path / "fusion.yaml", tmp_path / "fusion" / "seed_7")
    with pytest.warns(UserWarning, match=r"fusion seed_7: no completed gnn run of this study in .*gnn/seed_7; "
                                         r"the fusion config's model.gnn_ckpt / model.gnn applies") as record:
        args = _cli_args(spec, None, None, [])
    assert len(record) == 1  # the transformer run is there: no warning for it
    assert args[args.index("--model.init_args.transformer_ckpt") + 1] == str(part)
    assert "--model.init_args.gnn_ckpt" not in args


def _completed_part(root: Path, part: str, seed: int) -> Path:
    from streamguard_pl.study import RUN_RESULT

    ckpt = root / part / f"seed_{seed}" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    # named relative to another working directory: the run folder finds it by name
    (ckpt.parents[1] / RUN_RESULT).write_text(json.dumps({"status": "completed", "best_checkpoint": "elsewhere/best.ckpt"}))
    return ckpt


def test_a_fusion_run_made_without_its_parts_is_not_reused_once_they_exist(tmp_path: Path) -> None:
    from streamguard_pl.errors import OptionError
    from streamguard_pl.study import RUN_RESULT, RunSpec, _cli_args, _identity, check_reusable

    config = tmp_path / "fusion.yaml"
    config.write_text("model: {}\n")
    spec = RunSpec("fusion", 7, None, config, tmp_path / "out" / "fusion" / "seed_7")
    spec.run_dir.mkdir(parents=True)
    with pytest.warns(UserWarning, match="no completed transformer run of this study"):
        made = _identity(spec, _cli_args(spec, None, None, []))
    (spec.run_dir / RUN_RESULT).write_text(json.dumps({"status": "completed", **made}))
    check_reusable(spec, None, None, [])  # nothing changed: reusable
    for part in ("transformer", "gnn"):  # the study's own parts appear later
        _completed_part(tmp_path / "out", part, 7)
    with pytest.raises(OptionError, match=r"now also --model.init_args.transformer_ckpt "
                                          r"transformer/seed_7/checkpoints/best\.ckpt"):
        check_reusable(spec, None, None, [])


def test_a_redone_part_run_starts_clean_and_its_fusion_run_is_redone(study: tuple[Path, str], tiny_corpus: Path,
                                                                     tmp_path: Path) -> None:
    # Once, the redo saved its best as best-v1.ckpt beside the dead attempt's best.ckpt, and fusion
    # (and `streamguard test ... best.ckpt`) took the dead one; the completed fusion run was reused.
    out = tmp_path / "out"
    shutil.copytree(study[0], out)
    gnn = out / "gnn" / "seed_1"
    (gnn / "run_result.json").unlink()  # what the error message for a changed run advises
    printed = _run(["study", "--models", "gnn", "fusion", "--seeds", "1", "--config-dir", str(CONF),
                    "--output-dir", str(out), "--data-dir", str(tiny_corpus),
                    "--", "--model.init_args.tune_threshold", "true"])
    aside = out / "gnn" / "previous_attempts" / "seed_1"
    assert f"[study] gnn seed=1: an earlier attempt's files moved to {aside}" in printed
    assert "[study] redo fusion seed=1: its gnn run was retrained since" in printed
    assert sorted(p.name for p in (gnn / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    events = {p.name for p in gnn.glob("events.out.tfevents.*")}
    assert events and not events & {p.name for p in aside.glob("events.out.tfevents.*")}  # one run's curves only
    assert (aside / "checkpoints" / "best.ckpt").is_file()
    assert _json(gnn / "run_result.json")["best_checkpoint"] == str(gnn / "checkpoints" / "best.ckpt")
    fused = torch.load(out / "fusion" / "seed_1" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert fused["hyper_parameters"]["gnn_ckpt"] == str(gnn / "checkpoints" / "best.ckpt")
    # the seed is the same, so are the weights: what tells a redone fusion run is that it ran after its part
    assert (out / "fusion" / "seed_1" / "run_result.json").stat().st_mtime_ns > (gnn / "run_result.json").stat().st_mtime_ns
    assert (out / "fusion" / "previous_attempts" / "seed_1" / "run_result.json").is_file()
    # seed 2 was not touched: its fusion run is reused, and the summary counts no set-aside run
    assert "[study] skip fusion seed=2" not in printed  # not asked for this time
    assert _json(out / "production_summary.json")["models"]["gnn"]["n_runs"] == len(SEEDS)


def test_a_run_whose_graphs_another_builder_made_is_redone(study: tuple[Path, str], tiny_corpus: Path,
                                                            tmp_path: Path) -> None:
    # The run identity is the command line and config text: after a graph builder update, `make demo`
    # once reprinted the old builder's figures in a second.
    from streamguard_pl.data.graphs import builder_identity

    made = {m: _json(study[0] / m / "seed_1" / "run_result.json")["code_inputs"] for m in MODELS}
    assert made == {"transformer": {}, "gnn": {"graph builder": builder_identity()},
                    "fusion": {"graph builder": builder_identity()}}
    out = tmp_path / "out"
    shutil.copytree(study[0], out)
    result = out / "gnn" / "seed_1" / "run_result.json"
    result.write_text(json.dumps({**_json(result), "code_inputs": {"graph builder": "1-0123456789ab"}}))
    printed = _run(["study", "--models", *MODELS, "--seeds", "1", "--config-dir", str(CONF),
                    "--output-dir", str(out), "--data-dir", str(tiny_corpus),
                    "--", "--model.init_args.tune_threshold", "true"])
    assert "[study] skip transformer seed=1: already completed" in printed
    assert f"[study] redo gnn seed=1: its graph builder was 1-0123456789ab, now {builder_identity()}" in printed
    assert "[study] redo fusion seed=1: its gnn run was retrained since" in printed
    assert _json(result)["code_inputs"] == {"graph builder": builder_identity()}


def test_a_run_on_the_embedded_corpus_records_its_generator() -> None:
    from streamguard_pl.data import GraphDataModule, TokenDataModule
    from streamguard_pl.data.datamodules import _synthetic_version
    from streamguard_pl.data.graphs import builder_identity
    from streamguard_pl.study import _code_inputs

    assert _code_inputs(TokenDataModule(data_dir=None)) == {"synthetic corpus generator": _synthetic_version()}
    assert _code_inputs(GraphDataModule(data_dir=None)) == {"graph builder": builder_identity(),
                                                            "synthetic corpus generator": _synthetic_version()}


def test_the_summary_names_runs_made_in_other_ways(tmp_path: Path) -> None:
    from streamguard_pl.study import RUN_RESULT, summarise

    def put(seed: int, *extra: str, sha: str = "a" * 64) -> None:
        run = tmp_path / "gnn" / f"seed_{seed}"
        run.mkdir(parents=True)
        (run / RUN_RESULT).write_text(json.dumps({
            "model": "gnn", "seed": seed, "fold": None, "status": "completed", "test": {"f1": 0.5},
            "settings": ["--config", "gnn.yaml", "--seed_everything", str(seed), *extra], "config_sha256": sha}))

    put(42)
    put(2025)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summarise(tmp_path)  # seeds of one recipe, run side by side: no word
    put(7, "--model.init_args.num_layers", "4")
    put(1, sha="b" * 64)
    with pytest.warns(UserWarning, match=r"the gnn summary averages runs made in 3 different ways \(seed 1: config sha256 "
                                         r"bbbbbbbbbbbb; seed 2025, seed 42: config sha256 aaaaaaaaaaaa; seed 7: "
                                         r"--model.init_args.num_layers 4 config sha256 aaaaaaaaaaaa\)"):
        summary = summarise(tmp_path)
    assert summary["models"]["gnn"]["n_runs"] == 4


def test_a_run_another_study_process_is_training_is_not_moved_aside(tmp_path: Path) -> None:
    # Two processes started on one seed: the second must not move the first's live run folder away.
    import socket
    import subprocess
    import sys

    from streamguard_pl.errors import OptionError
    from streamguard_pl.study import RUNNING_MARK, RunSpec, set_aside_earlier_attempt

    spec = RunSpec("gnn", 3, None, tmp_path / "gnn.yaml", tmp_path / "out" / "gnn" / "seed_3")
    spec.run_dir.mkdir(parents=True)
    rival = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (spec.run_dir / RUNNING_MARK).write_text(json.dumps({"pid": rival.pid, "host": socket.gethostname()}))
        with pytest.raises(OptionError, match=rf"seed_3 is being trained now by another study process \(pid {rival.pid} "):
            set_aside_earlier_attempt(spec)
        assert (spec.run_dir / RUNNING_MARK).is_file()
    finally:
        rival.kill()
        rival.wait()
    aside = set_aside_earlier_attempt(spec)  # the process is gone: a killed run, moved aside
    assert aside == tmp_path / "out" / "gnn" / "previous_attempts" / "seed_3" and not spec.run_dir.exists()


#: A learning rate this high sends the tiny GNN on the config's embedded corpus to one class in validation:
#: CollapseDetection stops the run after three such epochs (seed 2), while best.ckpt is from before.
COLLAPSING = ["--trainer.max_epochs", "5", "--trainer.limit_train_batches", "4", "--model.init_args.lr", "1e4"]


@pytest.fixture(scope="module")
def collapsed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("collapsed")
    _run(["study", "--models", "gnn", "--seeds", "2", "--config-dir", str(CONF), "--output-dir", str(out),
          "--", *COLLAPSING])
    return out


def test_a_collapsed_run_is_reported_collapsed(collapsed_run: Path) -> None:
    # Once, testing best.ckpt restored CollapseDetection's pre-collapse state and the flag read False.
    run = collapsed_run / "gnn" / "seed_2"
    assert _json(run / "collapse_report.json")["collapsed"] is True
    result = _json(run / "run_result.json")
    assert result["collapsed"] is True
    entry = _json(collapsed_run / "production_summary.json")["models"]["gnn"]
    assert entry["collapsed_runs"] == 1 and entry["collapsed"] == ["seed 2"]
    assert entry["best_seed"] is None and entry["best_checkpoint"] is None  # the only run collapsed: no best seed
    assert entry["runs"][0]["collapsed"] is True
    report = (collapsed_run / "production_report.md").read_text()
    assert "| best seed (F1) | collapsed |" in report and report.count(" | n/a | seed 2 |") == 1


def test_a_study_run_has_one_hparams_session_with_the_best_epochs_val_and_the_test_metrics(collapsed_run: Path) -> None:
    # Once the fit and the test each wrote a session (val only, then test only); TensorBoard shows a
    # run's first, so the test columns never appeared, and hp/val/* were the last epoch's.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = collapsed_run / "gnn" / "seed_2"
    result = _json(run / "run_result.json")
    experiments = [plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content).experiment
                   for f in sorted(run.glob("events.out.tfevents.*")) for event in EventFileLoader(str(f)).Load()
                   for v in event.summary.value if v.tag == "_hparams_/experiment"]
    assert len(experiments) == 1
    assert {m.name.tag for m in experiments[0].metric_infos} == {f"hp/{s}/{m}" for s in ("val", "test")
                                                                 for m in ("f1", "accuracy", "auroc")}
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.value for e in acc.Scalars("hp/val/f1")] == [pytest.approx(result["best_val_score"])]
    assert [e.value for e in acc.Scalars("hp/test/f1")] == [pytest.approx(result["test"]["f1"])]


@pytest.mark.parametrize("override", [["--seed_everything", "5"], ["--seed_everything=5"],
                                      ["--trainer.default_root_dir", "x"], ["--trainer.logger.init_args.save_dir=x"],
                                      ["--trainer.logger.save_dir", "x"], ["--data.init_args.fold", "1"],
                                      ["--data.init_args.num_folds=3"], ["--data.fold", "1"]])
def test_overrides_of_what_the_study_sets_per_run_are_refused(override: list[str], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # `-- --seed_everything 5` once made every "seed" the same run: ± 0.0000 over 2 seeds.
    monkeypatch.chdir(tmp_path)  # an accepted relative folder ("x") lands here
    out = tmp_path / "out"
    assert main(["study", "--models", "gnn", "--seeds", "1", "2", "--config-dir", str(CONF),
                 "--output-dir", str(out), "--", "--model.init_args.lr", "0.1", *override]) == 2
    err = capsys.readouterr().err
    name = override[0].split("=")[0]
    assert err.startswith(f"streamguard study: error: {name} cannot be overridden after --: the study sets it "
                          "for each run (use --") and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("extra", ["seed_everything: 5\n", "trainer:\n  default_root_dir: elsewhere\n"])
def test_a_whole_config_after_the_separator_cannot_set_what_the_study_sets(extra: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The option names are refused above; a second --config set them anyway, and both "seeds" were one run.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "extra.yaml").write_text(extra)
    out = tmp_path / "out"
    assert main(["study", "--models", "gnn", "--seeds", "1", "2", "--config-dir", str(CONF),
                 "--output-dir", str(out), "--", "--config", "extra.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamguard study: error: the overrides after -- change what the study sets for each "
                          "run (") and err.count("\n") == 1
    assert ("--seeds: 5 where the study set 1" if "seed" in extra else "--output-dir: elsewhere where") in err
    assert not list(out.glob("gnn/seed_*/*"))


def test_a_config_dir_without_a_models_config_is_a_one_line_error(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    confs = tmp_path / "conf"
    confs.mkdir()
    shutil.copy(CONF / "gnn.yaml", confs / "gnn.yaml")
    out = tmp_path / "out"
    assert main(["study", "--models", "gnn", "transformer", "--config-dir", str(confs), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"streamguard study: error: --config-dir {confs} has no config for model 'transformer': "
                   f"{confs / 'transformer.yaml'} not found\n")
    assert not out.exists()


def test_report_on_a_folder_without_runs_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "typo_dir"
    assert main(["report", "--output-dir", str(typo)]) == 2
    assert capsys.readouterr().err == (f"streamguard report: error: no run_result.json found under {typo} "
                                       "(in <model>/seed_<n>/): give the --output-dir of a study\n")
    assert not typo.exists()


def test_summary_and_report_count_what_each_metric_is_over(tmp_path: Path) -> None:
    from streamguard_pl.study import RUN_RESULT, summarise, write_report

    def put(model: str, seed: int, collapsed: bool = False, **test: float | None) -> None:
        run = tmp_path / model / f"seed_{seed}"
        run.mkdir(parents=True)
        (run / RUN_RESULT).write_text(json.dumps({"model": model, "seed": seed, "fold": None, "status": "completed",
                                                  "collapsed": collapsed, "test": test}))

    full = {"precision": 0.5, "recall": 0.5}
    put("gnn", 1, f1=0.5, accuracy=0.6, auroc=0.6, **full)
    put("gnn", 2, collapsed=True, f1=0.9, accuracy=0.95, auroc=0.7, **full)  # best F1, but collapsed
    put("gnn", 3, f1=None, accuracy=float("nan"), **full)  # f1 null once crashed summarise; NaN, no auroc
    put("transformer", 1, f1=None, accuracy=0.5, auroc=0.5, **full)
    put("fusion", 1, f1=0.0, accuracy=0.5, auroc=0.5, **full)
    summary = summarise(tmp_path)
    gnn = summary["models"]["gnn"]
    assert gnn["f1"] == {"mean": pytest.approx(0.7), "std": pytest.approx(statistics.stdev([0.5, 0.9])), "n": 2,
                         "missing": ["seed 3"]}
    assert gnn["accuracy"]["n"] == 2 and gnn["auroc"]["missing"] == ["seed 3"] and gnn["precision"]["n"] == 3
    assert (gnn["best_seed"], gnn["best_f1"], gnn["collapsed"]) == (1, 0.5, ["seed 2"])
    assert summary["models"]["fusion"]["f1"] == {"mean": 0.0, "std": None, "n": 1, "missing": []}  # one run: no std
    assert summary["best_model"] == "gnn"
    report = (write_report(tmp_path, summary)).read_text()
    assert "| gnn | 3 | 0.7000 ± 0.2828 (n=2) | 0.7750 ± 0.2475 (n=2) | 0.5000 ± 0.0000 |" in report
    assert "| 1 (0.5000) | seed 2 |" in report
    assert "- gnn seed 3: no f1, accuracy, auroc" in report
    assert "| transformer | 1 | n/a | 0.5000 ± – |" in report and "| n/a | none |" in report
    assert "| fusion | 1 | 0.0000 ± – |" in report
    # a mean F1 of 0.0 is a result: it ranks above a model without one (`or -inf` once tied them)
    assert summarise(tmp_path, models=["transformer", "fusion"])["best_model"] == "fusion"


def test_training_curves_mark_each_point(study: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # One-epoch runs have one point per curve; a line without markers drew nothing of it.
    from matplotlib.figure import Figure

    from streamguard_pl.study_plots import plot_training_curves

    saved: list[Figure] = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), save(fig, *a, **k))[1])
    assert plot_training_curves(study[0], list(MODELS)) == study[0] / "training_curves.png"
    (fig,) = saved
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    assert len(lines) >= len(MODELS) * len(SEEDS) and all(line.get_marker() == "o" for line in lines)
    f1_lines = fig.axes[0].get_lines()
    assert fig.axes[0].get_title() == "val/f1" and len(f1_lines) == len(MODELS) * len(SEEDS)
    assert all(len(line.get_xydata()) == 1 for line in f1_lines)  # one epoch, one point each


def test_seeds_and_models_given_twice_all_count_once_each() -> None:
    from streamguard_pl.study import DEFAULT_SEEDS, MODELS as ALL, _given, _parser

    args = _parser("streamguard study").parse_args(["--seeds", "1", "2", "--seeds", "7", "2", "--models", "gnn",
                                                    "--models", "fusion", "gnn"])
    assert _given(args.seeds, DEFAULT_SEEDS) == [1, 2, 7]  # argparse kept [7, 2] only
    assert _given(args.models, ALL) == ["gnn", "fusion"]
    bare = _parser("streamguard study").parse_args([])
    assert (_given(bare.seeds, DEFAULT_SEEDS), _given(bare.models, ALL)) == ([42, 2025, 7], list(ALL))
