"""Randomized kill soak (slow suite): a training run and a search, each killed again and again at random
moments (seeded) with SIGKILL or SIGTERM sent to its whole process group, as a cluster's scheduler or an
out-of-memory killer would, and relaunched with the same command until it ends; then compared with an
uninterrupted run.  Training must end bit-identical (every metric of every epoch, every weight); the search
must hold exactly its n_trials trials, none left running, each with the state and objective value the
uninterrupted search gave it.

The kill moments are random points of the whole run's work: KILLS numbers drawn uniformly from [0, epochs the
uninterrupted run logs), in increasing order.  For a point p, a launch is killed once the run folder(s) hold
floor(p) epoch lines (metrics.jsonl) and the launch's run has started training (its model line is logged),
plus the fraction of p times one epoch's average wall time.  The first launch is timed from its start
instead, so that a kill also lands in start-up.  So kills land in start-up, training, evaluation and
checkpoint writes, early and late, and in every trial of the search.  The schedule and each launch's exit
code are printed (pytest -s) and in the assertion messages.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from arlif.runner.checkpoint import load_checkpoint
from arlif.runner.cli import EXIT_INTERRUPTED
from arlif.runner.records import metrics_lines
from fixtures_data import write_cifar
from test_faults import CIFAR_PER_FILE, RANDOM, REPO, rows
from test_search import TINY, read_trials, sweep_args

pytestmark = pytest.mark.slow

SEED = 22
KILLS = 8
TESTS = Path(__file__).resolve().parent
# train.py with torchvision accepting the CIFAR fixture's md5s (argv[1]: its data_dir)
TRAIN = ("import runpy, sys; from pathlib import Path; sys.path.insert(0, {tests!r}); import fixtures_data; "
         "fixtures_data.accept_cifar_fixtures(Path(sys.argv[1])); sys.argv = ['train.py', *sys.argv[2:]]; "
         "runpy.run_path('train.py', run_name='__main__')").format(tests=str(TESTS))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
TRAINING_STARTED = "M parameters, T="  # arlif.runner.training's line once a run is built (resumed or not)
ENDINGS = (0, EXIT_INTERRUPTED, -signal.SIGKILL, -signal.SIGTERM)  # SIGTERM before its handler is set: -15


def launch(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def uninterrupted(command: list[str], log: Path) -> float:
    """Run `command` to its end; its wall time in seconds."""
    started = time.monotonic()
    proc = launch(command, log)
    assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    return time.monotonic() - started


def soak(command: list[str], folders: Callable[[], list[Path]], total: int, span_s: float, logs: Path) -> list:
    """Launch `command` until it exits 0, killing the first KILLS launches (their process group) with SIGKILL or
    SIGTERM at the random points of the work described in the module's docstring.  `folders()` are the run
    folders so far, `total` the epoch lines of the uninterrupted run, which took `span_s`.  Returns (signal,
    point, exit code) per launch."""
    rng, launches = random.Random(SEED), []
    points = sorted(rng.uniform(0, total) for _ in range(KILLS))
    logs.mkdir()
    while True:
        log = logs / f"launch-{len(launches)}.log"
        starts_before = run_starts(folders())
        proc = launch(command, log)
        sig = point = None
        if len(launches) < KILLS:
            sig, point = rng.choice((signal.SIGKILL, signal.SIGTERM)), points[len(launches)]
            while proc.poll() is None and (epoch_lines(folders()) < int(point)
                                           or launches and run_starts(folders()) == starts_before):
                time.sleep(0.02)
            try:
                proc.wait(timeout=(point % 1) * span_s / total)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, sig)
        code = proc.wait(timeout=900)
        launches.append((sig and sig.name, point and round(point, 2), code))
        print(f"launch {len(launches)}: {launches[-1]}")
        if code == 0:  # it ended before its kill: the kill lay in the last epoch, or no run was left to start
            late = point is None or int(point) == total - 1 or run_starts(folders()) == starts_before
            assert late, (launches, log.read_text()[-3000:])
            return launches
        assert sig is not None and code in ENDINGS, (launches, log.read_text()[-3000:])


def epoch_lines(folders: list[Path]) -> int:
    return sum(len(metrics_lines(folder)) for folder in folders)


def run_starts(folders: list[Path]) -> int:
    """How many runs have been built (resumed or not) in `folders`: their model line in train.log."""
    logs = [folder / "train.log" for folder in folders]
    return sum(log.read_text().count(TRAINING_STARTED) for log in logs if log.exists())


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("cifar")
    write_cifar(data_dir, "cifar10", CIFAR_PER_FILE)
    return data_dir


def test_training_killed_at_random_moments_ends_bit_identical(cifar, tmp_path):
    """CIFAR-10's published augmentation recipe in two loader workers, mixup/cutmix and dropout (test_faults'
    RANDOM), 12 epochs: every source of randomness a resume must restore is on."""
    overrides = [*RANDOM, "trainer.epochs=12", "trainer.progress_bar=false", "trainer.resume=auto"]

    def command(run_dir):
        return [sys.executable, "-c", TRAIN, str(cifar), *overrides, f"data_dir={cifar}", f"hydra.run.dir={run_dir}"]

    span = uninterrupted(command(tmp_path / "steady"), tmp_path / "steady.log")
    soaked = tmp_path / "soaked"
    launches = soak(command(soaked), lambda: [soaked], 12, span, tmp_path / "logs")
    killed = sum(code != 0 for _, _, code in launches)
    assert rows(tmp_path / "soaked") == rows(tmp_path / "steady"), launches
    for name in ("last.pt", "best.pt"):
        ours, theirs = (load_checkpoint(tmp_path / run / name)["model"] for run in ("soaked", "steady"))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), (name, launches)
    summary = json.loads((tmp_path / "soaked" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_completed"] == 12
    print(f"training soak: {killed} kills, uninterrupted run {span:.0f} s")


def test_search_killed_at_random_moments_ends_with_exactly_its_trials(tmp_path):
    """The tiny study of test_search.py (4 trials: COMPLETE, FAIL, COMPLETE, PRUNED by trial number), with 3
    epochs of 480 images per trial, so that most of its time is training rather than start-up."""
    conf = tmp_path / "conf"
    (conf / "hparams_search").mkdir(parents=True)
    (conf / "hparams_search" / "tiny.yaml").write_text(TINY)

    def command(study_dir):
        return [sys.executable, "train.py", *sweep_args(conf, study_dir, "trainer.epochs=3", "dataset.train_size=480",
                                                          "hydra.sweeper.plots=false")]

    span = uninterrupted(command(tmp_path / "steady"), tmp_path / "steady.log")
    total = epoch_lines(list((tmp_path / "steady").glob("trial-*")))
    launches = soak(command(tmp_path / "soaked"), lambda: list((tmp_path / "soaked").glob("trial-*")), total, span,
                    tmp_path / "logs")
    steady = {r["number"]: r for r in read_trials(tmp_path / "steady")}
    soaked = {r["number"]: r for r in read_trials(tmp_path / "soaked")}
    assert sorted(soaked, key=int) == sorted(steady, key=int) == ["0", "1", "2", "3"], launches
    for number, row in soaked.items():
        never_launched = row["state"] == "FAIL" and not row["run_dir"]  # killed between asking and launching
        assert never_launched or (row["state"], row["value"], row["optimizer.lr"]) == \
            (steady[number]["state"], steady[number]["value"], steady[number]["optimizer.lr"]), (number, launches)
    killed = sum(code != 0 for _, _, code in launches)
    print(f"search soak: {killed} kills over {total} epochs, uninterrupted study {span:.0f} s")
