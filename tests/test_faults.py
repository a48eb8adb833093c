"""Fault tolerance: kills, stop signals, non-finite losses, broken checkpoints and bad configs.

Faults are injected at an exact training batch (or checkpoint write) through hooks on the
pipeline, in this process or in a `train.py` subprocess run by `drive()`.  Resumed runs must
reproduce the per-epoch metrics of an uninterrupted run number for number (CPU, deterministic).
"""

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.datasets import CIFAR10

import arlif.runner.build as build
import arlif.runner.training as training
from arlif.runner.checkpoint import load_checkpoint
from arlif.runner.cli import EXIT_DIVERGED, EXIT_INTERRUPTED, exit_as_run_ended
from arlif.runner.config import CONF_DIR, compose
from arlif.data.synthetic import build_synthetic
from arlif.errors import CheckpointError, ConfigError
from arlif.runner.evaluation import evaluate_checkpoint
from arlif.runner.training import train
from helpers import tiny_run
from fixtures_data import cifar_checksums, write_cifar

REPO = CONF_DIR.parent
# 16 batches per epoch: a stop takes effect at the check after batch 10 (arlif.runner.steps.CHECK_EVERY)
FAULT = tiny_run("trainer.epochs=3", "batch_size=4", "dataset.train_size=64", "dataset.test_size=32",
                 "dataset.noise=3.0", "trainer.deterministic=true")
BATCHES = 16
# What the resumed runs train: every source of randomness of the published CIFAR recipe at once, so that
# a generator left unrestored changes the numbers.  CIFAR-10's autoaug recipe on a fixture in the real
# format (per-image flip, RandAugment and RandomErasing in two loader workers, per-batch mixup or cutmix)
# and neuron dropout; 50 training images make 16 batches of 3.  (The DVS one-op policy is resumed with
# two processes in test_distributed.py.)
RANDOM = ["dataset=cifar10", "model=quickcnn", "model.dropout=0.3", "logger=none", "trainer.epochs=3",
          "batch_size=3", "trainer.num_workers=2", "T=2", "trainer.deterministic=true"]
CIFAR_PER_FILE = 10
TIMING = ("epoch_time_s", "images_per_s")


