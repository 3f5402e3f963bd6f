"""`streamguard predict`: score the functions of C/C++ files, folders or JSON Lines with a checkpoint.

C/C++ files are split into functions with tree-sitter; the run's own config (config.yaml next to
the checkpoint's run folder) rebuilds the same features (graph settings, the saved tokenizer).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import importlib
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import tree_sitter as ts
import yaml

from .data.graphs import make_parsers, parse_either
from .data.records import CodeRecord, RecordError, read_records
from .errors import InputError, InputNotFoundError, OptionError

C_SUFFIXES = {".c"}
#: C or C++ alike: parsed with both grammars, the one with fewer errors kept (graphs.parse_either)
EITHER_SUFFIXES = {".h"}
#: the usual C++ suffixes, template implementation files (.inl, .ipp, .tcc, .tpp) and CUDA (.cu, .cuh)
CPP_SUFFIXES = {".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".inl", ".ipp", ".tcc", ".tpp",
                ".cu", ".cuh"}
SOURCE_SUFFIXES = C_SUFFIXES | EITHER_SUFFIXES | CPP_SUFFIXES
#: declaration specifiers that may stand before a function's declarator (a header recovered from an ERROR node)
_SPECIFIERS = {"primitive_type", "type_identifier", "sized_type_specifier", "storage_class_specifier",
               "type_qualifier", "attribute_specifier", "attribute_declaration", "struct_specifier",
               "union_specifier", "enum_specifier", "macro_type_specifier", "ms_declspec_modifier",
               "template_type", "qualified_identifier", "placeholder_type_specifier", "virtual",
               "explicit_function_specifier"}
_NAMES = {"identifier", "field_identifier", "qualified_identifier", "destructor_name", "operator_name",
          "template_function", "operator_cast"}


@functools.cache
def _parsers() -> dict[str, ts.Parser]:
    return make_parsers()


@dataclass(frozen=True)
class FunctionSpan:
    name: str
    start_line: int  # 1-based
    end_line: int
    text: str
    #: the definition holds ERROR/MISSING nodes or was recovered around them: its bounds are a guess
    parse_error: bool = False


@dataclass
class SourceSplit:
    """The functions of one source text, and what tree-sitter could not split cleanly."""

    functions: list[FunctionSpan]
    lang: str
    #: first line of each ERROR region (or body without a header) outside every definition
    unsplit_lines: list[int]

    @property
    def parse_errors(self) -> int:
        return sum(f.parse_error for f in self.functions)


def _declarator_name(declarator: ts.Node | None) -> str:
    """Follow declarators inward to the name (through pointers, parentheses, functions returning functions)."""
    while declarator is not None:
        if declarator.type in _NAMES:
            return _name_text(declarator)
        inner = declarator.child_by_field_name("declarator")
        if inner is None and declarator.type == "parenthesized_declarator":
            inner = declarator.named_children[0] if declarator.named_children else None
        declarator = inner
    return ""


def _name_text(node: ts.Node) -> str:
    """The name as written; a conversion operator ends before its `()` (`B::operator bool`)."""
    last = node
    while last.type == "qualified_identifier" and last.child_by_field_name("name") is not None:
        last = last.child_by_field_name("name")
    cut = last.child_by_field_name("declarator") if last.type == "operator_cast" else None
    end = cut.start_byte if cut is not None else node.end_byte
    return " ".join(node.text[:end - node.start_byte].decode("utf-8", "replace").split())


def _function_name(node: ts.Node) -> str:
    """The defined name; where error recovery read `name(params)` as a macro type (an attribute before
    it), that macro's name; never empty."""
    name = _declarator_name(node.child_by_field_name("declarator"))
    if not name:
        kind = node.child_by_field_name("type")
        if kind is not None and kind.type == "macro_type_specifier" and kind.child_by_field_name("name"):
            name = kind.child_by_field_name("name").text.decode("utf-8", "replace")
    return name or "<anonymous>"


def _absorbed_head(prev: ts.Node | None) -> ts.Node | None:
    """After a macro call without `;` (`static DEFINE_MUTEX(lock)`) tree-sitter ends that declaration
    with the next function's first specifiers (`static int`): the first of them, or None."""
    if prev is None or prev.type != "declaration" or not prev.children or not prev.children[-1].is_missing:
        return None
    kind = prev.child_by_field_name("type")
    if kind is None or kind.type != "macro_type_specifier":
        return None
    after = [c for c in prev.children[:-1] if c.start_byte >= kind.end_byte]
    return after[0] if after else None


