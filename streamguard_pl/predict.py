"""`streamguard predict`: score the functions of C/C++ files, folders or JSON Lines with a checkpoint.

C/C++ files are split into functions with tree-sitter; the run's own config (config.yaml next to
the checkpoint's run folder) rebuilds the same features (graph settings, the saved tokenizer).
"""
from __future__ import annotations

import argparse
import importlib
import csv
import dataclasses
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import tree_sitter as ts
import yaml
import tree_sitter_c
import tree_sitter_cpp

from .data.records import CodeRecord, RecordError, read_records
from .errors import InputError, InputNotFoundError

C_SUFFIXES = {".c", ".h"}
CPP_SUFFIXES = {".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++"}
_PARSERS: dict[str, ts.Parser] = {}


def _parser(lang: str) -> ts.Parser:
    if lang not in _PARSERS:
        grammar = tree_sitter_cpp.language() if lang == "cpp" else tree_sitter_c.language()
        _PARSERS[lang] = ts.Parser(ts.Language(grammar))
    return _PARSERS[lang]


@dataclass(frozen=True)
class FunctionSpan:
    name: str
    start_line: int  # 1-based
    end_line: int
    text: str


def _function_name(node: ts.Node) -> str:
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:
        if declarator.type in ("identifier", "field_identifier", "qualified_identifier", "destructor_name",
                               "operator_name", "template_function"):
            return declarator.text.decode("utf-8", "replace")
        declarator = declarator.child_by_field_name("declarator")
    return "<anonymous>"


def split_functions(source: str, lang: str = "c") -> list[FunctionSpan]:
    """Every function definition outside another function's body, in source order.

    The search enters every other node (namespaces, classes, templates, extern "C", friend
    declarations, every preprocessor branch, ERROR nodes): a list of container types missed friend
    functions and `#elifdef` branches, silently.
    """
    data = source.encode("utf-8")
    tree = _parser(lang).parse(data)
    spans: list[FunctionSpan] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        for child in reversed(node.children):
            if child.type == "function_definition":
                spans.append(FunctionSpan(_function_name(child), child.start_point[0] + 1, child.end_point[0] + 1,
                                          data[child.start_byte:child.end_byte].decode("utf-8", "replace")))
            elif child.child_count:
                stack.append(child)
    return sorted(spans, key=lambda s: s.start_line)


def _lang_of(path: Path) -> str:
    return "cpp" if path.suffix.lower() in CPP_SUFFIXES else "c"


def iter_source_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in C_SUFFIXES | CPP_SUFFIXES and p.is_file())
    else:
        yield path


def records_from_input(path: Path) -> list[CodeRecord]:
    """Functions of a C/C++ file or folder, or the records of a JSON Lines file."""
    if not path.exists():
        raise InputNotFoundError(f"input not found: {path}")
    if path.suffix == ".jsonl":
        return read_records([path], on_error="raise", dedupe=False, drop_conflicts=False, labels_required=False)[0]
    records = []
    empty: list[Path] = []
    files = list(iter_source_files(path))
    for file in files:
        lang = _lang_of(file)
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise RecordError(file, 0, None, f"not UTF-8 ({err})") from err
        functions = split_functions(text, lang)
        if not functions:
            empty.append(file)
        for fn in functions:
            records.append(CodeRecord(
                id=f"{file}:{fn.start_line}:{fn.name}", func=fn.text, target=0, lang=lang,
                meta={"file": str(file), "function": fn.name, "start_line": fn.start_line, "end_line": fn.end_line},
                source=f"{file}:{fn.start_line}",
            ))
    if empty:  # headers of declarations only are common; still, say which inputs gave nothing to score
        warnings.warn(f"{len(empty)} of {len(files)} source files under {path} hold no function definition "
                      f"(first: {empty[0]})", stacklevel=2)
    return records


#: Arguments of the fit/validate/test subcommands that `streamguard fit` saves into config.yaml and the
#: subcommand-less parser of `build_cli` rejects ("Option 'ckpt_path' is not accepted").


class RunConfigError(InputError, ValueError):
    """The run config next to a checkpoint (or given with --config) cannot rebuild the run."""


def _run_config(config: Path) -> dict[str, Any]:
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    if not isinstance(cfg, dict) or "model" not in cfg or "data" not in cfg:
        raise RunConfigError(f"{config}: not a run config (a YAML mapping with model and data sections)")
    return cfg


