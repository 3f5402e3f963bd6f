"""Hardware defaults: every branch of the decision table, plus what this machine really resolves to."""
from __future__ import annotations

import json
import os

import pytest
import torch

from streamguard_pl import hardware
from streamguard_pl.hardware import (
    BATCH_SIZE_TABLE,
    describe_hardware,
    gpu_memory_gb,
    hardware_choices,
    resolve_batch_size,
    resolve_precision,
)

HAS_CUDA = torch.cuda.is_available()


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"),
    [(False, False, "32-true"), (True, True, "bf16-mixed"), (True, False, "16-mixed")],
)
def test_auto_precision_decision_table(cuda: bool, bf16: bool, expected: str) -> None:
    value, reason = hardware._choose_precision("auto", cuda, bf16)
    assert value == expected
    assert reason and reason != "set explicitly"


@pytest.mark.parametrize("explicit", ["16-mixed", "bf16-true", "64-true", "32"])
def test_explicit_precision_passes_through(explicit: str) -> None:
    assert resolve_precision(explicit) == explicit
    assert resolve_precision(explicit, accelerator="cpu") == explicit


def test_cpu_accelerator_always_full_precision() -> None:
    assert resolve_precision("auto", accelerator="cpu") == "32-true"
    assert resolve_precision("AUTO", accelerator="cpu") == "32-true"


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU-only machine")
def test_auto_precision_without_cuda() -> None:
    assert resolve_precision() == "32-true"
    assert resolve_precision("auto", accelerator="gpu") == "32-true"


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_auto_precision_on_cuda() -> None:
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert resolve_precision() == expected


@pytest.mark.parametrize(
    ("model_type", "memory", "expected"),
    [
        ("transformer", 80.0, 64), ("transformer", 40.0, 64), ("transformer", 39.9, 32),
        ("transformer", 16.0, 32), ("transformer", 15.9, 16), ("transformer", 0, 8),
        ("gnn", 80.0, 128), ("gnn", 24.0, 64), ("gnn", 8.0, 64), ("gnn", 0, 32),
        ("fusion", 42.4, 32), ("fusion", 17.1, 16), ("fusion", 12.0, 8), ("fusion", 0, 4),
    ],
)
def test_auto_batch_size_table(model_type: str, memory: float, expected: int) -> None:
    assert resolve_batch_size("auto", model_type, gpu_memory_gb=memory) == expected


def test_table_rows_shrink_with_memory() -> None:
    for model_type, row in BATCH_SIZE_TABLE.items():
        assert list(row) == sorted(row, reverse=True), model_type


def test_explicit_batch_size_passes_through() -> None:
    assert resolve_batch_size(12, "transformer", gpu_memory_gb=80.0) == 12
    assert resolve_batch_size("24", "unknown-model-type") == 24


@pytest.mark.parametrize("bad", [0, -3, "big", True, 2.5])
def test_bad_batch_size_is_rejected(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        resolve_batch_size(bad, "gnn", gpu_memory_gb=0)  # type: ignore[arg-type]


def test_unknown_model_type_names_the_choices() -> None:
    with pytest.raises(ValueError, match="transformer"):
        resolve_batch_size("auto", "lstm", gpu_memory_gb=0)


def test_detected_memory_is_used_when_not_given() -> None:
    detected = gpu_memory_gb()
    if HAS_CUDA:
        assert detected is not None and detected > 1
    else:
        assert detected is None
        assert resolve_batch_size("auto", "fusion") == BATCH_SIZE_TABLE["fusion"][3]


def test_describe_hardware_is_json_and_matches_machine() -> None:
    info = describe_hardware()
    json.dumps(info, allow_nan=False)
    assert info["cpu_count"] == os.cpu_count()
    assert info["accelerator"] in {"cuda", "mps", "cpu"}
    assert (info["accelerator"] == "cuda") == HAS_CUDA
    assert (info["gpu_memory_gb"] is None) == (not HAS_CUDA)


def test_hardware_choices_explain_each_value() -> None:
    choices = hardware_choices(precision="auto", batch_size="auto", model_type="gnn", accelerator="cpu")
    json.dumps(choices, allow_nan=False)
    assert choices["precision"] == {"requested": "auto", "value": "32-true", "reason": choices["precision"]["reason"]}
    assert "CUDA" in choices["precision"]["reason"]
    assert choices["batch_size"]["value"] == 32 and "CPU" in choices["batch_size"]["reason"]
    planned = hardware_choices(batch_size="auto", model_type="transformer", accelerator="cpu", gpu_memory=80.0)
    assert planned["batch_size"]["value"] == 64 and "80.0 GB" in planned["batch_size"]["reason"]
    explicit = hardware_choices(precision="16-mixed", batch_size=7, model_type="fusion")
    assert explicit["precision"]["value"] == "16-mixed" and explicit["precision"]["reason"] == "set explicitly"
    assert explicit["batch_size"]["value"] == 7 and explicit["batch_size"]["reason"] == "set explicitly"
