"""Training samplers whose order is a function of (seed, epoch).

Lightning calls `set_epoch` on `loader.sampler` and on `loader.batch_sampler.sampler` at the start of
every epoch, also the first one after a resume. A sampler that draws from (seed, epoch) therefore gives
each epoch its own order and a resumed run the order the uninterrupted run had; torch's own samplers
draw from a generator that either repeats every epoch (seeded once) or restarts with
`seed_everything` on resume (the global one), replaying epoch 0's order.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence, Sized

import torch
from torch.utils.data import RandomSampler, WeightedRandomSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed per (seed, epoch); `seed + epoch` would give seed 42's epoch 1 seed 43's epoch 0."""
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def training_seed(data_seed: int) -> int:
    """The order follows `seed_everything` (LightningCLI's `seed_everything`, a study's seeds), which
    exports PL_GLOBAL_SEED; `data.seed` (which also carves the splits) only without one."""
    value = os.environ.get("PL_GLOBAL_SEED")
    return int(value) if value not in (None, "") else int(data_seed)


class _EpochSeeded:
    """Mixin over a torch sampler holding a `generator`: reseeded from (seed, epoch) at every pass."""

    seed: int
    epoch: int
    generator: torch.Generator

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch))
        return super().__iter__()  # type: ignore[misc]


class EpochRandomSampler(_EpochSeeded, RandomSampler):
    """A permutation per (seed, epoch). A RandomSampler, so DDP replaces it with a DistributedSampler."""

    def __init__(self, data_source: Sized, seed: int) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed, self.epoch = int(seed), 0


class EpochWeightedSampler(_EpochSeeded, WeightedRandomSampler):
    """Class-balanced draws (with replacement) per (seed, epoch)."""

    def __init__(self, weights: Sequence[float] | torch.Tensor, num_samples: int, seed: int) -> None:
        super().__init__(weights, num_samples, replacement=True, generator=torch.Generator())
        self.seed, self.epoch = int(seed), 0
