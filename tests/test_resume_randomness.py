"""Random state across a resume: the generators come back from the checkpoint, and each training sample's
augmentation draws from its own seed, whatever the loader workers (arlif.data.sample_seeds).

The end-to-end checks, resumed runs matching uninterrupted ones under dropout, augmentation,
mixup/cutmix, the DVS policy and loader workers, are in test_faults.py and test_distributed.py.
"""

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from arlif.runner import distributed
from arlif.runner.checkpoint import load_checkpoint
from arlif.runner.config import compose
from arlif.data.sample_seeds import SeededSamples
from arlif.runner.training import TrainingRun, train
from arlif.runner.runtime import rng_state
from conftest import tiny_run

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
    torch.save(state, tmp_path / "last.pt")
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
