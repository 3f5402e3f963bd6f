"""Multi-seed (or k-fold) studies: train each model per seed, test its best checkpoint, report.

Each run goes through the same LightningCLI as `streamguard fit`, so a study run and a hand-run
`fit` with the same config are the same experiment. Completed runs are skipped on restart.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import socket
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import InputNotFoundError, OptionError
from .jsonsafe import atomic_write_json, atomic_write_text, read_json
from .locations import repo_root

MODELS = ("transformer", "gnn", "fusion")
METRICS = ("f1", "accuracy", "precision", "recall", "auroc")
RUN_RESULT = "run_result.json"


@dataclass(frozen=True)
class RunSpec:
    model: str
    seed: int
    fold: int | None
    config: Path
    run_dir: Path


def plan_runs(models: Sequence[str], seeds: Sequence[int], config_dir: Path, output_dir: Path,
              folds: int | None = None) -> list[RunSpec]:
    """Fusion always after the two parts of the same seed (it starts from their best checkpoints)."""
    order = sorted(models, key=lambda m: MODELS.index(m) if m in MODELS else -1)
    runs = []
    for seed in seeds:
        for fold in (range(folds) if folds else [None]):
            for model in order:
                cfg = config_dir / f"{model}.yaml"
                if not cfg.is_file():
                    raise InputNotFoundError(f"--config-dir {config_dir} has no config for model {model!r}: {cfg} "
                                             f"not found")
                run_dir = output_dir / model / f"seed_{seed}"
                if fold is not None:
                    run_dir = run_dir / f"fold_{fold}"
                runs.append(RunSpec(model, seed, fold, cfg, run_dir))
    return runs


def run_is_complete(run_dir: Path) -> bool:
    try:
        return read_json(run_dir / RUN_RESULT).get("status") == "completed"
    except (OSError, ValueError):
        return False


def _cli_args(spec: RunSpec, data_dir: str | None, folds: int | None, overrides: Sequence[str]) -> list[str]:
    args = [
        "--config", str(spec.config),
        "--seed_everything", str(spec.seed),
        "--trainer.default_root_dir", str(spec.run_dir),
        "--trainer.logger.init_args.save_dir", str(spec.run_dir),
    ]
    if data_dir is not None:
        args += ["--data.init_args.data_dir", data_dir]
    if folds:
        args += ["--data.init_args.num_folds", str(folds), "--data.init_args.fold", str(spec.fold)]
    if spec.model == "fusion":
        for part, part_dir in _part_run_dirs(spec).items():
            ckpt = _best_checkpoint(part_dir)
            if ckpt is not None:
                args += [f"--model.init_args.{part}_ckpt", str(ckpt)]
            else:  # the fusion config's own setting stands: a fixed checkpoint for every seed, or a fresh part
                warnings.warn(f"fusion {spec.run_dir.name}: no completed {part} run of this study in {part_dir}; the "
                              f"fusion config's model.{part}_ckpt / model.{part} applies (run --models {part} fusion "
                              f"to fuse this study's own {part})", stacklevel=2)
    return [*args, *overrides]


def _study_root(run_dir: Path, fold: int | None) -> Path:
    return run_dir.parents[2 if fold is not None else 1]


def _part_run_dirs(spec: RunSpec) -> dict[str, Path]:
    """The same seed's (and fold's) transformer and GNN run folders of a fusion run's study."""
    root = _study_root(spec.run_dir, spec.fold)
    relative = spec.run_dir.relative_to(root / "fusion")
    return {part: root / part / relative for part in ("transformer", "gnn")}


def _best_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a completed run tested, found in its folder (run_result.json may name it relative
    to another working directory); an unfinished run's checkpoints are not its result."""
    if not run_is_complete(run_dir):
        return None
    best = read_json(run_dir / RUN_RESULT).get("best_checkpoint")
    ckpt = run_dir / "checkpoints" / Path(best).name if best else None
    return ckpt if ckpt is not None and ckpt.is_file() else None


def stale_parts(spec: RunSpec) -> list[str]:
    """Parts retrained after a completed fusion run of theirs was made: that fusion fused the old ones."""
    if spec.model != "fusion":
        return []
    made = (spec.run_dir / RUN_RESULT).stat().st_mtime_ns
    return [part for part, part_dir in _part_run_dirs(spec).items()
            if run_is_complete(part_dir) and (part_dir / RUN_RESULT).stat().st_mtime_ns > made]