def _macro_header(node: ts.Node, body: ts.Node | None) -> bool:
    """`SYSCALL_DEFINE3(read, ...) { ... }`: a call without `;` right before a body outside any function."""
    return (body is not None and body.type == "compound_statement" and node.type == "expression_statement"
            and bool(node.children) and node.children[-1].is_missing and node.named_children[0].type == "call_expression")


def _swallowed(definition: ts.Node) -> list[ts.Node]:
    """Definitions parsed inside a broken one (a missing `}` makes the following functions its body);
    methods of local classes are not among them."""
    found, stack = [], list(reversed(definition.children))
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            found.append(node)
        elif node.type != "field_declaration_list":
            stack.extend(reversed(node.children))
    return found


def _top_level(node: ts.Node) -> bool:
    """Where a body can only be a function's (a lambda's body sits inside a declaration)."""
    return node.type in ("translation_unit", "declaration_list") or node.type.startswith("preproc_")


class _Splitter:
    """Walks a tree outside function bodies, collecting definitions and recovering what error recovery broke."""

    def __init__(self, data: bytes, out: SourceSplit) -> None:
        self.data, self.out = data, out

    def add(self, start: ts.Node, end_byte: int, name: str, parse_error: bool) -> None:
        text = self.data[start.start_byte:end_byte].decode("utf-8", "replace").rstrip()
        self.out.functions.append(FunctionSpan(name or "<anonymous>", start.start_point[0] + 1,
                                               start.start_point[0] + 1 + text.count("\n"), text, parse_error))

    def definition(self, node: ts.Node, prev: ts.Node | None) -> list[ts.Node]:
        """Adds one definition; returns the definitions a broken one swallowed, to be added in turn."""
        head = _absorbed_head(prev)
        nested = _swallowed(node) if node.has_error else []
        end = nested[0].start_byte if nested else node.end_byte
        self.add(head or node, end, _function_name(node), node.has_error or head is not None)
        return nested

    def error_heads(self, node: ts.Node) -> dict[int, int]:
        """Functions whose header and body tree-sitter left loose in an ERROR node (`#ifdef` opening a
        brace twice): child index of each one's first specifier -> index after its last child."""
        kids, spans, i = node.children, {}, 0
        for i, kid in enumerate(kids[:-1]):
            if _declarator_name(kid) and "function_declarator" in kid.type and kids[i + 1].type == "{":
                first = i
                while first > 0 and kids[first - 1].type in _SPECIFIERS and first - 1 not in spans.values():
                    first -= 1
                spans[first] = i + 2
        for first in sorted(spans):  # each runs until the next definition or recovered header
            stop = next((j for j in range(spans[first], len(kids))
                         if kids[j].type == "function_definition" or j in spans), len(kids))
            spans[first] = stop
        return spans

    def run(self, root: ts.Node) -> None:
        stack = [(root, False)]
        while stack:
            node, in_error = stack.pop()
            if node.type == "function_definition":  # swallowed by a broken definition
                stack += [(n, False) for n in self.definition(node, None)]
                continue
            heads = self.error_heads(node) if node.type == "ERROR" else {}
            if node.type == "ERROR" and not heads and not in_error:
                self.out.unsplit_lines.append(node.start_point[0] + 1)
            in_error = in_error or node.type == "ERROR"
            kids, i = node.children, 0
            while i < len(kids):
                kid, nxt = kids[i], kids[i + 1] if i + 1 < len(kids) else None
                if i in heads:
                    stop = heads[i]
                    end = kids[stop].start_byte if stop < len(kids) else node.end_byte
                    self.add(kid, end, _declarator_name(next(k for k in kids[i:stop] if "function_declarator" in k.type)),
                             True)
                    i = stop
                    continue
                if kid.type == "function_definition":
                    stack += [(n, False) for n in self.definition(kid, kids[i - 1] if i else None)]
                elif _macro_header(kid, nxt):
                    callee = kid.named_children[0].child_by_field_name("function")
                    self.add(kid, nxt.end_byte, callee.text.decode("utf-8", "replace") if callee else "", True)
                    i += 1
                elif kid.type == "compound_statement" and _top_level(node):
                    self.out.unsplit_lines.append(kid.start_point[0] + 1)  # a body with no header we know
                elif kid.child_count:
                    stack.append((kid, in_error))
                i += 1


