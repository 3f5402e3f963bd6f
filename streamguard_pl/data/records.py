"""Read, validate, deduplicate and split function-level JSON Lines (CodeXGLUE/Devign schema).

Every later stage (tokens, graphs, predictions) keys on ``CodeRecord.id`` and reports problems
through ``CodeRecord.source``, so this module is strict: a bad line is an error naming file, line
and field, or -- when asked to skip -- a counted entry in the ``ReadReport``; never a silent loss.
"""

from __future__ import annotations

import glob
import hashlib
import json
import operator
import os
import random
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from streamguard_pl.errors import InputError, InputNotFoundError, OptionError
from streamguard_pl.jsonsafe import atomic_open, safe_jsonify

__all__ = [
    "CodeRecord",
    "RecordError",
    "RecordSkipWarning",
    "ReadReport",
    "expand_paths",
    "record_from_dict",
    "iter_records",
    "read_records",
    "normalize_code",
    "dedupe_records",
    "records_fingerprint",
    "files_fingerprint",
    "label_counts",
    "split_records",
    "kfold_records",
    "check_group_field",
    "group_fields",
    "group_value",
    "shared_groups",
    "write_records_jsonl",
]

PathsLike = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
OnError = Literal["raise", "skip"]
SPLIT_NAMES = ("train", "val", "test")
_CORE_FIELDS = ("id", "func", "target", "lang")
_LANGS = {"c": "c", "cpp": "cpp", "c++": "cpp", "cxx": "cpp", "cc": "cpp"}
_TARGETS: dict[Any, int] = {"0": 0, "1": 1}


@dataclass(frozen=True)
class CodeRecord:
    """One labelled function; ``meta`` keeps every input field that is not a core field."""

    id: str
    func: str
    target: int
    lang: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)
    source: str = ""

    def __post_init__(self) -> None:
        # Records are also built by hand (synthetic corpus, tests): keep the label contract there too.
        try:
            target = operator.index(self.target)
        except TypeError:
            raise TypeError(f"CodeRecord {self.id!r}: target must be an int 0/1, got {self.target!r}") from None
        if target not in (0, 1):
            raise ValueError(f"CodeRecord {self.id!r}: target must be 0 or 1, got {self.target!r}")
        object.__setattr__(self, "target", int(target))

    def get(self, field: str, default: Any = None) -> Any:
        """A data field by name: id/func/target/lang, else ``meta[field]``."""
        if field in _CORE_FIELDS:
            return getattr(self, field)
        return self.meta.get(field, default)

    def to_dict(self) -> dict[str, Any]:
        """The JSON Lines object this record reads back from (``source`` is not a data field)."""
        out: dict[str, Any] = {"id": self.id, "func": self.func, "target": self.target}
        if self.lang is not None:
            out["lang"] = self.lang
        out.update(self.meta)
        return out


class RecordError(InputError, ValueError):
    """A bad input line; ``line`` is 1-based (0 = the file as a whole), ``field`` may be None."""

    def __init__(self, path: str | os.PathLike, line: int, field: str | None, reason: str) -> None:
        self.path, self.line, self.field, self.reason = str(path), line, field, reason
        where = f"{self.path}:{line}" if line else self.path
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "field": self.field, "reason": self.reason}


class RecordSkipWarning(UserWarning):
    """Lines were skipped (``on_error="skip"``); the ReadReport lists each one."""


