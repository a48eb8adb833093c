"""Session-wide test setup and the fixtures several test modules share (helpers.py has plain helpers)."""

import os
from pathlib import Path

import pytest
import torch

# Every subprocess a test starts (train.py, the scripts, `python -c`) imports this checkout's arlif, even where
# the installed one (`pip install -e .`) is another checkout's, as in a worktree or a mutation check's copy.
REPO = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))

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


@pytest.fixture
def fresh_verdicts():
    """The test judges the fused engines afresh, and leaves no verdict on a faulty engine behind."""
    from arlif.kernels import selfcheck  # after TRITON_INTERPRET is set above

    selfcheck.forget()
    yield
    selfcheck.forget()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch tiny run folder (last.pt and best.pt), once per test module."""
    from arlif.runner.config import compose
    from arlif.runner.training import train
    from helpers import tiny_run

    run_dir = tmp_path_factory.mktemp("trained")
    train(compose(tiny_run()), run_dir)
    return run_dir
