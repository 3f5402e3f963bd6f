"""Lightning Trainer that understands `precision: auto` (bf16 / fp16 / fp32 by hardware)."""
from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class StreamGuardTrainer(L.Trainer):
    """A plain `lightning.Trainer` except that `precision="auto"` is resolved from the hardware.

    What was chosen is kept in `hardware_choices` (MetadataExport records it) and printed once.
    """

    def __init__(self, *args: Any, precision: str | int | None = "auto", accelerator: str = "auto", **kwargs: Any) -> None:
        from .hardware import resolve_precision

        requested = precision
        if precision is None or str(precision) == "auto":
            precision = resolve_precision("auto", accelerator)
            rank_zero_info(f"precision: auto -> {precision}")
        self.hardware_choices = {"precision_requested": str(requested), "precision": str(precision)}
        super().__init__(*args, precision=precision, accelerator=accelerator, **kwargs)