@dataclass
class ReadReport:
    """What reading did to the input: every skipped line is listed, every removal counted."""

    files: list[str] = field(default_factory=list)
    lines_read: int = 0
    blank_lines: int = 0
    records_kept: int = 0
    skipped: list[dict] = field(default_factory=list)
    duplicates_removed: int = 0
    conflicts_removed: int = 0

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    def _skip_kinds(self) -> Counter:
        # "bad target" for field errors, else the reason's head ("invalid JSON", "empty file ...").
        return Counter(f"bad {s['field']}" if s["field"] else s["reason"].split(":")[0] for s in self.skipped)

    def summary(self) -> str:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(self._skip_kinds().items()))
        skipped = f"skipped {self.skipped_count}" + (f" ({kinds})" if kinds else "")
        return (
            f"read {len(self.files)} files, {self.lines_read} lines"
            + (f" ({self.blank_lines} blank)" if self.blank_lines else "")
            + f": kept {self.records_kept}, {skipped}, "
            f"{self.duplicates_removed} duplicates, {self.conflicts_removed} conflicting"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "lines_read": self.lines_read,
            "blank_lines": self.blank_lines,
            "records_kept": self.records_kept,
            "skipped_count": self.skipped_count,
            "skipped": [dict(s) for s in self.skipped],
            "duplicates_removed": self.duplicates_removed,
            "conflicts_removed": self.conflicts_removed,
            "summary": self.summary(),
        }


# ----------------------------------------------------------------------------- paths


def expand_paths(paths: PathsLike) -> list[Path]:
    """Files named by paths, globs or folders (-> their ``*.jsonl``), sorted within each pattern.

    Order across patterns is kept (train before valid if so given); a file named twice is read once.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError("no input paths given")
    out: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        pattern = os.path.expanduser(os.fspath(item))
        if os.path.isfile(pattern):  # a file named `train[1].jsonl` is that file, not a pattern
            found = [Path(pattern)]
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not found:
                raise InputNotFoundError(f"no files match {pattern!r}")
        elif os.path.isdir(pattern):
            found = sorted(p for p in Path(pattern).glob("*.jsonl") if p.is_file())
            if not found:
                raise InputNotFoundError(f"no *.jsonl files in folder {pattern!r}")
        else:
            raise InputNotFoundError(f"no such file: {pattern!r}")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


# ----------------------------------------------------------------------------- parsing


def _parse_target(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if type(value) is int and value in (0, 1):
        return value
    if isinstance(value, str):
        return _TARGETS.get(value)
    return None


def record_from_dict(obj: Any, path: str | os.PathLike = "<dict>", line: int = 0,
                     labels_required: bool = True) -> CodeRecord:
    """Validate one decoded JSON value into a CodeRecord; RecordError names path, line and field.

    Without ``labels_required`` (records to score) a missing ``target`` reads as 0, which nothing
    uses; one that is there must still be valid.
    """
    if not isinstance(obj, dict):
        raise RecordError(path, line, None, f"not a JSON object: got {type(obj).__name__}")
    if "func" not in obj:
        raise RecordError(path, line, "func", "missing")
    func = obj["func"]
    if not isinstance(func, str):
        raise RecordError(path, line, "func", f"must be a string, got {type(func).__name__}")
    if not func.strip():
        raise RecordError(path, line, "func", "is empty")
    if "target" not in obj and labels_required:
        raise RecordError(path, line, "target", "missing (expected 0 or 1)")
    target = _parse_target(obj.get("target", 0))
    if target is None:
        raise RecordError(path, line, "target", f'must be 0 or 1 (int, "0"/"1" or true/false), got {obj["target"]!r}')
    rec_id = _parse_id(obj, path, line)
    lang = obj.get("lang")
    if lang is not None:
        if not isinstance(lang, str) or lang.strip().lower() not in _LANGS:
            raise RecordError(path, line, "lang", f"must be one of 'c', 'cpp' (or null), got {lang!r}")
        lang = _LANGS[lang.strip().lower()]
    meta = {k: v for k, v in obj.items() if k not in _CORE_FIELDS}
    return CodeRecord(id=rec_id, func=func, target=target, lang=lang, meta=meta, source=f"{path}:{line}")


def _parse_id(obj: dict, path: str | os.PathLike, line: int) -> str:
    # CodeXGLUE's own files call it "idx"; fall back to it before inventing "<stem>:<line>".
    for key in ("id", "idx"):
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise RecordError(path, line, key, f"must be a non-empty string or an int, got {value!r}")
        return str(value)
    return f"{Path(path).stem}:{line}"


def _decode_line(raw: bytes, path: Path, line: int) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise RecordError(path, line, None, f"not valid UTF-8: byte 0x{bad} at byte {exc.start + 1}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise RecordError(path, line, None, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except _DuplicateKey as exc:
        raise RecordError(path, line, exc.key, "given twice in one object (which one is meant?)") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of repeated keys: {"target": 0, "target": 1} would read as 1 without a word.
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


def iter_records(
    paths: PathsLike, on_error: OnError = "raise", report: ReadReport | None = None, labels_required: bool = True
) -> Iterator[CodeRecord]:
    """Stream validated records line by line; with ``on_error="skip"`` bad lines go to ``report``.

    Files are read as bytes and decoded per line so a non-UTF-8 byte is reported with its line.
    Ids must be unique across all files read together (later stages join on them).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    report = report if report is not None else ReadReport()
    first_seen: dict[str, str] = {}
    for path in expand_paths(paths):
        report.files.append(str(path))
        skipped_before = report.skipped_count
        non_blank = 0
        try:
            with open(path, "rb") as fh:
                for lineno, raw in enumerate(fh, start=1):
                    report.lines_read += 1
                    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                        raw = raw[3:]
                    if not raw.strip():
                        report.blank_lines += 1
                        continue
                    non_blank += 1
                    try:
                        rec = record_from_dict(_decode_line(raw, path, lineno), path, lineno, labels_required)
                        if rec.id in first_seen:
                            raise RecordError(path, lineno, "id", f"duplicate id {rec.id!r} (first at {first_seen[rec.id]})")
                    except RecordError as err:
                        if on_error == "raise":
                            raise
                        report.skipped.append(err.to_dict())
                        continue
                    first_seen[rec.id] = rec.source
                    report.records_kept += 1
                    yield rec
            if non_blank == 0:
                err = RecordError(path, 0, None, "empty file: no records")
                if on_error == "raise":
                    raise err
                report.skipped.append(err.to_dict())
        finally:
            n = report.skipped_count - skipped_before
            if n:
                kinds = Counter(s["field"] or s["reason"].split(":")[0] for s in report.skipped[skipped_before:])
                detail = ", ".join(f"{k}: {c}" for k, c in sorted(kinds.items()))
                first = report.skipped[skipped_before]
                warnings.warn(
                    f"{path}: skipped {n} bad line(s) ({detail}); first at line {first['line']}: {first['reason']}",
                    RecordSkipWarning,
                    stacklevel=2,
                )


