"""Tests for streamguard_pl.jsonsafe: conversion, strict validation, atomic writes under SIGKILL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from streamguard_pl import jsonsafe
from streamguard_pl.jsonsafe import (
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    read_json,
    safe_jsonify,
    validate_json_safe,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass
class Inner:
    path: Path
    scores: tuple


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    tags: set


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


def test_safe_jsonify_converts_every_supported_type():
    obj = {
        "t0": torch.tensor(3.5),
        "t1": torch.tensor([1, 2, 3]),
        "tbf16": torch.tensor([0.5, float("nan")], dtype=torch.bfloat16, requires_grad=True) * 1,
        "np_scalar": np.float32(0.25),
        "np_int": np.int64(7),
        "np_bool": np.bool_(True),
        "np_array": np.array([[1.0, np.inf], [2.0, 3.0]]),
        "path": Path("/tmp/x"),
        "when": dt.datetime(2024, 1, 2, 3, 4, 5),
        "day": dt.date(2024, 1, 2),
        "dc": Outer("o", Inner(Path("a/b"), (1, 2)), {3, 1, 2}),
        "color": Color.RED,
        "nan": float("nan"),
        "ninf": -math.inf,
        1: "int key",
        Color.BLUE: "enum key",
        "opaque": Opaque(),
        "bytes": b"abc",
        "nested": [({"x": np.nan},)],
    }
    out = safe_jsonify(obj)
    assert out == {
        "t0": 3.5,
        "t1": [1, 2, 3],
        "tbf16": [0.5, None],
        "np_scalar": 0.25,
        "np_int": 7,
        "np_bool": True,
        "np_array": [[1.0, None], [2.0, 3.0]],
        "path": "/tmp/x",
        "when": "2024-01-02T03:04:05",
        "day": "2024-01-02",
        "dc": {"name": "o", "inner": {"path": "a/b", "scores": [1, 2]}, "tags": [1, 2, 3]},
        "color": "red",
        "nan": None,
        "ninf": None,
        "1": "int key",
        "2": "enum key",
        "opaque": "opaque!",
        "bytes": "abc",
        "nested": [[{"x": None}]],
    }
    assert type(out["np_int"]) is int and type(out["np_scalar"]) is float
    validate_json_safe(out)
    json.dumps(out, allow_nan=False)


def test_safe_jsonify_survives_a_cycle():
    a: list = [1]
    a.append(a)
    assert safe_jsonify(a) == [1, "<circular reference>"]


@pytest.mark.parametrize(
    ("obj", "exc", "where"),
    [
        ({"a": [0, 1, 2, {"b": float("nan")}]}, ValueError, "$.a[3].b"),
        ({"a": {"weird key": [math.inf]}}, ValueError, '$.a["weird key"][0]'),
        ({"a": {1: "x"}}, TypeError, "$.a: key 1"),
        ([None, True, {"t": torch.tensor(1.0)}], TypeError, "$[2].t"),
        ({"p": Path("x")}, TypeError, "$.p"),
    ],
)
def test_validate_json_safe_names_the_path(obj, exc, where):
    with pytest.raises(exc) as info:
        validate_json_safe(obj)
    assert str(info.value).startswith(where)


def test_validate_json_safe_accepts_strict_json():
    validate_json_safe({"a": [1, 2.5, "s", None, True, {"b": []}], "c": (1, 2)})


def test_atomic_write_json_round_trip_dirs_mode_and_no_leftovers(tmp_path):
    target = tmp_path / "deep" / "er" / "meta.json"
    atomic_write_json(target, {"loss": np.float64(0.5), "bad": float("nan"), "ü": "ß"})
    assert read_json(target) == {"loss": 0.5, "bad": None, "ü": "ß"}
    assert target.read_text(encoding="utf-8").endswith("\n") and '"ü"' in target.read_text(encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    target.chmod(0o600)
    atomic_write_text(target, "[]")
    assert target.stat().st_mode & 0o777 == 0o600  # an existing file keeps its mode
    assert os.listdir(target.parent) == ["meta.json"]


def test_failed_write_leaves_old_content_and_no_temp_file(tmp_path):
    target = tmp_path / "keep.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write(b'{"v": 2, "trunc')
            raise RuntimeError("crash mid-write")
    assert read_json(target) == {"v": 1}
    assert os.listdir(tmp_path) == ["keep.json"]


def test_read_json_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n  oops}')
    with pytest.raises(json.JSONDecodeError, match=r"bad\.json: .*line 2"):
        read_json(bad)


# ----------------------------------------------------------------------------- atomicity under SIGKILL

WRITER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("jsonsafe_under_test", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
target, naive = sys.argv[2], sys.argv[3] == "naive"
for i in range(1, 20001):  # successively bigger documents; the test kills us long before the end
    doc = {"i": i, "data": list(range(i * 20))}
    if naive:
        open(target, "w").write(json.dumps(doc))
    else:
        mod.atomic_write_json(target, doc, indent=None)
"""


def _start_writer(target: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, jsonsafe.__file__, str(target), mode])


def _read_once(target: Path) -> int | None:
    """The document's ``i`` if the file holds one complete document, else None (torn)."""
    text = target.read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    assert doc["data"] == list(range(doc["i"] * 20))  # parsed but mixed from two versions?
    return doc["i"]


def _wait_for(target: Path, proc: subprocess.Popen, mtime_after: float = 0.0) -> None:
    deadline = time.monotonic() + 30
    while not (target.exists() and target.stat().st_mtime_ns > mtime_after):
        assert proc.poll() is None, "writer died on its own"
        assert time.monotonic() < deadline, "writer never wrote"
        time.sleep(0.005)


def test_atomic_write_json_is_never_torn_even_when_killed(tmp_path):
    target = tmp_path / "live.json"
    rng = random.Random(0)
    reads, versions, torn = 0, set(), 0
    for _ in range(4):
        proc = _start_writer(target, "atomic")
        try:
            _wait_for(target, proc, target.stat().st_mtime_ns if target.exists() else 0)
            kill_at = time.monotonic() + rng.uniform(0.2, 0.7)  # a random moment mid-stream
            while time.monotonic() < kill_at:
                i = _read_once(target)
                reads += 1
                torn += i is None
                versions.add(i)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL  # really killed mid-way, not finished
        assert _read_once(target) is not None  # what the killed writer left is complete
    assert torn == 0
    assert reads > 50 and len(versions) > 20, (reads, len(versions))  # the reader really raced the writer


def test_naive_writer_does_tear_so_the_check_can_fail(tmp_path):
    target = tmp_path / "live.json"
    proc = _start_writer(target, "naive")
    torn = reads = 0
    try:
        _wait_for(target, proc)
        deadline = time.monotonic() + 10
        while torn == 0 and time.monotonic() < deadline:
            torn += _read_once(target) is None
            reads += 1
    finally:
        proc.kill()
        proc.wait()
    assert torn > 0, f"no torn read in {reads} reads"
