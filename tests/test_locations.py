"""Tests for streamguard_pl.locations: defaults next to the checkout, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamguard_pl
from streamguard_pl import locations

ENV = ["STREAMGUARD_DATA_DIR", "STREAMGUARD_JULIET_DIR", "STREAMGUARD_DEVIGN_DIR", "STREAMGUARD_CACHE_DIR"]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_sit_next_to_the_checkout(clean_env, tmp_path):
    root = Path(streamguard_pl.__file__).resolve().parent.parent
    assert locations.repo_root() == root
    assert locations.shared_data_dir() == root.parent / "shared" / "data"
    assert locations.juliet_dir() == root.parent / "shared" / "data" / "juliet"
    assert locations.devign_dir() == root.parent / "shared" / "data" / "devign"
    clean_env.setenv("HOME", str(tmp_path))
    assert locations.default_cache_dir() == tmp_path / ".cache" / "streamguard_pl"


def test_data_dir_override_moves_both_datasets(clean_env, tmp_path):
    clean_env.setenv("STREAMGUARD_DATA_DIR", str(tmp_path))
    assert locations.shared_data_dir() == tmp_path
    assert locations.juliet_dir() == tmp_path / "juliet"
    assert locations.devign_dir() == tmp_path / "devign"


def test_each_dataset_and_cache_can_be_set_alone(clean_env, tmp_path):
    clean_env.setenv("STREAMGUARD_DATA_DIR", str(tmp_path / "data"))
    clean_env.setenv("STREAMGUARD_JULIET_DIR", str(tmp_path / "j"))
    clean_env.setenv("STREAMGUARD_DEVIGN_DIR", str(tmp_path / "d"))
    clean_env.setenv("STREAMGUARD_CACHE_DIR", str(tmp_path / "c"))
    assert locations.juliet_dir() == tmp_path / "j"
    assert locations.devign_dir() == tmp_path / "d"
    assert locations.default_cache_dir() == tmp_path / "c"
    assert locations.shared_data_dir() == tmp_path / "data"


def test_empty_variable_counts_as_unset_and_tilde_expands(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path))
    clean_env.setenv("STREAMGUARD_DATA_DIR", "  ")
    assert locations.shared_data_dir() == locations.repo_root().parent / "shared" / "data"
    clean_env.setenv("STREAMGUARD_CACHE_DIR", "~/sg-cache")
    assert locations.default_cache_dir() == tmp_path / "sg-cache"