def read_records(
    paths: PathsLike,
    on_error: OnError = "raise",
    dedupe: bool = True,
    drop_conflicts: bool = True,
    limit: int | None = None,
    labels_required: bool = True,
) -> tuple[list[CodeRecord], ReadReport]:
    """Read all records, then dedupe / drop conflicting texts; the report counts every removal.

    ``limit`` stops after that many valid records (before deduplication), for quick runs.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    report = ReadReport()
    records: list[CodeRecord] = []
    for rec in iter_records(paths, on_error=on_error, report=report, labels_required=labels_required):
        records.append(rec)
        if limit is not None and len(records) >= limit:
            break
    if dedupe or drop_conflicts:
        records, report.duplicates_removed, report.conflicts_removed = _dedupe(records, dedupe, drop_conflicts)
    report.records_kept = len(records)
    return records, report


# ----------------------------------------------------------------------------- dedupe & fingerprints


def normalize_code(text: str) -> str:
    """Whitespace-insensitive key: the text with all whitespace removed."""
    return "".join(text.split())


def _code_key(text: str) -> bytes:
    # A digest instead of the normalised text keeps memory flat on large corpora.
    # surrogatepass: text read with surrogateescape (or a JSON "\\udce9") holds lone surrogates
    return hashlib.blake2b(normalize_code(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _dedupe(
    records: Sequence[CodeRecord], remove_duplicates: bool, drop_conflicts: bool
) -> tuple[list[CodeRecord], int, int]:
    keys = [_code_key(r.func) for r in records]
    labels: dict[bytes, set[int]] = {}
    for k, r in zip(keys, records):
        labels.setdefault(k, set()).add(r.target)
    kept: list[CodeRecord] = []
    seen: set[tuple[bytes, int]] = set()
    dups = conflicts = 0
    for k, r in zip(keys, records):
        if drop_conflicts and len(labels[k]) > 1:
            conflicts += 1
        elif remove_duplicates and (k, r.target) in seen:
            dups += 1
        else:
            seen.add((k, r.target))
            kept.append(r)
    return kept, dups, conflicts


def dedupe_records(
    records: Sequence[CodeRecord], drop_conflicts: bool = True
) -> tuple[list[CodeRecord], int, int]:
    """Keep the first of each whitespace-insensitive text; drop texts seen with both labels.

    Returns (kept, duplicates_removed, conflicts_removed); every input record is in exactly one
    of the three. Without ``drop_conflicts`` a text seen with both labels is kept once per label.
    """
    return _dedupe(records, True, drop_conflicts)


def records_fingerprint(records: Sequence[CodeRecord]) -> str:
    """sha256 over (id, target, func) of each record, in order: a cache key for derived data."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.id, r.target, r.func], ensure_ascii=False).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def files_fingerprint(paths: PathsLike) -> str:
    """sha256 over the names and contents of the files (streamed), independent of their folder."""
    h = hashlib.sha256()
    for path in expand_paths(paths):
        h.update(f"{path.name}\0{path.stat().st_size}\0".encode("utf-8"))
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def label_counts(records: Iterable[CodeRecord]) -> dict[int, int]:
    """{0: n_negative, 1: n_positive}; both keys always present."""
    counts = {0: 0, 1: 0}
    for r in records:
        counts[r.target] += 1
    return counts


