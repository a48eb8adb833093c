"""Session-wide test setup."""

import os

import pytest
import torch

# Without CUDA the Triton kernel is tested through Triton's CPU interpreter.  Triton reads
# this variable once, when it is first imported (which other test modules' imports can
# trigger during collection), so it is set here, before any test module is collected.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Torch computes with one thread in this module: the same arithmetic as the one-thread subprocesses
    it compares with, and no slowdown when other work shares the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_RUN = {"dataset": "synthetic", "model": "quickcnn", "logger": "none", "dataset.image_size": 8,
            "dataset.train_size": 16, "dataset.test_size": 8, "trainer.num_workers": 0, "trainer.epochs": 1,
            "batch_size": 8, "T": 2}


def tiny_run(*overrides: str) -> list[str]:
    """Overrides for a real training of a few seconds: synthetic 8×8 data, quickcnn, T=2, no logger and no
    loader workers; `overrides` ("key=value") replace or add keys.  Test modules import it from here."""
    values = dict(TINY_RUN)
    for override in overrides:
        key, _, value = override.partition("=")
        values[key] = value
    return [f"{key}={value}" for key, value in values.items()]
