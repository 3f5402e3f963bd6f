"""Shared fixtures: an isolated cache, a tiny embedded corpus, tiny model configs, the shared data sets."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: A RoBERTa small enough for a CPU test step in milliseconds (vocab/pad come from the tokenizer).
TINY_ROBERTA = {
    "model_type": "roberta",
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 130,
}
TINY_GNN = {"hidden_dim": 16, "num_layers": 2, "token_buckets": 1024}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Tiny models on a 2-core machine: intra-op threads only contend (measured 100x slower when busy)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session caches graphs, tokens and the synthetic corpus in its own folder."""
    cache = tmp_path_factory.mktemp("sg_cache")
    os.environ["STREAMGUARD_CACHE_DIR"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 240-function embedded corpus (train/valid/test JSON Lines) written once per session."""
    from streamguard_pl.data.synthetic import write_synthetic_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    write_synthetic_corpus(out, n=240, seed=0, difficulty="hard")  # the corpus these tests were tuned on
    return out


@pytest.fixture
def tiny_roberta() -> dict:
    return dict(TINY_ROBERTA)


@pytest.fixture
def tiny_gnn() -> dict:
    return dict(TINY_GNN)


@pytest.fixture(scope="session")
def juliet_dir() -> Path:
    from streamguard_pl.locations import juliet_dir as where

    path = where()
    if not any(path.glob("train-*.jsonl")):
        pytest.skip(f"Juliet data not found at {path} (set STREAMGUARD_JULIET_DIR)")
    return path


@pytest.fixture(scope="session")
def devign_dir() -> Path:
    from streamguard_pl.locations import devign_dir as where

    path = where()
    if not any(path.glob("train-*.jsonl")):
        pytest.skip(f"Devign data not found at {path} (set STREAMGUARD_DEVIGN_DIR)")
    return path
