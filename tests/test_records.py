"""Tests for streamguard_pl.data.records: validation messages, skip policy, dedupe, splits."""

from __future__ import annotations

import json
import random
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamguard_pl.data.records import (
    CodeRecord,
    ReadReport,
    RecordError,
    RecordSkipWarning,
    dedupe_records,
    expand_paths,
    files_fingerprint,
    iter_records,
    kfold_records,
    label_counts,
    normalize_code,
    read_records,
    record_from_dict,
    records_fingerprint,
    split_records,
    write_records_jsonl,
)
from streamguard_pl.locations import juliet_dir

GOOD = {"id": "a", "func": "int f(void) { return 0; }", "target": 0}


def write_lines(path: Path, lines: list[str | bytes | dict]) -> Path:
    """Write raw lines (dicts as JSON) so that tests control every byte."""
    out = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        out += (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n"
    path.write_bytes(out)
    return path


def rec(i: int, target: int, func: str | None = None, **meta) -> CodeRecord:
    return CodeRecord(id=f"r{i}", func=func or f"int f{i}(void) {{ return {i}; }}", target=target, meta=meta)


# ----------------------------------------------------------------------------- reading


def test_reads_fields_meta_source_and_fallback_id(tmp_path):
    path = write_lines(
        tmp_path / "part-07.jsonl",
        [
            {"id": "x1", "func": "void a() {}", "target": 1, "lang": "CPP", "project": "qemu", "cwe": "CWE-121"},
            "",
            {"func": "void b() {}", "target": "0", "commit_id": "abc"},
            {"idx": 42, "func": "void c() {}", "target": True},
        ],
    )
    recs = list(iter_records(path))
    assert [r.id for r in recs] == ["x1", "part-07:3", "42"]
    assert [r.target for r in recs] == [1, 0, 1]
    assert recs[0].lang == "cpp" and recs[1].lang is None
    assert recs[0].meta == {"project": "qemu", "cwe": "CWE-121"}
    assert recs[0].source == f"{path}:1" and recs[1].source == f"{path}:3"
    assert recs[0].get("target") == 1 and recs[0].get("project") == "qemu"
    assert recs[1].get("commit_id") == "abc" and recs[1].get("nope", "dflt") == "dflt"
    assert recs[2].meta == {"idx": 42}


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0), (1, 1), ("0", 0), ("1", 1), (True, 1), (False, 0)]
)
def test_accepted_target_spellings(tmp_path, value, expected):
    path = write_lines(tmp_path / "t.jsonl", [{"func": "int x;", "target": value}])
    assert next(iter_records(path)).target == expected


BAD_LINES = [
    ("malformed json", b'{"func": "int x;", "target": 1', None, "invalid JSON"),
    ("not an object", b'[1, 2]', None, "not a JSON object"),
    ("non utf-8", b'{"func": "int \xff x;", "target": 1}', None, "UTF-8"),
    ("missing func", b'{"target": 1}', "func", "missing"),
    ("empty func", b'{"func": "", "target": 1}', "func", "empty"),
    ("blank func", b'{"func": " \\n\\t ", "target": 1}', "func", "empty"),
    ("func not str", b'{"func": 7, "target": 1}', "func", "string"),
    ("target 2", b'{"func": "int x;", "target": 2}', "target", "2"),
    ("target yes", b'{"func": "int x;", "target": "yes"}', "target", "yes"),
    ("target 0.5", b'{"func": "int x;", "target": 0.5}', "target", "0.5"),
    ("target 1.0", b'{"func": "int x;", "target": 1.0}', "target", "1.0"),
    ("target null", b'{"func": "int x;", "target": null}', "target", "None"),
    ("target missing", b'{"func": "int x;"}', "target", "missing"),
    ("bad lang", b'{"func": "int x;", "target": 1, "lang": "java"}', "lang", "java"),
    ("bad id", b'{"id": [1], "func": "int x;", "target": 1}', "id", "[1]"),
    ("duplicate id", b'{"id": "a", "func": "int y;", "target": 1}', "id", "duplicate"),
]


