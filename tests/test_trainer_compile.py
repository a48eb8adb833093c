"""`trainer.compile`: a real training run compiled with torch.compile, its warm-up, and its failure.

The compiled run trains like the eager one (Inductor rounds batch norm and convolutions a little
differently: the first epoch agrees to 1e-4 rather than to the bit, later losses within 2 % and
firing rates within 0.1 percentage point), reports
its compile time apart from the epochs, and resumes from its checkpoint exactly.  A run whose compile fails (here: no C++
compiler) stops before any epoch with one `error:` line, exit 2, and leaves no run folder.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from arlif.errors import ConfigError
from arlif.runner.build import batch_sizes
from arlif.runner.config import CONF_DIR, compose, validate
from arlif.runner.training import train
from helpers import tiny_run

TINY = tiny_run("trainer.epochs=2")  # 16 training and 8 test images in batches of 8: one graph each
LOSSES = ("train_loss", "test_loss")


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def eager_and_compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    eager = train(compose(TINY), root / "eager")
    compiled = train(compose([*TINY, "trainer.compile=true"]), root / "compiled")
    return root, eager, compiled


def test_compiled_training_matches_eager_and_times_its_compile_apart(eager_and_compiled):
    root, eager, compiled = eager_and_compiled
    assert "compile_time_s" not in eager and compiled["compile_time_s"] > 0
    for mine, theirs in zip(read_metrics(root / "compiled"), read_metrics(root / "eager")):
        # Epoch 1 (two steps, its evaluation after them) agrees to rounding; later a few spikes that
        # rounding put on the other side of a threshold steer the two runs slightly apart.
        first = mine["epoch"] == 1
        for key in LOSSES:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4 if first else 2e-2), key
        assert mine["firing_rates"] == pytest.approx(theirs["firing_rates"], abs=1e-6 if first else 1e-3)
        assert mine["images_per_s"] > 0
    assert compiled["finished"] and compiled["epochs_completed"] == 2


def test_a_compiled_run_resumes_exactly(eager_and_compiled):
    root, _, compiled = eager_and_compiled
    broken = root / "broken"
    train(compose([*TINY, "trainer.compile=true", "trainer.epochs=1", "scheduler.t_max=2"]), broken)
    summary = train(compose([*TINY, "trainer.compile=true", "trainer.resume=auto"]), broken)
    timing = ("epoch_time_s", "images_per_s")
    strip = lambda rows: [{k: v for k, v in row.items() if k not in timing} for row in rows]  # noqa: E731
    assert strip(read_metrics(broken)) == strip(read_metrics(root / "compiled"))
    assert summary["finished"]


@pytest.mark.parametrize("samples, limit, sizes", [(20, None, {8, 4}), (20, 2, {8}), (20, 3, {8, 4}), (16, None, {8}),
                                                  (5, None, {5})])
def test_the_warm_up_sees_every_evaluation_batch_size(samples, limit, sizes):
    loader = DataLoader(TensorDataset(torch.zeros(samples)), batch_size=8)
    assert batch_sizes(loader, 8, limit) == sizes == {len(b[0]) for b in list(loader)[:limit]}


@pytest.mark.parametrize("value", ["yes", 1, "max_autotune"])
def test_compile_values_are_checked(value):
    with pytest.raises(ConfigError, match="trainer.compile=.* must be true, false or a torch.compile mode: default, "
                                          "reduce-overhead, max-autotune"):
        validate(compose([*TINY, f"trainer.compile={value}"]))


@pytest.mark.slow
def test_a_compile_failure_stops_before_any_epoch_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    env = {**os.environ, "CXX": str(tmp_path / "no-compiler" / "c++"),  # neither Inductor nor the C++ kernel builds
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    out = subprocess.run([sys.executable, "train.py", *TINY, "trainer.compile=true", f"hydra.run.dir={run_dir}"],
                         cwd=CONF_DIR.parent, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: trainer.compile=True: torch.compile failed before "
                                                     "training"), out.stderr
    assert "set trainer.compile=false" in errors[0] and "Traceback" not in out.stderr
    assert not run_dir.exists() and not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_reduce_overhead_trains_as_eager(eager_and_compiled):
    """trainer.compile=reduce-overhead (fullgraph, steps marked for CUDA graphs, firing-rate sums as buffers
    updated inside the evaluation graph) trains and evaluates as eager, as `trainer.compile=true` does."""
    root, eager, _ = eager_and_compiled
    graphs = train(compose([*TINY, "trainer.compile=reduce-overhead"]), root / "graphs")
    assert graphs["finished"] and graphs["compile_time_s"] > 0
    for mine, theirs in zip(read_metrics(root / "graphs"), read_metrics(root / "eager")):
        first = mine["epoch"] == 1
        for key in LOSSES:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4 if first else 2e-2), key
        assert mine["firing_rates"] == pytest.approx(theirs["firing_rates"], abs=1e-6 if first else 1e-3)