def _code_versions() -> dict[str, str]:
    """This code's versions of what makes a run's inputs: the graph builder, the embedded corpus's generator."""
    from .data.datamodules import _synthetic_version
    from .data.graphs import builder_identity

    return {"graph builder": builder_identity(), "synthetic corpus generator": _synthetic_version()}


def _code_inputs(datamodule: Any) -> dict[str, str]:
    """The versions that made this run's inputs: graphs if it has them, the generator if it used it."""
    now = _code_versions()
    uses = {"graph builder": getattr(datamodule, "graph_config", None) is not None,
            "synthetic corpus generator": getattr(getattr(datamodule, "hparams", None), "data_dir", "") is None}
    return {name: version for name, version in now.items() if uses[name]}


def outdated_inputs(spec: RunSpec) -> list[str]:
    """What of a completed run's inputs this code would make otherwise: the run is redone.

    The run identity (command line, config text) does not see a code update that changes the graphs
    or the generated corpus; reused, such a run would report figures the current code does not give.
    """
    saved = read_json(spec.run_dir / RUN_RESULT).get("code_inputs") or {}
    now = _code_versions()
    return [f"its {name} was {old}, now {now[name]}" for name, old in saved.items()
            if name in now and now[name] != old]


def set_aside_earlier_attempt(spec: RunSpec) -> Path | None:
    """Moves what an earlier, unfinished or redone, attempt left in the run folder out of the way.

    Left there, its `best.ckpt` would make Lightning save the new best as `best-v1.ckpt` (and fusion or
    a README command pick the old one), and its event file would mix two runs' curves in TensorBoard.
    """
    if not spec.run_dir.is_dir() or not any(spec.run_dir.iterdir()):
        return None
    owner = _running_owner(spec.run_dir)
    if owner is not None:
        raise OptionError(f"{spec.run_dir} is being trained now by another study process ({owner}): wait for it, "
                          f"or give another --output-dir or seed")
    model_dir = _study_root(spec.run_dir, spec.fold) / spec.model
    aside = model_dir / "previous_attempts" / spec.run_dir.relative_to(model_dir)
    if aside.exists():
        shutil.rmtree(aside)
    aside.parent.mkdir(parents=True, exist_ok=True)
    spec.run_dir.rename(aside)
    return aside


#: Written into a run folder while a study process trains it: a second process on the same seed must
#: not move a live run aside (a killed run leaves the file, but its process is gone).
RUNNING_MARK = ".study_running.json"