def split_source(source: str, lang: str = "c") -> SourceSplit:
    """Every function definition outside another function's body, in source order, and a count of
    what could not be split cleanly.

    The search enters every other node (namespaces, classes, templates, extern "C", friend
    declarations, every preprocessor branch, ERROR nodes). Tree-sitter does not preprocess: where
    `#ifdef` branches or macros break the parse, the common shapes are recovered (a header and body
    left in an ERROR node, following functions swallowed by one missing `}`, specifiers taken by a
    macro call without `;`, `SYSCALL_DEFINE3(...) {...}`) and flagged `parse_error`; any other ERROR
    region outside a definition is counted in `unsplit_lines`. `lang="auto"` picks the grammar with
    fewer errors (a `.h` file).
    """
    data = source.encode("utf-8")
    if lang == "auto":
        tree, lang, _ = parse_either(_parsers(), data)
    else:
        tree = _parsers()[lang].parse(data)
    out = SourceSplit([], lang, [])
    _Splitter(data, out).run(tree.root_node)
    out.functions.sort(key=lambda s: s.start_line)
    out.unsplit_lines.sort()
    return out


def split_functions(source: str, lang: str = "c") -> list[FunctionSpan]:
    """The functions of `split_source`, in source order."""
    return split_source(source, lang).functions


def _lang_of(path: Path) -> str:
    """The grammar of a source file by suffix; "auto" (both, fewer errors wins) for `.h`."""
    suffix = path.suffix.lower()
    return "cpp" if suffix in CPP_SUFFIXES else "auto" if suffix in EITHER_SUFFIXES else "c"


def iter_source_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in SOURCE_SUFFIXES and p.is_file())
    else:
        yield path


@dataclass
class SplitTally:
    """What the splitting could not do cleanly, over every file read: the summary line's counts."""

    parse_errors: int = 0  # definitions holding parse errors (bounds or text may be off)
    unsplit: int = 0       # ERROR regions outside any definition (a function may be lost there)

    def add(self, file: Path, split: SourceSplit) -> None:
        """Counts one file's split, with a warning naming the lines where it is not clean."""
        bad = [f"{f.start_line} ({f.name})" for f in split.functions if f.parse_error]
        self.parse_errors += len(bad)
        self.unsplit += len(split.unsplit_lines)
        if bad or split.unsplit_lines:
            warnings.warn(f"{file}: {len(bad)} function definitions hold parse errors (lines {', '.join(bad) or '-'}) "
                          f"and {len(split.unsplit_lines)} error regions lie outside any definition (lines "
                          f"{', '.join(map(str, split.unsplit_lines)) or '-'}): scored as split, bounds approximate",
                          stacklevel=3)


def _no_sources(path: Path) -> InputNotFoundError:
    jsonl = sum(1 for _ in path.rglob("*.jsonl"))
    hint = f"; its {jsonl} .jsonl files are read only when given to --input themselves" if jsonl else ""
    return InputNotFoundError(f"no C/C++ source files under {path} (suffixes: {' '.join(sorted(SOURCE_SUFFIXES))})"
                              f"{hint}")