def _model_class(spec: Any, config: Path) -> type:
    """The LightningModule class named by the config (a dotted class_path or a bare class name)."""
    from . import models

    path = spec.get("class_path") if isinstance(spec, dict) else spec
    if not isinstance(path, str):
        raise RunConfigError(f"{config}: model.class_path missing")
    module_name, _, name = path.rpartition(".")
    module = importlib.import_module(module_name) if module_name else models
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, models.VulnerabilityClassifier)):
        raise RunConfigError(f"{config}: model.class_path {path!r} is not a VulnerabilityClassifier")
    return cls


def load_run(ckpt: Path, config: Path | None = None) -> tuple[Any, Any]:
    """Model from the checkpoint alone; datamodule from the run's config (same features as in training).

    The model is never built from the config first: a fusion run's part checkpoints need not exist
    any more, because the fusion checkpoint's hyperparameters rebuild both encoders.
    """
    from jsonargparse import ArgumentParser

    from .data.datamodules import CodeDataModule

    if not ckpt.is_file():
        raise InputNotFoundError(f"checkpoint not found: {ckpt}")
    run_dir = ckpt.resolve().parent.parent
    config = config or run_dir / "config.yaml"
    if not config.is_file():
        raise InputNotFoundError(f"no run config at {config}: pass --config with the YAML the checkpoint was trained with")
    cfg = _run_config(config)
    model = _model_class(cfg["model"], config).load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(CodeDataModule, "data", required=True)
    data = cfg["data"]
    if isinstance(data, dict):
        data = {**data, "init_args": {**data.get("init_args", {}), "output_dir": str(run_dir)}}
    dm = parser.instantiate_classes(parser.parse_object({"data": data})).data
    dm.load_saved_features(run_dir)  # what it lacks (no saved tokenizer or vocabulary) is fitted on train again
    return model, dm


def _unique_ids(records: list[CodeRecord]) -> list[CodeRecord]:
    """Features are joined back to records by id: a repeated id (a file given twice, JSON Lines ids
    reused across inputs) would leave all but one copy unscored, so repeats get a #n suffix."""
    seen: dict[str, int] = {}
    out = []
    for rec in records:
        seen[rec.id] = seen.get(rec.id, 0) + 1
        out.append(rec if seen[rec.id] == 1 else dataclasses.replace(rec, id=f"{rec.id}#{seen[rec.id]}"))
    return out


def predict(ckpt: Path, inputs: Sequence[Path], threshold: float | None = None,
            config: Path | None = None) -> list[dict[str, Any]]:
    import lightning as L

    model, dm = load_run(ckpt, config)
    records = _unique_ids([r for path in inputs for r in records_from_input(path)])
    if not records:
        return []
    dm.set_predict_records(records)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    batches = trainer.predict(model, datamodule=dm)
    threshold = float(model.decision_threshold) if threshold is None else threshold  # tuned on val when asked
    probs: dict[int, float] = {}
    for batch in batches:
        probs.update(zip(batch["index"].tolist(), batch["probs"].tolist()))
    rows = []
    # Input order (length-bucketed batches come back shuffled by length); a function with no features
    # is listed with no probability, never dropped silently.
    for idx, rec in enumerate(records):
        row = {"file": rec.get("file", rec.source.rsplit(":", 1)[0]), "function": rec.get("function", rec.id),
               "start_line": rec.get("start_line", None), "probability": None, "label": None, "id": rec.id}
        if idx in probs:
            row.update(probability=round(float(probs[idx]), 6), label=int(probs[idx] >= threshold))
        else:
            row["error"] = "no features could be built (see warnings)"
        rows.append(row)
    return rows


def write_rows(rows: list[dict[str, Any]], out: Path | None, fmt: str) -> None:
    fields = ["file", "function", "start_line", "probability", "label", "id"]
    handle = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout
    try:
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    finally:
        if out:
            handle.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="streamguard predict", description=__doc__)
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--input", type=Path, nargs="+", required=True, help="C/C++ file(s), folder(s) or .jsonl")
    p.add_argument("--output", type=Path, default=None, help=".jsonl or .csv (default: JSON Lines to stdout)")
    p.add_argument("--format", choices=["jsonl", "csv"], default=None)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--config", type=Path, default=None, help="run config (default: <run>/config.yaml)")
    args = p.parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        p.error(f"--threshold is a probability cut in [0, 1], got {args.threshold}")
    fmt = args.format or ("csv" if args.output and args.output.suffix == ".csv" else "jsonl")
    rows = predict(args.ckpt, args.input, args.threshold, args.config)
    write_rows(rows, args.output, fmt)
    if args.output:
        flagged = sum(1 for r in rows if r["label"] == 1)
        print(f"[predict] {len(rows)} functions, {flagged} flagged vulnerable -> {args.output}", file=sys.stderr)
    return 0
