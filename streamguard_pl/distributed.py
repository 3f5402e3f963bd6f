"""Collecting per-rank tensors of different lengths on every rank.

`LightningModule.all_gather` needs the same shape on every rank; validation shards need not have it
(a length-bucketed batch sampler, `drop_last=False`). So lengths are gathered first and each shard
is padded to the longest, then trimmed again.
"""
from __future__ import annotations

import lightning as L
import torch


def gather_uneven(pl_module: L.LightningModule, values: torch.Tensor) -> torch.Tensor:
    """All ranks' 1-D `values`, rank by rank; the tensor itself on a single process."""
    trainer = pl_module.trainer
    if trainer is None or trainer.world_size <= 1:
        return values
    values = values.to(pl_module.device).flatten()
    sizes = pl_module.all_gather(torch.tensor([values.numel()], device=pl_module.device)).flatten().tolist()
    padded = torch.cat([values, values.new_zeros(int(max(sizes)) - values.numel())])
    shards = pl_module.all_gather(padded).view(len(sizes), -1)
    return torch.cat([shard[: int(n)] for shard, n in zip(shards, sizes)])
