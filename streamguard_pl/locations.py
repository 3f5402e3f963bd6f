"""Where data and caches live, overridable by environment variables.

Data sets sit outside the repository (they are large and under their own licences), so the
defaults point next to the checkout and every location can be moved without editing configs.
Nothing here checks that a folder exists: callers report that with their own context.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "shared_data_dir", "juliet_dir", "devign_dir", "default_cache_dir"]


def _env_path(name: str) -> Path | None:
    # An empty variable counts as unset, so `VAR= cmd` does not point at the current folder.
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def repo_root() -> Path:
    """The folder holding the ``streamguard_pl`` package (the checkout)."""
    return Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """$STREAMGUARD_DATA_DIR, else ``<repo root>/../shared/data``."""
    return _env_path("STREAMGUARD_DATA_DIR") or repo_root().parent / "shared" / "data"


def juliet_dir() -> Path:
    """$STREAMGUARD_JULIET_DIR, else ``shared_data_dir()/juliet``."""
    return _env_path("STREAMGUARD_JULIET_DIR") or shared_data_dir() / "juliet"


def devign_dir() -> Path:
    """$STREAMGUARD_DEVIGN_DIR, else ``shared_data_dir()/devign``."""
    return _env_path("STREAMGUARD_DEVIGN_DIR") or shared_data_dir() / "devign"


def default_cache_dir() -> Path:
    """$STREAMGUARD_CACHE_DIR, else ``~/.cache/streamguard_pl``."""
    return _env_path("STREAMGUARD_CACHE_DIR") or Path.home() / ".cache" / "streamguard_pl"