def _running_owner(run_dir: Path) -> str | None:
    """'pid N on HOST' of a live study process training run_dir on this machine, else None."""
    try:
        mark = read_json(run_dir / RUNNING_MARK)
        pid, host = int(mark["pid"]), str(mark["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname() or pid == os.getpid():
        return None  # another machine's process cannot be asked; this process is not a rival
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, under another user
    return f"pid {pid} on {host}"


def execute_run(spec: RunSpec, data_dir: str | None = None, folds: int | None = None,
                overrides: Sequence[str] = ()) -> dict[str, Any]:
    """fit, then test the best checkpoint; writes run_result.json (status + test metrics)."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    mark = spec.run_dir / RUNNING_MARK
    atomic_write_json(mark, {"pid": os.getpid(), "host": socket.gethostname()})
    try:
        return _fit_and_test(spec, data_dir, folds, overrides)
    finally:
        mark.unlink(missing_ok=True)


def _fit_and_test(spec: RunSpec, data_dir: str | None, folds: int | None, overrides: Sequence[str]) -> dict[str, Any]:
    from .cli import build_cli

    started = time.time()
    args = _cli_args(spec, data_dir, folds, overrides)
    argv, sys.argv = sys.argv, sys.argv[:1]  # the study's own arguments are not the run's: LightningCLI
    try:                                      # warned on every run that it got both
        cli = build_cli(args)
    finally:
        sys.argv = argv
    _check_per_run_settings(cli, spec, folds)
    cli.parser.save(cli.config, spec.run_dir / "config.yaml", overwrite=True, skip_validation=True)
    cli.share_config("fit")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    # Read before testing: loading best.ckpt restores CollapseDetection's state of that (earlier) epoch.
    collapsed = _collapsed(cli.trainer)
    ckpt = cli.trainer.checkpoint_callback
    best = getattr(ckpt, "best_model_path", "") or None
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best or None, verbose=False)
    metrics = {k.removeprefix("test/"): float(v) for k, v in (tested[0] if tested else {}).items()}
    result = {
        "model": spec.model, "seed": spec.seed, "fold": spec.fold,
        # A collapsed run is finished too (CollapseDetection stopped it); the flag says so.
        "status": "completed", "collapsed": collapsed,
        "test": metrics, "best_checkpoint": best,
        # Named by what the checkpoint callback monitored (val/accuracy on Devign, val/f1 on Juliet).
        "monitor": getattr(ckpt, "monitor", None),
        "best_val_score": float(ckpt.best_model_score) if ckpt is not None and ckpt.best_model_score is not None else None,
        "epochs": cli.trainer.current_epoch, "wall_time_s": round(time.time() - started, 1),
        # The cut the test metrics were taken at: the tested checkpoint's (val-tuned under tune_threshold).
        "decision_threshold": _decision_threshold(cli.model),
        "code_inputs": _code_inputs(cli.datamodule),
        **_identity(spec, args),
    }
    atomic_write_json(spec.run_dir / RUN_RESULT, result)
    return result


#: Arguments whose value is where files live: a relative --config-dir or --output-dir, or a moved
#: checkout, must not make a completed run look different. The run's own folders are dropped (the
#: plan fixes them), the config is named by its file (its text is hashed), and a checkpoint inside
#: the study is named relative to it (a fusion run fused with its parts, or without, differs).
_RUN_DIR_ARGS = ("--trainer.default_root_dir", "--trainer.logger.init_args.save_dir")
_CONFIG_ARG = "--config"


def _identity(spec: RunSpec, args: Sequence[str]) -> dict[str, Any]:
    """What made the run: a completed run is reused only when a new study would make it the same way."""
    root = _study_root(spec.run_dir.resolve(), spec.fold)
    settings: list[str] = []
    pairs = iter(args)
    for arg in pairs:
        if arg in _RUN_DIR_ARGS:
            next(pairs, None)
        elif arg == _CONFIG_ARG:
            settings += [arg, Path(next(pairs, "")).name]
        elif arg.endswith("_ckpt"):
            path = Path(next(pairs, "")).resolve()
            settings += [arg, str(path.relative_to(root)) if path.is_relative_to(root) else str(path)]
        else:
            settings.append(arg)
    return {"settings": settings, "config_sha256": hashlib.sha256(spec.config.read_bytes()).hexdigest()}


def _check_per_run_settings(cli: Any, spec: RunSpec, folds: int | None) -> None:
    """What the study set for this run is what the run got.

    `check_overrides` refuses the option names; a whole object after `--` (`--trainer '{...}'`,
    `--data '{...}'`, a second `--config`) can set them too, and every "seed" would then be one run.
    """
    logger = cli.trainer.logger
    got = {"--seeds": (cli.config.get("seed_everything"), spec.seed),
           "--output-dir": (Path(cli.trainer.default_root_dir), spec.run_dir)}
    if logger is not None and getattr(logger, "save_dir", None) is not None:
        got["--output-dir (the logger's save_dir)"] = (Path(logger.save_dir), spec.run_dir)
    if folds:
        hp = cli.datamodule.hparams
        got["--folds"] = ((hp.get("num_folds"), hp.get("fold")), (folds, spec.fold))
    wrong = [f"{option}: {have} where the study set {want}" for option, (have, want) in got.items()
             if have != want and not (isinstance(have, Path) and have.resolve() == want.resolve())]
    if wrong:
        raise OptionError(f"the overrides after -- change what the study sets for each run ({'; '.join(wrong)}): "
                          f"set it with the study option instead")


def check_reusable(spec: RunSpec, data_dir: str | None, folds: int | None, overrides: Sequence[str]) -> None:
    """A completed run made with other settings (config text, --data-dir, --folds, overrides) is an error, not reused."""
    saved = read_json(spec.run_dir / RUN_RESULT)
    if "cli_args" in saved and "settings" not in saved:  # the first format (2026-12-02) kept the raw arguments
        saved = {**saved, **_identity(spec, saved["cli_args"]), "config_sha256": saved.get("config_sha256")}
    if "settings" not in saved:  # results written before runs recorded their settings
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fusion part notice was given when the run was made
        now = _identity(spec, _cli_args(spec, data_dir, folds, overrides))
    if now != {k: saved.get(k) for k in now}:
        old, new = saved["settings"], now["settings"]
        added, dropped = [a for a in new if a not in old], [a for a in old if a not in new]
        diff = ([f"now also {' '.join(added)}"] if added else []) + ([f"no longer {' '.join(dropped)}"] if dropped else [])
        if saved.get("config_sha256") != now["config_sha256"]:
            diff.append(f"{spec.config} changed since")
        raise OptionError(f"{spec.run_dir} holds a completed run made with other settings ({'; '.join(diff)}): "
                          f"give another --output-dir, or delete that run to redo it")


def _decision_threshold(model: Any) -> float | None:
    cut = getattr(model, "decision_threshold", None)
    return float(cut) if cut is not None else None


def _collapsed(trainer: Any) -> bool:
    return any(getattr(cb, "collapsed", False) for cb in trainer.callbacks)


def _value(result: dict[str, Any], metric: str) -> float | None:
    """A run's test metric, None when it is missing, null or NaN (a run without it, not a zero)."""
    value = result["test"].get(metric)
    return None if value is None or math.isnan(value) else float(value)


def _stats(values: list[float | None]) -> dict[str, float | int | None]:
    """Mean and std over the runs that have the metric (n of them); one value has no std."""
    vals = [v for v in values if v is not None]
    return {"mean": statistics.fmean(vals) if vals else None,
            "std": statistics.stdev(vals) if len(vals) > 1 else None, "n": len(vals)}


def _tag(result: dict[str, Any]) -> str:
    return f"seed {result['seed']}" + (f" fold {result['fold']}" if result.get("fold") is not None else "")


#: Arguments that differ between the runs of one study by design: the seed, the fold, and the part
#: checkpoints of each seed's fusion run.
_PER_RUN_ARGS = ("--seed_everything", "--data.init_args.fold")


def _recipe(result: dict[str, Any]) -> tuple[str, ...] | None:
    """How a run was made, less what varies per seed and fold; None for results older than settings."""
    if "settings" not in result:
        return None
    options: list[list[str]] = []
    for arg in result["settings"]:
        if arg.startswith("--") or not options:
            options.append([arg])
        else:
            options[-1].append(arg)
    recipe = [opt[0] if opt[0].endswith("_ckpt") else " ".join(opt) for opt in options if opt[0] not in _PER_RUN_ARGS]
    return (*recipe, f"config sha256 {str(result.get('config_sha256'))[:12]}")


def _warn_mixed_recipes(model: str, runs: list[dict[str, Any]]) -> None:
    """The summary averages every run under the folder (seeds run side by side add up); runs made
    with other settings, config text or folds are named rather than averaged in silently."""
    recipes: dict[tuple[str, ...], list[str]] = {}
    for r in runs:
        recipe = _recipe(r)
        if recipe is not None:
            recipes.setdefault(recipe, []).append(_tag(r))
    if len(recipes) > 1:
        shared = set.intersection(*(set(k) for k in recipes))
        ways = "; ".join(f"{', '.join(tags)}: {' '.join(a for a in k if a not in shared) or 'the shared settings only'}"
                         for k, tags in recipes.items())
        warnings.warn(f"the {model} summary averages runs made in {len(recipes)} different ways ({ways}); "
                      f"give each its own --output-dir to compare them", stacklevel=3)


def summarise(output_dir: Path, models: Sequence[str] | None = None) -> dict[str, Any]:
    """Aggregate every run_result.json under output_dir into production_summary.json.

    Each metric's mean and std are over the runs that have it (`n`; `missing` names the others). The
    best seed is the best test F1 among the runs that did not collapse: a collapsed run's best.ckpt
    is from before the collapse, but the run is no recipe to pick.
    """
    paths = sorted(output_dir.glob(f"*/seed_*/**/{RUN_RESULT}"))
    if not paths:  # a mistyped folder must not get an empty report saying "Best model: None"
        raise InputNotFoundError(f"no {RUN_RESULT} found under {output_dir} (in <model>/seed_<n>/): "
                                 f"give the --output-dir of a study")
    results = [r for r in map(read_json, paths) if models is None or r["model"] in models]
    per_model: dict[str, Any] = {}
    for model in [m for m in MODELS if any(r["model"] == m for r in results)]:
        runs = [r for r in results if r["model"] == model]
        entry: dict[str, Any] = {}
        for metric in METRICS:
            values = [_value(r, metric) for r in runs]
            entry[metric] = {**_stats(values), "missing": [_tag(r) for r, v in zip(runs, values) if v is None]}
        candidates = [r for r in runs if not r.get("collapsed") and _value(r, "f1") is not None]
        best = max(candidates, key=lambda r: _value(r, "f1")) if candidates else {}
        entry.update(
            seeds=sorted({r["seed"] for r in runs}), n_runs=len(runs),
            collapsed_runs=sum(bool(r.get("collapsed")) for r in runs),
            collapsed=[_tag(r) for r in runs if r.get("collapsed")],
            best_seed=best.get("seed"), best_fold=best.get("fold"), best_f1=best.get("test", {}).get("f1"),
            best_checkpoint=best.get("best_checkpoint"),
            runs=[{"seed": r["seed"], "fold": r.get("fold"), "collapsed": bool(r.get("collapsed")), **r["test"]}
                  for r in runs],
        )
        per_model[model] = entry
        _warn_mixed_recipes(model, runs)
    # `is None`, not `or`: a mean F1 of 0.0 is a result, and must not rank with the models without one
    ranked = sorted(per_model, key=lambda m: _or_lowest(per_model[m]["f1"]["mean"]), reverse=True)
    summary = {"models": per_model, "best_model": ranked[0] if ranked else None, "metrics": list(METRICS)}
    atomic_write_json(output_dir / "production_summary.json", summary)
    return summary


def _or_lowest(value: float | None) -> float:
    return float("-inf") if value is None else value


def write_report(output_dir: Path, summary: dict[str, Any]) -> Path:
    from .study_plots import plot_metrics_comparison, plot_training_curves

    plots = [plot_metrics_comparison(output_dir, summary), plot_training_curves(output_dir, list(summary["models"]))]
    lines = ["# streamguard study report", "", f"Best model by mean test F1: **{summary['best_model']}**", "",
             "| model | runs | " + " | ".join(METRICS) + " | best seed (F1) | collapsed |",
             "|---|---|" + "---|" * len(METRICS) + "---|---|"]
    notes = []
    for model, entry in summary["models"].items():
        cells = [_fmt(entry[m], entry["n_runs"]) for m in METRICS]
        fold = "" if entry.get("best_fold") is None else f" fold {entry['best_fold']}"
        best = "n/a" if entry["best_seed"] is None else f"{entry['best_seed']}{fold} ({_num(entry['best_f1'])})"
        lines.append(f"| {model} | {entry['n_runs']} | " + " | ".join(cells) + f" | {best} | "
                     f"{', '.join(entry['collapsed']) or 'none'} |")
        missing: dict[str, list[str]] = {}
        for metric in METRICS:
            for tag in entry[metric]["missing"]:
                missing.setdefault(tag, []).append(metric)
        notes += [f"- {model} {tag}: no {', '.join(metrics)}" for tag, metrics in missing.items()]
    lines += ["", "Mean ± std over seeds (and folds) on the test split, over the runs that have the metric "
              "((n=k) when fewer than the model's runs; – : no std from one value). A collapsed run "
              "(CollapseDetection stopped it) counts in the means but is never the best seed.", ""]
    if notes:
        lines += ["Runs without a metric (missing, null or NaN in their run_result.json):", *notes, ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots if p is not None]
    report = output_dir / "production_report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _fmt(s: dict[str, Any], runs: int | None = None) -> str:
    """`mean ± std`, `–` for the std of one value, `(n=k)` when only k of the model's runs have the metric."""
    if s["mean"] is None:
        return "n/a"
    n = s.get("n")
    return (f"{s['mean']:.4f} ± {'–' if s['std'] is None else format(s['std'], '.4f')}"
            + (f" (n={n})" if runs is not None and n is not None and n < runs else ""))


#: What the study sets for each run, and the study option for it: overridden after `--`, every
#: "seed" would be the same run, or all runs would share one folder or fold.
_STUDY_SETS = {"--seed_everything": "--seeds", "--trainer.default_root_dir": "--output-dir",
               "--trainer.logger.save_dir": "--output-dir", "--data.fold": "--folds", "--data.num_folds": "--folds"}


def check_overrides(overrides: Sequence[str]) -> None:
    """Refuses an override of what the study sets per run, as `--x v` or `--x=v`, with or without `.init_args`."""
    for arg in overrides:
        name = arg.split("=", 1)[0].replace(".init_args.", ".")
        if name in _STUDY_SETS:
            raise OptionError(f"{arg.split('=', 1)[0]} cannot be overridden after --: the study sets it for each "
                              f"run (use {_STUDY_SETS[name]})")


def run_study(models: Sequence[str], seeds: Sequence[int], config_dir: Path, output_dir: Path,
              folds: int | None = None, data_dir: str | None = None, overrides: Sequence[str] = ()) -> Path:
    check_overrides(overrides)
    plan = plan_runs(models, seeds, config_dir, output_dir, folds)
    output_dir.mkdir(parents=True, exist_ok=True)
    for spec in plan:
        tag = f"{spec.model} seed={spec.seed}" + (f" fold={spec.fold}" if spec.fold is not None else "")
        if run_is_complete(spec.run_dir):
            check_reusable(spec, data_dir, folds, overrides)
            reasons = outdated_inputs(spec)
            stale = stale_parts(spec)
            if stale:
                reasons.append(f"its {' and '.join(stale)} run was retrained since")
            if not reasons:
                print(f"[study] skip {tag}: already completed ({spec.run_dir / RUN_RESULT})", flush=True)
                continue
            print(f"[study] redo {tag}: {'; '.join(reasons)}", flush=True)
        aside = set_aside_earlier_attempt(spec)
        if aside is not None:
            print(f"[study] {tag}: an earlier attempt's files moved to {aside}", flush=True)
        print(f"[study] run {tag} -> {spec.run_dir}", flush=True)
        result = execute_run(spec, data_dir, folds, overrides)
        print(f"[study] {tag}: test F1 {_num(result['test'].get('f1'))} acc {_num(result['test'].get('accuracy'))}", flush=True)
    summary = summarise(output_dir, models)
    return write_report(output_dir, summary)


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("--models", nargs="+", action="extend", default=None, choices=MODELS,
                   help=f"default: {' '.join(MODELS)}")
    _add_seeds(p)
    p.add_argument("--config-dir", type=Path, default=repo_root() / "configs")
    p.add_argument("--output-dir", type=Path, default=Path("outputs"))
    p.add_argument("--folds", type=int, default=None, help="stratified k-fold instead of the fixed split")
    p.add_argument("--data-dir", default=None, help="override data.init_args.data_dir (juliet, devign, a folder)")
    p.add_argument("overrides", nargs="*", help="extra LightningCLI overrides after --, e.g. -- --trainer.max_epochs 2")
    return p


DEFAULT_SEEDS = (42, 2025, 7)


def _add_seeds(p: argparse.ArgumentParser) -> None:
    # extend: `--seeds 1 2 --seeds 7` is three seeds (argparse's default keeps the last list only)
    p.add_argument("--seeds", nargs="+", type=int, action="extend", default=None,
                   help=f"default: {' '.join(map(str, DEFAULT_SEEDS))}")


def _given(values: Sequence[Any] | None, default: Sequence[Any]) -> list[Any]:
    """Each value once, in the order given (a repeat would only be skipped as already completed)."""
    return list(dict.fromkeys(values or default))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser("streamguard study").parse_args(argv)
    args.models, args.seeds = _given(args.models, MODELS), _given(args.seeds, DEFAULT_SEEDS)
    report = run_study(args.models, args.seeds, args.config_dir, args.output_dir, args.folds, args.data_dir, args.overrides)
    print(f"[study] report: {report}")
    return 0


def report_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="streamguard report", description="rebuild summary, report and plots")
    p.add_argument("--output-dir", type=Path, default=Path("outputs"))
    args = p.parse_args(argv)
    report = write_report(args.output_dir, summarise(args.output_dir))
    print(f"[report] {report}")
    return 0


def demo_main(argv: Sequence[str] | None = None) -> int:
    """The README's main job: every model on the embedded corpus at CPU demo size."""
    p = argparse.ArgumentParser(prog="streamguard demo", description=demo_main.__doc__)
    p.add_argument("--output-dir", type=Path, default=Path("outputs/demo"))
    _add_seeds(p)
    args = p.parse_args(argv)
    args.seeds = _given(args.seeds, DEFAULT_SEEDS)
    started = time.time()
    report = run_study(list(MODELS), args.seeds, repo_root() / "configs" / "demo", args.output_dir)
    summary = read_json(args.output_dir / "production_summary.json")
    for model, entry in summary["models"].items():
        print(f"[demo] {model:12s} test F1 {_fmt(entry['f1'])}  accuracy {_fmt(entry['accuracy'])}")
    print(f"[demo] done in {time.time() - started:.0f} s. Report: {report}")
    print(f"[demo] TensorBoard: tensorboard --logdir {args.output_dir}")
    return 0
