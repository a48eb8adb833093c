"""`trainer.num_workers=auto` (the default): data-loader workers from the CPUs this process may use."""

import os
import warnings

import pytest
import torch
from torch.utils.data import TensorDataset

from arlif.runner.config import compose, validate
from arlif.errors import ConfigError
from arlif.runner.build import make_test_loader
from arlif.runner.runtime import MAX_AUTO_WORKERS, resolve_num_workers

CPUS = os.sched_getaffinity(0)
EXPECTED = min(MAX_AUTO_WORKERS, len(CPUS) - 1)


@pytest.fixture
def no_launcher_env(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    return monkeypatch


def test_auto_follows_affinity_slurm_and_torchrun(no_launcher_env):
    monkeypatch = no_launcher_env
    assert resolve_num_workers("auto") == EXPECTED
    assert resolve_num_workers(0) == 0 and resolve_num_workers(12) == 12  # a number always wins
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert resolve_num_workers("auto") == 0
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "512")  # more than this machine has: the affinity decides
    assert resolve_num_workers("auto") == EXPECTED
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(len(CPUS)))  # torchrun: one CPU per process
    assert resolve_num_workers("auto") == 0
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    os.sched_setaffinity(0, {min(CPUS)})
    try:
        assert resolve_num_workers("auto") == 0
    finally:
        os.sched_setaffinity(0, CPUS)


def test_default_loader_stays_within_the_cpus(no_launcher_env):
    """The default config's loaders raise no 'excessive worker creation' warning here."""
    cfg = compose(["dataset=synthetic", "model=quickcnn", "logger=none"])
    assert cfg.trainer.num_workers == "auto"
    validate(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader = make_test_loader(TensorDataset(torch.zeros(8, 1)), cfg, torch.device("cpu"))
    assert loader.num_workers == EXPECTED


def test_bad_worker_counts_are_config_errors():
    cfg = compose(["dataset=synthetic", "model=quickcnn", "logger=none"])
    for bad in ("many", -1, True, 2.5):
        cfg.trainer.num_workers = bad
        with pytest.raises(ConfigError, match=r"trainer.num_workers=.* must be auto or an integer >= 0"):
            validate(cfg)