def records_from_input(path: Path, tally: SplitTally | None = None) -> list[CodeRecord]:
    """Functions of a C/C++ file or folder, or the records of a JSON Lines file; `tally` counts what
    could not be split cleanly."""
    if not path.exists():
        raise InputNotFoundError(f"input not found: {path}")
    if path.suffix == ".jsonl":
        return read_records([path], on_error="raise", dedupe=False, drop_conflicts=False, labels_required=False)[0]
    records = []
    empty: list[Path] = []
    files = list(iter_source_files(path))
    if not files:
        raise _no_sources(path)
    tally = tally if tally is not None else SplitTally()
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise RecordError(file, 0, None, f"not UTF-8 ({err})") from err
        split = split_source(text, _lang_of(file))
        tally.add(file, split)
        if not split.functions:
            empty.append(file)
        for fn in split.functions:
            records.append(CodeRecord(
                id=f"{file}:{fn.start_line}:{fn.name}", func=fn.text, target=0, lang=split.lang,
                meta={"file": str(file), "function": fn.name, "start_line": fn.start_line, "end_line": fn.end_line,
                      "parse_error": fn.parse_error},
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

    from .cli import features_folder
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
    # beside the checkpoint when copied with it, else the run folder; what neither holds (no saved
    # tokenizer or vocabulary) is fitted on train again, in a scratch folder
    dm.load_saved_features(features_folder(ckpt))
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


@dataclass
class Scores:
    """What `predict` returns: a row per function, the cut it applied, and what splitting could not do."""

    rows: list[dict[str, Any]]
    cut: float
    cut_origin: str  # "--threshold", "val-tuned" (saved in the checkpoint) or "default"
    tally: SplitTally

    def summary(self) -> str:
        """The one line `streamguard predict` prints: how many were scored, cut, flagged, split badly."""
        unscored = sum(1 for r in self.rows if r["probability"] is None)
        truncated = sum(1 for r in self.rows if r["truncated"])
        flagged = sum(1 for r in self.rows if r["label"] == 1)
        return (f"{len(self.rows)} functions ({unscored} unscored, {truncated} truncated), {flagged} flagged vulnerable "
                f"at cut {self.cut:.4g} ({self.cut_origin}); {self.tally.parse_errors} definitions with parse errors, "
                f"{self.tally.unsplit} error regions outside any definition")


def _row(rec: CodeRecord, prob: float | None, cut: float, truncated: set[str], failed: dict[str, str]) -> dict[str, Any]:
    """One output row; a function without features keeps the reason (graph builder's, or none known)."""
    row = {"file": rec.get("file", rec.source.rsplit(":", 1)[0]), "function": rec.get("function", rec.id),
           "start_line": rec.get("start_line", None), "probability": None, "label": None, "id": rec.id,
           "truncated": None, "parse_error": rec.get("parse_error", None), "error": failed.get(rec.id)}
    if prob is None:
        row["error"] = row["error"] or "no features were built for it"
    else:
        row.update(probability=round(prob, 6), label=int(prob >= cut), truncated=rec.id in truncated)
        if row["error"]:  # fusion with missing_graph: placeholder
            row["error"] = f"scored on a placeholder graph: {row['error']}"
    return row


def predict(ckpt: Path, inputs: Sequence[Path], threshold: float | None = None, config: Path | None = None,
            on_error: str | None = None) -> Scores:
    """Scores every function of the inputs; `on_error` ("skip"/"raise") overrides the run config's
    for functions whose graph cannot be built (skip: listed unscored, with the reason)."""
    import lightning as L

    model, dm = load_run(ckpt, config)
    if on_error is not None and hasattr(dm, "graph_features"):
        dm.graph_features.on_error = on_error
    tally = SplitTally()
    records = _unique_ids([r for path in inputs for r in records_from_input(path, tally)])
    origin = "--threshold" if threshold is not None else "val-tuned" if model.hparams.get("tune_threshold") else "default"
    cut = float(model.decision_threshold) if threshold is None else threshold
    if not records:
        return Scores([], cut, origin, tally)
    dm.set_predict_records(records)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    batches = trainer.predict(model, datamodule=dm)
    probs: dict[int, float] = {}
    for batch in batches:
        probs.update(zip(batch["index"].tolist(), batch["probs"].tolist()))
    failed, truncated = dm.predict_outcomes()
    # Input order (length-bucketed batches come back shuffled by length); a function with no features
    # is listed with no probability and its reason, never dropped silently.
    rows = [_row(rec, probs.get(idx), cut, truncated, failed) for idx, rec in enumerate(records)]
    return Scores(rows, cut, origin, tally)


#: parse_error: the definition held tree-sitter errors when its file was split (its bounds or text may be
#: off, and its score with them); empty for JSON Lines input, which is not split.
FIELDS = ["file", "function", "start_line", "probability", "label", "id", "truncated", "parse_error", "error"]


def write_rows(rows: list[dict[str, Any]], out: Path | None, fmt: str) -> None:
    handle = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout
    try:
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    finally:
        if out:
            handle.close()


def _check_output(out: Path | None) -> None:
    """Before any scoring: a typo in --output's folder used to fail only after all of it."""
    if out is not None and out.is_dir():
        raise OptionError(f"--output {out} is a folder: give a .jsonl or .csv file name")
    if out is not None and not out.parent.is_dir():
        raise InputNotFoundError(f"output folder not found: {out.parent} (--output {out})")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="streamguard predict", description=__doc__)
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--input", type=Path, nargs="+", required=True, help="C/C++ file(s), folder(s) or .jsonl")
    p.add_argument("--output", type=Path, default=None, help=".jsonl or .csv (default: JSON Lines to stdout)")
    p.add_argument("--format", choices=["jsonl", "csv"], default=None)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--config", type=Path, default=None, help="run config (default: <run>/config.yaml)")
    p.add_argument("--on-error", choices=["skip", "raise"], default=None,
                   help="a function whose graph cannot be built: list it unscored with the reason (skip) or stop "
                        "(raise); default: the run config's data.on_error")
    args = p.parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        p.error(f"--threshold is a probability cut in [0, 1], got {args.threshold}")
    fmt = args.format or ("csv" if args.output and args.output.suffix == ".csv" else "jsonl")
    _check_output(args.output)
    scores = predict(args.ckpt, args.input, args.threshold, args.config, args.on_error)
    write_rows(scores.rows, args.output, fmt)
    print(f"[predict] {scores.summary()} -> {args.output or 'stdout'}", file=sys.stderr)
    return 0
