"""Several processes, one run: joining the launcher's process group, sharding the data, combining results.

A run is distributed when torchrun starts it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR in the
environment) or when it is one task of a multi-task submitit job (the SLURM launcher configs with
several GPUs or nodes), whose environment is translated for torch here.  Every helper below is a
no-op in a single process, so the training loop calls them unconditionally.  `batch_size` is per
process: the global batch is batch_size × processes (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from typing import Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import BatchSampler, Dataset, DistributedSampler, RandomSampler, Sampler

from arlif.data.sample_seeds import sample_seeds

T = TypeVar("T")

# Worker seeds of different processes must differ; epochs never come near this stride.
_RANK_SEED_STRIDE = 1 << 32


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def _submitit_tasks() -> int:
    """Tasks in the submitit job this process belongs to (1 outside submitit)."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return 1
    import submitit

    return submitit.JobEnvironment().num_tasks


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Join the launcher's process group for the length of a run; yields the device this process uses.

    One process: nothing to join, `device` comes back unchanged.  Several: NCCL on CUDA, one GPU per
    process picked by LOCAL_RANK; Gloo on the CPU.  Ranks other than 0 log warnings only.
    """
    if "RANK" not in os.environ and _submitit_tasks() > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_rank() != 0:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: Tensor) -> Tensor:
    """Sum `values` over all processes, in place."""
    if is_distributed():
        dist.all_reduce(values)
    return values


def any_rank(flags: Tensor) -> list[bool]:
    """Element-wise OR of boolean `flags` over all processes (a collective: every process must call it)."""
    flags = flags.to(torch.int32)
    if is_distributed():
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [bool(f) for f in flags.tolist()]


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj`, on every process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: T) -> list[T]:
    """[rank 0's obj, rank 1's obj, ...] on every process; `obj` holds tensors and plain values only."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj, weights_only=True)  # torch.save format: the pickler path fails on tensors
    return out


def broadcast_buffers(module: nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm statistics), so that all evaluate one model."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """The training batches of one epoch: shuffled by (seed, epoch) alone, this process's share, whole batches.

    One process: torch's RandomSampler drawing from `generator`, which is reseeded with seed + epoch
    (the DataLoader draws its worker seed from it too).  Several: DistributedSampler(seed, drop_last),
    so that every process gets as many batches as the others.  `start(epoch, done)` selects the epoch
    and skips the `done` batches that a run resumed in mid-epoch has already trained on.
    A batch is a list of (sample index, sample seed) pairs for arlif.data.sample_seeds.SeededSamples,
    the seed a function of (seed, epoch, rank, position in the epoch) only.
    `len()` is the whole epoch's number of batches.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, generator: torch.Generator):
        if is_distributed():
            self.order = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
        else:
            self.order = RandomSampler(dataset, generator=generator)
        self.batches = BatchSampler(self.order, batch_size, drop_last=True)
        self.seed, self.generator, self.epoch, self.done = seed, generator, 0, 0

    def start(self, epoch: int, done: int = 0) -> None:
        self.generator.manual_seed(self.seed + epoch + rank() * _RANK_SEED_STRIDE)
        if isinstance(self.order, DistributedSampler):
            self.order.set_epoch(epoch)
        self.epoch, self.done = epoch, done

    def __iter__(self):
        r = rank()
        for b, batch in itertools.islice(enumerate(self.batches), self.done, None):
            yield list(zip(batch, sample_seeds(len(batch), self.seed, self.epoch, r, b)))

    def __len__(self) -> int:
        return len(self.batches)


class ShardSampler(Sampler[int]):
    """Every world_size-th index from this rank's: together the processes see each sample exactly once."""

    def __init__(self, num_samples: int):
        self.indices = range(rank(), num_samples, world_size())

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