def rows(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def hook_batch(n, action):
    """Make the loss of the n-th training batch of the run (counted from 1) pass through `action(loss)`."""
    real, calls = training.build_loss, itertools.count(1)

    def build_loss(cfg):
        loss_fn = real(cfg)

        def loss(logits, y):
            value = loss_fn(logits, y)
            return action(value) if torch.is_grad_enabled() and next(calls) == n else value

        return loss

    return build_loss


def send(sig):
    """Send `sig` to this process; SIGINT as a terminal's Ctrl-C does, to the whole process group (the
    data-loader workers too)."""
    def action(loss):
        if sig == signal.SIGINT:
            os.killpg(os.getpgid(0), sig)
        else:
            os.kill(os.getpid(), sig)
        return loss
    return action


def drive():
    """Subprocess entry: `drive() <fault> <n> <train.py overrides>`; fault is a signal name (sent at the
    n-th training batch, or at each of `n1,n2`; `NAME@R`: by rank R only) or `save` (SIGKILL after
    writing half of the n-th checkpoint's temporary file)."""
    import runpy

    import fixtures_data

    fault, n, *overrides = sys.argv[1:]
    for data_dir in (o.partition("=")[2] for o in overrides if o.startswith("data_dir=")):
        fixtures_data.accept_cifar_fixtures(Path(data_dir))
    fault, _, only_rank = fault.partition("@")
    hooked = not only_rank or os.environ.get("RANK") == only_rank
    if hooked and fault == "save":
        n = int(n)
        real_save, saves = torch.save, itertools.count(1)

        def save(obj, sink, *args, **kwargs):  # sink: arlif.runner.checkpoint's wrapper of the open .tmp file
            real_save(obj, sink, *args, **kwargs)
            if next(saves) == n:
                sink.flush()
                sink.file.truncate(sink.file.tell() // 2)
                os.kill(os.getpid(), signal.SIGKILL)

        torch.save = save
    elif hooked:
        for batch in map(int, n.split(",")):
            training.build_loss = hook_batch(batch, send(getattr(signal, fault)))
    sys.argv = [str(REPO / "train.py"), *overrides]
    runpy.run_path(str(REPO / "train.py"), run_name="__main__")


DRIVE = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_faults; test_faults.drive()"


def interactive():
    """In the child: SIGINT as at a terminal.  (A background job of a non-interactive shell, as CI may run
    pytest, starts with SIGINT ignored, and a run then rightly leaves it ignored.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_driver(fault, n, run_dir, *overrides, base=FAULT):
    """`drive()` in a subprocess, in its own process group (a Ctrl-C sent there reaches no test process)."""
    return subprocess.run([sys.executable, "-c", DRIVE, fault, str(n), *base, *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=interactive, start_new_session=True)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def randomness(tmp_path_factory):
    """The RANDOM overrides with the CIFAR-10 fixture's data_dir; torchvision accepts its md5s here and in drive()."""
    data_dir = tmp_path_factory.mktemp("cifar")
    write_cifar(data_dir, "cifar10", CIFAR_PER_FILE)
    with pytest.MonkeyPatch.context() as patch:
        for attr, value in cifar_checksums(CIFAR10, data_dir).items():
            patch.setattr(CIFAR10, attr, value)
        yield [*RANDOM, f"data_dir={data_dir}"]


@pytest.fixture(scope="module")
def steady(tmp_path_factory, randomness):
    """The uninterrupted run every resumed run must reproduce."""
    run_dir = tmp_path_factory.mktemp("steady")
    train(compose(randomness), run_dir)
    return rows(run_dir)


def resume_and_compare(run_dir, steady, randomness):
    summary = train(compose([*randomness, "trainer.resume=auto"]), run_dir)
    assert summary["status"] == "finished" and summary["epochs_completed"] == 3
    assert rows(run_dir) == steady


@pytest.mark.slow  # a SIGKILL resumes from the last epoch; the SIGTERM test covers a mid-epoch resume, the kill soak random kills
def test_sigkill_mid_epoch_then_resume_matches(tmp_path, steady, randomness):
    out = run_driver("SIGKILL", BATCHES + 5, tmp_path, base=randomness)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1 and len(rows(tmp_path)) == 1
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "running"
    resume_and_compare(tmp_path, steady, randomness)


@pytest.mark.slow  # the kill soak kills at random moments too
def test_sigkill_while_writing_checkpoint_keeps_previous(tmp_path, steady, randomness):
    out = run_driver("save", 2, tmp_path, base=randomness)  # the second save: last.pt of epoch 2
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    with pytest.raises(CheckpointError, match="last.pt.tmp"):  # the half-written file that never replaced it
        load_checkpoint(tmp_path / "last.pt.tmp")
    resume_and_compare(tmp_path, steady, randomness)
    assert not (tmp_path / "last.pt.tmp").exists()


def test_sigterm_saves_mid_epoch_exits_3_and_resumes_exactly(tmp_path, steady, randomness):
    out = run_driver("SIGTERM", BATCHES + 3, tmp_path, base=randomness)
    assert out.returncode == EXIT_INTERRUPTED, out.stderr
    assert out.stderr.splitlines()[-1] == (f"stopped: received SIGTERM; continue with trainer.resume=auto "
                                           f"hydra.run.dir={tmp_path}")
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and state["partial_epoch"]["epoch"] == 2
    assert state["partial_epoch"]["ranks"][0]["batches"] == 10
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stop_reason"] == "received SIGTERM"
    resume_and_compare(tmp_path, steady, randomness)


@pytest.mark.slow  # an edge of the SIGTERM path above: a stop that arrives after an epoch's last check
def test_sigusr1_after_the_last_check_of_an_epoch_stops_after_it(tmp_path, steady, randomness, monkeypatch):
    monkeypatch.setattr(training, "build_loss", hook_batch(BATCHES + 12, send(signal.SIGUSR1)))
    summary = train(compose(randomness), tmp_path)
    assert summary["status"] == "interrupted" and summary["epochs_completed"] == 2
    assert load_checkpoint(tmp_path / "last.pt")["partial_epoch"] is None
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    monkeypatch.undo()
    resume_and_compare(tmp_path, steady, randomness)


def test_submitit_requeue_handler_runs_after_the_checkpoint(tmp_path, monkeypatch):
    """Inside a submitit job, SIGUSR2 belongs to submitit (requeue); the run saves first, then hands it on."""
    seen = []

    def submitit_handler(signum, frame):
        seen.append((signum, load_checkpoint(tmp_path / "last.pt")["partial_epoch"]["epoch"]))

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        monkeypatch.setattr(training, "build_loss", hook_batch(3, send(signal.SIGUSR2)))
        summary = train(compose(FAULT), tmp_path)
        assert signal.getsignal(signal.SIGUSR2) is submitit_handler
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [(signal.SIGUSR2, 1)] and summary["status"] == "interrupted"


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(training, "build_loss", hook_batch(BATCHES + 4, lambda loss: loss * float("nan")))
    summary = train(compose(FAULT), tmp_path)
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 1
    reason = summary["stop_reason"]
    assert "nan or inf" in reason and "epoch 2" in reason and str(tmp_path / "last.pt") in reason
    assert reason.endswith("Lower optimizer.lr")  # no advice to train in fp32: this run did
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and all(v.isfinite().all() for v in state["model"].values() if v.is_floating_point())
    assert len(rows(tmp_path)) == 1

    with pytest.raises(SystemExit) as exit_info:
        exit_as_run_ended(summary, tmp_path)
    assert exit_info.value.code == EXIT_DIVERGED
    assert capsys.readouterr().err == f"error: {reason}\n"
    exit_as_run_ended(summary, tmp_path, sweep_dir=tmp_path.parent)  # a sweep goes on to its next run


def test_a_stop_signal_met_by_divergence_still_ends_the_sweep(tmp_path, monkeypatch, capsys):
    """SIGTERM, then a nan loss before the check that would have stopped the run: the run is `diverged`,
    its summary keeps the signal, and a sweep stops after it (it went on to its next trial before: seen
    when the search kill soak's SIGTERM met the diverging trial)."""
    nan_after_signal = lambda loss: send(signal.SIGTERM)(loss) * float("nan")  # noqa: E731
    monkeypatch.setattr(training, "build_loss", hook_batch(BATCHES + 4, nan_after_signal))
    summary = train(compose(FAULT), tmp_path)
    assert summary["status"] == "diverged" and summary["stop_signal"] == "SIGTERM"
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["status"] == "diverged" and written["stop_signal"] == "SIGTERM"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        exit_as_run_ended(summary, tmp_path, sweep_dir=tmp_path.parent)
    assert exit_info.value.code == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.startswith(f"stopped: received SIGTERM while {tmp_path} ran, which ended diverged; the sweep stops")
    with pytest.raises(SystemExit) as exit_info:  # a single run ends as it ended
        exit_as_run_ended(summary, tmp_path)
    assert exit_info.value.code == EXIT_DIVERGED


@pytest.fixture
def finished(tmp_path):
    train(compose([*FAULT, "trainer.epochs=1"]), tmp_path)
    return tmp_path


def test_corrupt_or_truncated_checkpoint_names_the_file(finished):
    last = finished / "last.pt"
    data = last.read_bytes()
    for broken in (data[: len(data) // 2], b"not a checkpoint"):
        last.write_bytes(broken)
        with pytest.raises(CheckpointError, match=f"checkpoint {last} cannot be read"):
            train(compose([*FAULT, "trainer.resume=auto"]), finished)


def test_checkpoint_of_another_network_is_refused(finished):
    with pytest.raises(CheckpointError, match=f"checkpoint {finished / 'last.pt'} holds a quickcnn with arlif "
                                              "neurons but this run builds a quickcnn with lif_soft"):
        train(compose([*FAULT, "trainer.resume=auto", "neuron=lif_soft"]), finished)
    overrides = ["neuron=lif_hard"]
    with pytest.raises(CheckpointError, match=f"checkpoint {finished / 'best.pt'} does not fit quickcnn with lif_hard"):
        evaluate_checkpoint(compose([f"checkpoint={finished}", *overrides], "eval"), finished / "eval", overrides)


@pytest.fixture
def no_data(monkeypatch):
    def build_data(cfg):
        raise AssertionError("data were loaded before the config error")
    monkeypatch.setattr(build, "build_data", build_data)


@pytest.mark.parametrize("override, message", [
    ("T=0", "T=0 must be a positive integer"),
    ("batch_size=-4", "batch_size=-4 must be a positive integer"),
    ("trainer.epochs=0", "trainer.epochs=0 must be a positive integer"),
    ("model=vgg11", "model=vgg11 does not fit the synthetic input (dataset.in_channels=2, dataset.image_size=8): "
                    "image_size=8 is too small"),
])
def test_config_errors_come_before_any_data(override, message, tmp_path, no_data):
    with pytest.raises(ConfigError) as err:
        train(compose([*FAULT, override]), tmp_path)
    assert message in str(err.value)


def test_channels_that_do_not_match_the_data(tmp_path, monkeypatch):
    def build_data(cfg):  # a builder that reports the configured channels but yields 2
        bundle = build_synthetic(compose([*FAULT, "dataset.in_channels=2"]))
        bundle.in_channels = cfg.dataset.in_channels
        return bundle

    monkeypatch.setattr(build, "build_data", build_data)
    with pytest.raises(ConfigError, match=r"samples have shape \(2, 8, 8\) but the config expects \(3, 8, 8\)"):
        train(compose([*FAULT, "dataset.in_channels=3"]), tmp_path)
    assert not (tmp_path / "config.yaml").exists()


def test_sync_batchnorm_on_cpu_is_a_config_error():  # with one process too, as docs/scaling.md says
    with pytest.raises(ConfigError, match="trainer.sync_batchnorm=true needs CUDA"):
        training._build_trainable_model(compose([*FAULT, "trainer.sync_batchnorm=true"]), torch.device("cpu"))