@pytest.mark.parametrize(("case", "raw", "field", "needle"), BAD_LINES, ids=[c[0] for c in BAD_LINES])
def test_each_validation_error_names_file_line_field(tmp_path, case, raw, field, needle):
    path = write_lines(tmp_path / "broken.jsonl", [GOOD, b"", raw, GOOD | {"id": "b"}])
    with pytest.raises(RecordError) as info:
        list(iter_records(path))
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    msg = str(err)
    assert msg.startswith(f"{path}:3: ")
    assert needle in msg
    if field:
        assert f"field '{field}'" in msg


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_empty_file_is_an_error_naming_the_file(tmp_path, content):
    good = write_lines(tmp_path / "a.jsonl", [GOOD])
    empty = tmp_path / "b.jsonl"
    empty.write_bytes(content)
    with pytest.raises(RecordError, match=r"b\.jsonl: empty file") as info:
        read_records([good, empty])
    assert info.value.path == str(empty)


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n" + json.dumps(GOOD | {"id": "b"}).encode() + b"\r\n")
    assert [r.id for r in iter_records(path)] == ["a", "b"]


def test_skip_policy_counts_every_bad_line_and_warns_once_per_file(tmp_path):
    f1 = write_lines(
        tmp_path / "one.jsonl",
        [GOOD, b'{"func": "x", "target": 3}', b"{oops", GOOD | {"id": "b", "func": "int b;"}, b'{"target": 1}'],
    )
    f2 = write_lines(tmp_path / "two.jsonl", [GOOD | {"id": "c", "func": "int c;"}, b'{"func": "", "target": 0}'])
    f3 = write_lines(tmp_path / "three.jsonl", [GOOD | {"id": "d", "func": "int d;"}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs, report = read_records([f1, f2, f3], on_error="skip")
    assert [r.id for r in recs] == ["a", "b", "c", "d"]
    assert report.skipped_count == 4 and report.records_kept == 4 and report.lines_read == 8
    assert [(Path(s["path"]).name, s["line"], s["field"]) for s in report.skipped] == [
        ("one.jsonl", 2, "target"),
        ("one.jsonl", 3, None),
        ("one.jsonl", 5, "func"),
        ("two.jsonl", 2, "func"),
    ]
    skip_warnings = [w for w in caught if issubclass(w.category, RecordSkipWarning)]
    assert len(skip_warnings) == 2  # one per file with skips, none for three.jsonl
    assert "one.jsonl: skipped 3" in str(skip_warnings[0].message)
    assert "two.jsonl: skipped 1" in str(skip_warnings[1].message)
    summary = report.summary()
    assert summary.startswith("read 3 files, 8 lines: kept 4, skipped 4 (")
    assert "bad func: 2" in summary and "bad target: 1" in summary and "invalid JSON: 1" in summary
    assert json.loads(json.dumps(report.to_dict()))["skipped_count"] == 4


def test_skip_policy_counts_an_empty_file(tmp_path):
    good = write_lines(tmp_path / "a.jsonl", [GOOD])
    (tmp_path / "b.jsonl").write_bytes(b"")
    with pytest.warns(RecordSkipWarning, match="b.jsonl"):
        recs, report = read_records(tmp_path / "*.jsonl", on_error="skip")
    assert len(recs) == 1 and report.skipped == [
        {"path": str(tmp_path / "b.jsonl"), "line": 0, "field": None, "reason": "empty file: no records"}
    ]


def test_on_error_must_be_known(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [GOOD])
    with pytest.raises(ValueError, match="on_error"):
        list(iter_records(path, on_error="ignore"))


def test_limit_stops_early(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [{"id": str(i), "func": f"int v{i};", "target": i % 2} for i in range(50)])
    recs, report = read_records(path, limit=7)
    assert [r.id for r in recs] == [str(i) for i in range(7)] and report.lines_read == 7


# ----------------------------------------------------------------------------- paths


def test_expand_paths_globs_folders_and_order(tmp_path):
    for name in ["b-1.jsonl", "b-0.jsonl", "a-0.jsonl", "notes.txt"]:
        write_lines(tmp_path / name, [GOOD])
    got = expand_paths([tmp_path / "b-*.jsonl", str(tmp_path / "a-0.jsonl"), tmp_path / "b-0.jsonl"])
    assert [p.name for p in got] == ["b-0.jsonl", "b-1.jsonl", "a-0.jsonl"]  # pattern order kept, repeat dropped
    assert [p.name for p in expand_paths(tmp_path)] == ["a-0.jsonl", "b-0.jsonl", "b-1.jsonl"]
    with pytest.raises(FileNotFoundError, match=r"c-\*\.jsonl"):
        expand_paths([tmp_path / "a-0.jsonl", str(tmp_path / "c-*.jsonl")])
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        expand_paths(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError):
        expand_paths([])


# ----------------------------------------------------------------------------- dedupe & fingerprints


def test_normalize_code_ignores_all_whitespace():
    assert normalize_code("int  f ( )\n{\treturn 1; }") == normalize_code("intf(){return 1;}".replace(" ", "")) == "intf(){return1;}"


def test_dedupe_counts_duplicates_and_conflicts():
    records = [
        rec(0, 1, "int a() { return 1; }"),
        rec(1, 1, "int a()\n{\n  return 1;\n}"),  # whitespace duplicate of r0
        rec(2, 0, "int b() {}"),
        rec(3, 1, "int  b()  {}"),  # conflicts with r2
        rec(4, 0, "int b(){}"),  # third copy of the conflicting text
        rec(5, 0, "int c() {}"),
    ]
    kept, dups, conflicts = dedupe_records(records)
    assert [r.id for r in kept] == ["r0", "r5"] and (dups, conflicts) == (1, 3)
    kept, dups, conflicts = dedupe_records(records, drop_conflicts=False)
    assert [r.id for r in kept] == ["r0", "r2", "r3", "r5"] and (dups, conflicts) == (2, 0)


def test_read_records_reports_dedupe(tmp_path):
    rows = [{"id": r.id, "func": r.func, "target": r.target} for r in [
        rec(0, 1, "int a;"), rec(1, 1, "int  a;"), rec(2, 0, "int b;"), rec(3, 1, "int b ;"), rec(4, 0, "int c;")
    ]]
    path = write_lines(tmp_path / "d.jsonl", rows)
    recs, report = read_records(path)
    assert [r.id for r in recs] == ["r0", "r4"]
    assert (report.records_kept, report.duplicates_removed, report.conflicts_removed) == (2, 1, 2)
    assert report.summary() == "read 1 files, 5 lines: kept 2, skipped 0, 1 duplicates, 2 conflicting"
    recs, report = read_records(path, dedupe=False)  # conflicts still dropped, duplicates kept
    assert [r.id for r in recs] == ["r0", "r1", "r4"] and report.duplicates_removed == 0
    recs, _ = read_records(path, dedupe=False, drop_conflicts=False)
    assert len(recs) == 5


def test_records_fingerprint_is_order_and_label_sensitive():
    a, b = rec(0, 0), rec(1, 1)
    fp = records_fingerprint([a, b])
    assert len(fp) == 64 and fp == records_fingerprint([rec(0, 0), rec(1, 1)])
    assert fp != records_fingerprint([b, a])
    assert fp != records_fingerprint([a, rec(1, 0, b.func)])


def test_files_fingerprint_follows_content_not_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    p1 = write_lines(tmp_path / "x" / "d.jsonl", [GOOD])
    p2 = write_lines(tmp_path / "y" / "d.jsonl", [GOOD])
    assert files_fingerprint(p1) == files_fingerprint(p2)
    write_lines(p2, [GOOD | {"target": 1}])
    assert files_fingerprint(p1) != files_fingerprint(p2)


def test_write_records_jsonl_round_trip(tmp_path):
    records = [
        CodeRecord("r0", "int a;", 1, "c", {"project": "p", "cwe": "CWE-1"}),
        CodeRecord("r1", "int b;\n// ü", 0, None, {"commit_id": "abc"}),
    ]
    out = write_records_jsonl(records, tmp_path / "sub" / "out.jsonl")
    back = list(iter_records(out))
    assert [(r.id, r.func, r.target, r.lang, r.meta) for r in back] == [
        (r.id, r.func, r.target, r.lang, r.meta) for r in records
    ]
    out2 = write_records_jsonl([{"id": "p0", "prob": np.float32(0.25), "func": "x", "target": 1}], tmp_path / "p.jsonl")
    assert json.loads(out2.read_text()) == {"id": "p0", "prob": 0.25, "func": "x", "target": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "sub"]  # no temp files left


def test_code_record_checks_its_label_and_is_hashable():
    assert CodeRecord("a", "x", np.int64(1)).target == 1
    with pytest.raises(ValueError, match="0 or 1"):
        CodeRecord("a", "x", 2)
    with pytest.raises(TypeError):
        CodeRecord("a", "x", 0.5)
    assert len({CodeRecord("a", "x", 1, meta={"k": [1]}), CodeRecord("a", "x", 1, meta={"k": [1]})}) == 1
    with pytest.raises(RecordError, match=r"<dict>: field 'target'"):
        record_from_dict({"func": "x", "target": 9})


# ----------------------------------------------------------------------------- splits


def grouped_corpus(n_groups: int = 80, seed: int = 0) -> list[CodeRecord]:
    """Groups of 1..15 records with mixed labels (~40% positive), some without a group."""
    rng = random.Random(seed)
    out: list[CodeRecord] = []
    for g in range(n_groups):
        for _ in range(rng.randint(1, 15)):
            i = len(out)
            meta = {"group": f"g{g}"} if g % 10 else {}  # every tenth group has no field: solo records
            out.append(rec(i, int(rng.random() < 0.4), **meta))
    return out


def assert_no_straddle(parts: list[list[CodeRecord]], field: str) -> None:
    owner: dict[str, int] = {}
    for k, part in enumerate(parts):
        for r in part:
            value = r.get(field)
            if value is not None:
                assert owner.setdefault(value, k) == k, f"group {value} in parts {owner[value]} and {k}"


def test_split_grouped_never_straddles_and_keeps_ratio():
    records = grouped_corpus()
    overall = label_counts(records)[1] / len(records)
    splits = split_records(records, (0.8, 0.1, 0.1), group_field="group", seed=3)
    assert list(splits) == ["train", "val", "test"]
    assert sorted(r.id for s in splits.values() for r in s) == sorted(r.id for r in records)
    assert_no_straddle(list(splits.values()), "group")
    for name, frac in zip(splits, (0.8, 0.1, 0.1)):
        part = splits[name]
        assert abs(len(part) / len(records) - frac) < 0.04, name
        assert abs(label_counts(part)[1] / len(part) - overall) < 0.06, name
    order = {r.id: i for i, r in enumerate(records)}
    assert all(order[a.id] < order[b.id] for a, b in zip(splits["val"], splits["val"][1:]))


def test_a_group_field_no_record_has_is_an_error_and_a_partial_one_a_warning():
    records = grouped_corpus()
    with pytest.raises(ValueError, match=r"group_field 'grup': no record has this field \(fields of the records: group\)"):
        split_records(records, group_field="grup")  # a typo would leak: every record its own group
    with pytest.raises(ValueError, match="no record has this field"):
        kfold_records(records, k=3, group_field="commit_id")
    lacking = sum(r.get("group") is None for r in records)  # every tenth group has no field
    assert 0 < lacking < len(records)
    with pytest.warns(UserWarning, match=f"group_field 'group': {lacking} of {len(records)} records lack it"):
        splits = split_records(records, group_field="group")
    assert sum(map(len, splits.values())) == len(records)


def test_split_ungrouped_is_stratified_almost_exactly():
    rng = random.Random(1)
    records = [rec(i, int(rng.random() < 0.3)) for i in range(1000)]
    counts = label_counts(records)
    splits = split_records(records, (0.7, 0.2, 0.1), seed=0)
    for name, frac in zip(splits, (0.7, 0.2, 0.1)):
        got = label_counts(splits[name])
        assert abs(got[1] - frac * counts[1]) <= 1 and abs(got[0] - frac * counts[0]) <= 1, (name, got)


def test_split_is_deterministic_by_seed():
    records = grouped_corpus()
    ids = lambda s: {k: [r.id for r in v] for k, v in s.items()}  # noqa: E731
    a = ids(split_records(records, group_field="group", seed=7))
    assert a == ids(split_records(records, group_field="group", seed=7))
    assert a != ids(split_records(records, group_field="group", seed=8))


def test_split_zero_fraction_and_bad_fractions():
    records = grouped_corpus()
    splits = split_records(records, (0.9, 0.1, 0.0), group_field="group")
    assert splits["test"] == [] and len(splits["train"]) + len(splits["val"]) == len(records)
    for bad in [(0.5, 0.5, 0.5), (1.2, -0.1, -0.1), (0.5, 0.5)]:
        with pytest.raises(ValueError, match="fractions"):
            split_records(records, bad)


def test_kfold_covers_each_record_once_grouped_and_stratified():
    records = grouped_corpus(n_groups=100)
    overall = label_counts(records)[1] / len(records)
    folds = kfold_records(records, k=5, group_field="group", seed=1)
    assert len(folds) == 5
    seen = Counter(r.id for _, val in folds for r in val)
    assert set(seen) == {r.id for r in records} and set(seen.values()) == {1}
    for train, val in folds:
        assert len(train) + len(val) == len(records)
        assert not {r.id for r in train} & {r.id for r in val}
        assert_no_straddle([train, val], "group")
        assert abs(len(val) / len(records) - 0.2) < 0.04
        assert abs(label_counts(val)[1] / len(val) - overall) < 0.07
    with pytest.raises(ValueError, match="at least 5"):
        kfold_records([rec(i, i % 2, group="same") for i in range(20)], k=5, group_field="group")


JULIET = juliet_dir()


@pytest.mark.skipif(not (JULIET / "valid-00.jsonl").exists(), reason="Juliet data not available")
def test_juliet_valid_group_split_never_straddles():
    records, report = read_records(JULIET / "valid-*.jsonl")
    assert report.records_kept == len(records) == 6922 and report.skipped_count == 0
    splits = split_records(records, group_field="group", seed=42)
    assert_no_straddle(list(splits.values()), "group")
    overall = label_counts(records)[1] / len(records)
    for name in splits:
        assert abs(label_counts(splits[name])[1] / len(splits[name]) - overall) < 0.03, name


@pytest.mark.skipif(not (JULIET / "train-00.jsonl").exists(), reason="Juliet data not available")
def test_juliet_train_split_count():
    records, report = read_records(JULIET / "train-*.jsonl")
    assert len(report.files) == 14
    assert len(records) == 55_229 and label_counts(records)[1] == 28_712
    assert (report.duplicates_removed, report.conflicts_removed, report.skipped_count) == (0, 0, 0)


def test_read_report_defaults():
    report = ReadReport()
    assert report.skipped_count == 0
    assert report.summary() == "read 0 files, 0 lines: kept 0, skipped 0, 0 duplicates, 0 conflicting"
