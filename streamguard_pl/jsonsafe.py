"""JSON that never breaks a run: convert anything to strict JSON, and write it atomically.

Metadata files (training_metadata.json, reports) are read while training is still running and
must survive a crash mid-write, so every write goes to a temp file that replaces the target in
one ``os.replace``: a reader sees the old document or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any, BinaryIO

import numpy as np

__all__ = ["safe_jsonify", "validate_json_safe", "atomic_write_json", "atomic_write_text", "atomic_open", "read_json"]

# Read once at import: os.umask can only be queried by setting it, which is not thread-safe later.
_UMASK = os.umask(0)
os.umask(_UMASK)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _is_tensor(obj: Any) -> bool:
    # Duck-typed so that importing this module does not import torch.
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach") and hasattr(obj, "tolist")


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, enum.Enum):
        return str(k.value)
    return str(k)


def safe_jsonify(obj: Any, _stack: frozenset[int] = frozenset()) -> Any:
    """Return a strict-JSON copy of ``obj`` (NaN/Inf -> None); never raises on odd types."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return safe_jsonify(obj.value, _stack)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):  # includes np.float64
        return float(obj) if math.isfinite(obj) else None
    if _is_tensor(obj):
        t = obj.detach().cpu()
        return safe_jsonify(t.item() if t.dim() == 0 else t.tolist(), _stack)
    if isinstance(obj, np.generic):
        return safe_jsonify(obj.item(), _stack)
    if isinstance(obj, np.ndarray):
        return safe_jsonify(obj.tolist(), _stack)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", errors="replace")
    if id(obj) in _stack:  # a container that contains itself
        return "<circular reference>"
    inner = _stack | {id(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: safe_jsonify(getattr(obj, f.name), inner) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {_key(k): safe_jsonify(v, inner) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [safe_jsonify(v, inner) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [safe_jsonify(v, inner) for v in obj]
        try:  # sets have no order; sort so that the file is reproducible
            items.sort()
        except TypeError:
            pass
        return items
    try:
        return str(obj)
    except Exception as exc:  # a broken __str__ must not lose the whole document
        return f"<unprintable {type(obj).__name__}: {exc!r}>"


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENT.match(key) else f"{path}[{json.dumps(key)}]"


def validate_json_safe(obj: Any, path: str = "$") -> None:
    """Raise TypeError/ValueError naming the JSON path of the first value strict JSON cannot hold.

    Catches what ``json.dumps`` would silently accept but not round-trip: NaN/Inf (written as
    bare ``NaN``), and non-string keys (turned into strings).
    """
    if obj is None or isinstance(obj, (bool, str, int)):
        return
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"{path}: {obj!r} is not valid JSON (NaN/Infinity)")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: key {k!r} ({type(k).__name__}) is not a string")
            validate_json_safe(v, _child(path, k))
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            validate_json_safe(v, f"{path}[{i}]")
        return
    raise TypeError(f"{path}: {type(obj).__module__}.{type(obj).__qualname__} is not JSON serializable")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Binary handle on a temp file that replaces ``path`` only if the block finishes.

    For writers that stream (JSON Lines); the temp file is fsynced before the rename, so after a
    crash ``path`` holds the old or the new content (a stray ``.name.*.tmp`` may remain).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK  # what open(path, "w") would have given; mkstemp uses 0600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) so that readers never see a partial file."""
    with atomic_open(path) as fh:
        fh.write(text.encode("utf-8"))
    return Path(path)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) everywhere.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """``safe_jsonify`` then write atomically; the file always holds strict JSON."""
    text = json.dumps(safe_jsonify(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file; a parse error names the file as well as line and column."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise json.JSONDecodeError(f"{path}: {exc.msg}", exc.doc, exc.pos) from None
