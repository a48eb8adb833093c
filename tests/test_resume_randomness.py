"""State across a resume and an epoch boundary: the random generators and the mixed-precision GradScaler
come back from the checkpoint, every epoch draws its own sample order, and each training sample's
augmentation draws from its own seed, whatever the loader workers (arlif.data.sample_seeds).

The end-to-end checks, resumed runs matching uninterrupted ones under dropout, augmentation,
mixup/cutmix, the DVS policy and loader workers, are in test_faults.py and test_distributed.py.
"""

import random

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from arlif.runner import distributed
from arlif.runner.checkpoint import load_checkpoint, save_checkpoint
from arlif.runner.config import compose
from arlif.data.sample_seeds import SeededSamples
from arlif.runner.training import TrainingRun, train
from arlif.runner.runtime import rng_state
from helpers import tiny_run

TINY = tiny_run()


def draw():
    """One value from each of Python's, NumPy's and torch's generators."""
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_resume_restores_every_generator_from_the_checkpoint(tmp_path):
    """The checkpoint's states are not the seed's: a generator left unrestored would show."""
    train(compose(TINY), tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    draw()
    state["rng"] = [rng_state()]
    expected = draw()
    save_checkpoint(state, tmp_path / "last.pt")
    run = TrainingRun(compose([*TINY, "trainer.epochs=2", "trainer.resume=auto"]), tmp_path, torch.device("cpu"))
    run.recorder.close()
    assert draw() == expected


class Noisy(Dataset):
    """Each sample draws from all three generators, as augmentation pipelines may."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return torch.tensor([index, random.random(), np.random.rand(), float(torch.rand(()))])


def batches(workers, epoch=1, done=0):
    sampler = distributed.EpochBatches(Noisy(), 3, seed=5, generator=torch.Generator())
    sampler.start(epoch, done)
    loader = DataLoader(SeededSamples(Noisy()), batch_sampler=sampler, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)
    return [b for b in loader]


def test_sample_draws_depend_on_the_epoch_and_position_only():
    plain = batches(0)
    assert len(plain) == 4 and len({float(x) for b in plain for x in b[:, 1]}) == 12  # every sample its own seed
    for other in (batches(1), batches(2)):  # workers load other batches after other samples
        assert all(torch.equal(a, b) for a, b in zip(plain, other))
    resumed = batches(2, done=3)  # a run resumed after 3 batches: the first worker now loads batch 4
    assert len(resumed) == 1 and torch.equal(resumed[0], plain[3])
    assert not torch.equal(batches(0, epoch=2)[0][:, 1:], plain[0][:, 1:])


@pytest.fixture(params=["one process", "process group"])
def sampling(request, tmp_path):
    """One process (torch's RandomSampler), or a real one-process Gloo group (DistributedSampler, as under
    torchrun)."""
    if request.param == "process group":
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield request.param
    if request.param == "process group":
        dist.destroy_process_group()


def test_every_epoch_draws_its_own_sample_order(sampling):
    """The order depends on the epoch (a seeded shuffle that ignored it would repeat one order every epoch)
    and on nothing else: an epoch started again draws its order again."""
    sampler = distributed.EpochBatches(Noisy(), 3, seed=5, generator=torch.Generator())
    assert isinstance(sampler.order, torch.utils.data.DistributedSampler) == (sampling == "process group")

    def order(epoch):
        sampler.start(epoch)
        return [index for batch in sampler for index, _ in batch]

    first, second, third, first_again = order(1), order(2), order(3), order(1)
    assert sorted(first) == sorted(second) == list(range(12))
    assert len({tuple(first), tuple(second), tuple(third)}) == 3 and first_again == first


def test_resume_restores_the_grad_scaler(tmp_path):
    """fp16 trains with a GradScaler (on the CPU too): its loss scale and growth count are saved with every
    checkpoint and come back on resume; a scaler left fresh would restart at its initial scale (and on a GPU
    skip steps again to find its way back down)."""
    fp16 = [*TINY, "trainer.precision=fp16"]
    train(compose(fp16), tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["scaler"]["_growth_tracker"] == 2  # the live scaler's: two steps without an overflow
    state["scaler"].update(scale=1024.0, _growth_tracker=7)  # what no fresh scaler holds
    save_checkpoint(state, tmp_path / "last.pt")
    run = TrainingRun(compose([*fp16, "trainer.epochs=2", "trainer.resume=auto"]), tmp_path, torch.device("cpu"))
    run.recorder.close()
    assert run.trainer.precision.use_scaler and run.trainer.scaler.state_dict() == state["scaler"]


def test_loading_a_sample_leaves_the_callers_generators_alone():
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    expected = draw()
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    SeededSamples(Noisy())[(0, 12345)]
    assert draw() == expected


def test_epoch_batches_seed_each_process_differently(monkeypatch):
    def seeds(rank):
        monkeypatch.setattr(distributed, "rank", lambda: rank)
        sampler = distributed.EpochBatches(Noisy(), 3, seed=5, generator=torch.Generator())
        sampler.start(1)
        return [seed for batch in sampler for _, seed in batch]

    assert set(seeds(0)).isdisjoint(seeds(1)) and seeds(0) == seeds(0)
