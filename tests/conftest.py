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
