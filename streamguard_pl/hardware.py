"""Precision and batch-size defaults chosen from the hardware a run actually lands on.

One config file has to run on a laptop CPU, a 16 GB T4 and an 80 GB H100; "auto" values are resolved
here once, and `hardware_choices` says what was picked and why so the CLI can print it and
MetadataExport can record it next to the results it produced.
"""
from __future__ import annotations

import os
import platform
from typing import Any

import torch

__all__ = [
    "BATCH_SIZE_TABLE",
    "describe_hardware",
    "gpu_memory_gb",
    "hardware_choices",
    "resolve_batch_size",
    "resolve_precision",
]

_CUDA_ACCELERATORS = ("auto", "gpu", "cuda")

# Per model type: (batch size on GPUs with >= 40 GB, on >= 16 GB, on smaller GPUs, on CPU).
# Transformers (512-token encoders, full fine-tuning) fill memory fastest; GNN batches of function
# graphs are small; fusion holds both encoders plus graph batches, so it gets the smallest batches.
# CPU sizes are kept small because CPU runs are demos/smoke tests, where step latency matters more.
BATCH_SIZE_TABLE: dict[str, tuple[int, int, int, int]] = {
    "transformer": (64, 32, 16, 8),
    "gnn": (128, 64, 64, 32),
    "fusion": (32, 16, 8, 4),
}
_LARGE_GPU_GB = 40.0
_MEDIUM_GPU_GB = 16.0


def gpu_memory_gb(device: int | None = None) -> float | None:
    """Total memory of a CUDA device in decimal GB (None without CUDA).

    Decimal GB, not GiB: cards are sold by decimal size and a "40 GB" A100 reports only 39.4 GiB,
    which would wrongly drop it below the 40 GB tier.
    """
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device() if device is None else device
    return torch.cuda.get_device_properties(index).total_memory / 1e9


def _cuda_selected(accelerator: str) -> bool:
    return accelerator.strip().lower() in _CUDA_ACCELERATORS and torch.cuda.is_available()


def _choose_precision(precision: str, cuda: bool, bf16_supported: bool) -> tuple[str, str]:
    """Pure decision (value, reason) so every branch is testable without the hardware."""
    if str(precision).strip().lower() != "auto":
        return str(precision), "set explicitly"
    if not cuda:
        return "32-true", "no CUDA device: CPU autocast gains little and fp16 AMP is unsupported on CPU"
    if bf16_supported:
        return "bf16-mixed", "CUDA device supports bfloat16: mixed precision without loss scaling"
    return "16-mixed", "CUDA device without bfloat16 (pre-Ampere): fp16 AMP with a GradScaler"


def resolve_precision(precision: str = "auto", accelerator: str = "auto") -> str:
    """Turn "auto" into a Lightning precision string for the current machine; pass others through."""
    cuda = _cuda_selected(accelerator)
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return _choose_precision(precision, cuda, bf16)[0]


def _choose_batch_size(batch_size: int | str, model_type: str, memory_gb: float | None) -> tuple[int, str]:
    if isinstance(batch_size, bool):
        raise TypeError("batch_size must be an int or 'auto', got a bool")
    if isinstance(batch_size, int) or (isinstance(batch_size, str) and batch_size.strip().isdigit()):
        value = int(batch_size)
        if value < 1:
            raise ValueError(f"batch_size must be >= 1, got {value}")
        return value, "set explicitly"
    if str(batch_size).strip().lower() != "auto":
        raise ValueError(f"batch_size must be a positive int or 'auto', got {batch_size!r}")
    if model_type not in BATCH_SIZE_TABLE:
        raise ValueError(f"unknown model_type {model_type!r} for batch-size table; expected one of {sorted(BATCH_SIZE_TABLE)}")
    large, medium, small, cpu = BATCH_SIZE_TABLE[model_type]
    if memory_gb is None or memory_gb <= 0:
        return cpu, f"{model_type} on CPU"
    if memory_gb >= _LARGE_GPU_GB:
        return large, f"{model_type} on a GPU with {memory_gb:.1f} GB >= {_LARGE_GPU_GB:g} GB"
    if memory_gb >= _MEDIUM_GPU_GB:
        return medium, f"{model_type} on a GPU with {memory_gb:.1f} GB >= {_MEDIUM_GPU_GB:g} GB"
    return small, f"{model_type} on a GPU with {memory_gb:.1f} GB < {_MEDIUM_GPU_GB:g} GB"


def resolve_batch_size(batch_size: int | str, model_type: str, gpu_memory_gb: float | None = None) -> int:
    """Batch size from BATCH_SIZE_TABLE for "auto"; an int (or digit string) passes through.

    gpu_memory_gb=None measures the current CUDA device (CPU row when there is none); pass 0 to force
    the CPU row or a number to plan for another card.
    """
    memory = _detected_memory() if gpu_memory_gb is None else gpu_memory_gb
    return _choose_batch_size(batch_size, model_type, memory)[0]


def _detected_memory() -> float | None:
    # The parameter of resolve_batch_size shadows the module-level function of the same name.
    return gpu_memory_gb()


def describe_hardware() -> dict[str, Any]:
    """What this process can see, in plain JSON-able values (recorded with every run)."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    accelerator = "cuda" if cuda else ("mps" if mps else "cpu")
    return {
        "accelerator": accelerator,
        "device_name": torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine()),
        "device_count": torch.cuda.device_count() if cuda else 1,
        "gpu_memory_gb": round(gpu_memory_gb(), 2) if cuda else None,  # type: ignore[arg-type]
        "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
    }


def hardware_choices(
    precision: str = "auto",
    batch_size: int | str = "auto",
    model_type: str = "transformer",
    accelerator: str = "auto",
    gpu_memory: float | None = None,
) -> dict[str, Any]:
    """Resolved precision and batch size with the reason for each, plus the hardware they were based on."""
    hardware = describe_hardware()
    cuda = _cuda_selected(accelerator)
    # An explicit gpu_memory plans for another card; otherwise use what this process can see.
    memory = gpu_memory if gpu_memory is not None else (hardware["gpu_memory_gb"] if cuda else None)
    prec, prec_reason = _choose_precision(precision, cuda, bool(cuda and hardware["bf16_supported"]))
    size, size_reason = _choose_batch_size(batch_size, model_type, memory)
    return {
        "precision": {"requested": precision, "value": prec, "reason": prec_reason},
        "batch_size": {"requested": batch_size, "value": size, "reason": size_reason},
        "model_type": model_type,
        "accelerator": accelerator,
        "hardware": hardware,
    }
