"""A quiet CPU Trainer for tests: no logger, progress bar, summary or checkpoints unless asked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


def quiet_trainer(tmp_path: Path, **kw: Any) -> L.Trainer:
    opts: dict[str, Any] = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                                enable_checkpointing=False, default_root_dir=str(tmp_path))
    opts.update(kw)
    return L.Trainer(**opts)