# ----------------------------------------------------------------------------- splits


def _group_key(value: Any, index: int) -> str:
    # A record without the field is its own group; JSON text makes lists/dicts usable as keys.
    if value is None or value == "":
        return f"\0solo:{index}"
    return json.dumps(value, sort_keys=True, default=str)


GroupField = Union[str, Sequence[str]]


def group_value(record: CodeRecord, group_field: GroupField) -> Any:
    """The record's group: its `group_field` value, or with a list of fields the first one it has.

    A list is for data whose group key comes in more than one field, as Devign's commit: `commit_id`
    where an exact match was found, `commit_id_guess` where a fuzzy one was (never both). Grouped by
    the first alone, the records with only a guess were ungrouped, and a quarter of a carved val split
    shared a commit (and, 92% of the time, the label) with train.
    """
    for name in (group_field,) if isinstance(group_field, str) else group_field:  # checked once by the caller
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


def group_fields(group_field: GroupField) -> list[str]:
    """The field names of a `group_field` setting; anything else is an OptionError."""
    fields = [group_field] if isinstance(group_field, str) else list(group_field)
    if not fields or not all(isinstance(f, str) and f for f in fields):
        raise OptionError(f"data.group_field must be a field name or a non-empty list of field names, "
                          f"got {group_field!r}")
    return fields


def _describe(group_field: GroupField) -> str:
    return repr(group_field) if isinstance(group_field, str) else repr(list(group_field))


def check_group_field(records: Sequence[CodeRecord], group_field: GroupField) -> None:
    """A misspelt group field would make every record its own group: an ungrouped split that leaks."""
    group_fields(group_field)
    missing = [r for r in records if group_value(r, group_field) is None]
    if len(missing) == len(records):
        seen = sorted({k for r in records[:1000] for k in r.meta})
        has = "this field" if isinstance(group_field, str) else "any of these fields"
        raise OptionError(f"group_field {_describe(group_field)}: no record has {has} (fields of the records: "
                         f"{', '.join(seen) or 'none besides id, func, target, lang'}); the split would not be grouped")
    if missing:
        warnings.warn(f"group_field {_describe(group_field)}: {len(missing)} of {len(records)} records lack it (first: "
                      f"{missing[0].source or missing[0].id}); each of those is a group of its own", stacklevel=3)


