"""Per-sample random draws for training augmentation, independent of the loader's workers.

A DataLoader worker draws augmentation from its own generators, seeded once per epoch and
advanced by every sample it loaded before.  Which worker loads which batch depends on the
number of workers and, after a mid-epoch resume, on the batch the epoch restarted from, so
a resumed run would see other crops, flips and ops than an uninterrupted one.  Instead, the
training batches (arlif.runner.distributed.EpochBatches) name each sample with a seed made of the
run seed, epoch, process rank and position in the epoch, and `SeededSamples` loads it with
Python's, NumPy's and torch's CPU generators seeded from that seed alone.  The caller's
generators are restored afterwards: with `num_workers=0` the caller is the training
process, whose torch generator also drives dropout and mixup/cutmix.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info


def sample_seeds(count: int, *entropy: int) -> list[int]:
    """`count` well-mixed 64-bit seeds from non-negative ints (e.g. seed, epoch, rank, batch): one per
    position in the batch, drawn at once (one SeedSequence per batch, not per sample)."""
    return [int(s) for s in np.random.SeedSequence(entropy).generate_state(count, np.uint64)]


def seed_generators(seed: int) -> None:
    """Seed Python's, NumPy's and torch's CPU generators with `seed` (not torch.manual_seed: CUDA stays untouched)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)


@contextlib.contextmanager
def seeded_generators(seed: int) -> Iterator[None]:
    """`seed_generators(seed)` inside the block; the generators' states are restored after it."""
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_generators(seed)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


class SeededSamples(Dataset):
    """`dataset` indexed by (index, seed) pairs: each sample's random transforms draw from its own seed.

    A loader worker draws only for its own samples, so it just reseeds (microseconds); the training
    process itself (num_workers=0) gets its generators back after each sample.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        if get_worker_info() is not None:
            seed_generators(seed)
            return self.dataset[index]
        with seeded_generators(seed):
            return self.dataset[index]