def shared_groups(first: Sequence[CodeRecord], other: Sequence[CodeRecord], group_field: GroupField) -> tuple[int, int]:
    """(groups, records of `other`) whose group value occurs in `first` too: given split files
    that a grouped split would have kept apart."""
    keys = {_group_key(v, -1) for v in (group_value(r, group_field) for r in first) if v is not None}
    hits = [k for k in (_group_key(v, -1) for v in (group_value(r, group_field) for r in other) if v is not None)
            if k in keys]
    return len(set(hits)), len(hits)


def _assign(
    records: Sequence[CodeRecord], fractions: Sequence[float], group_field: GroupField | None, seed: int
) -> list[int]:
    """Part index per record: greedy, largest group first, to the part whose label quota is most unfilled."""
    if group_field is not None and records:
        check_group_field(records, group_field)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        key = f"\0solo:{i}" if group_field is None else _group_key(group_value(r, group_field), i)
        groups.setdefault(key, []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)  # seed decides ties between equal-sized groups
    order.sort(key=len, reverse=True)

    totals = label_counts(records)
    quota = [[f * totals[0], f * totals[1]] for f in fractions]
    filled = [[0, 0] for _ in fractions]
    parts = [i for i, f in enumerate(fractions) if f > 0]
    assignment = [0] * len(records)
    for members in order:
        g = [0, 0]
        for i in members:
            g[records[i].target] += 1

        def room(s: int) -> float:
            # Unfilled share of each label's quota, weighted by how many of that label the group holds.
            return sum(g[l] * (quota[s][l] - filled[s][l]) / quota[s][l] for l in (0, 1) if quota[s][l] > 0)

        best = max(parts, key=room)  # max() keeps the first of equals: deterministic
        filled[best][0] += g[0]
        filled[best][1] += g[1]
        for i in members:
            assignment[i] = best
    return assignment


def split_records(
    records: Sequence[CodeRecord],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    group_field: GroupField | None = None,
    seed: int = 42,
) -> dict[str, list[CodeRecord]]:
    """Label-stratified train/val/test split; with ``group_field`` a group never straddles splits.

    Records keep their input order within each split. A fraction of 0 gives an empty split.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions!r}")
    out: dict[str, list[CodeRecord]] = {name: [] for name in SPLIT_NAMES}
    for rec, part in zip(records, _assign(records, fractions, group_field, seed)):
        out[SPLIT_NAMES[part]].append(rec)
    return out


def kfold_records(
    records: Sequence[CodeRecord], k: int = 5, group_field: GroupField | None = None, seed: int = 42
) -> list[tuple[list[CodeRecord], list[CodeRecord]]]:
    """Stratified (and grouped) k-fold: list of (train, val); each record is in exactly one val fold."""
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    assignment = _assign(records, [1.0 / k] * k, group_field, seed)
    folds: list[tuple[list[CodeRecord], list[CodeRecord]]] = []
    for fold in range(k):
        val = [r for r, a in zip(records, assignment) if a == fold]
        if not val:
            what = f"groups of {_describe(group_field)}" if group_field else "records"
            raise OptionError(f"k={k} folds need at least {k} {what} ({len(records)} records); fold {fold} is empty")
        folds.append(([r for r, a in zip(records, assignment) if a != fold], val))
    return folds


# ----------------------------------------------------------------------------- writing


def write_records_jsonl(records: Iterable[CodeRecord | dict], path: str | os.PathLike) -> Path:
    """Write one JSON object per line, atomically (temp file + rename), streaming the records."""
    with atomic_open(path) as fh:
        for rec in records:
            obj = rec.to_dict() if isinstance(rec, CodeRecord) else rec
            fh.write(json.dumps(safe_jsonify(obj), ensure_ascii=False, allow_nan=False).encode("utf-8"))
            fh.write(b"\n")
    return Path(path)
