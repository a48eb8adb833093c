"""Several processes on the CPU (Gloo): torchrun, submitit jobs and tasks, sharding, SyncBatchNorm.

CUDA/NCCL cannot be exercised here; these runs take the same code path with the Gloo backend.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from arlif.runner import distributed
from arlif.runner.cli import torchrun_argv
from arlif.runner.config import CONF_DIR, compose
from arlif.errors import ConfigError
from arlif.models.layers import BN_MODES, SeqBatchNorm2d
from arlif.models.sync_bn import SeqSyncBatchNorm, convert_sync_batchnorm
from arlif.runner.build import build_model
from arlif.runner.evaluation import evaluate_checkpoint
from helpers import tiny_run
from fixtures_data import write_cifar10_dvs

REPO = CONF_DIR.parent
# 33 test samples: two processes get 17 and 16, so a padded or duplicated sample would show
SMALL = tiny_run("trainer.epochs=2", "dataset.train_size=64", "dataset.test_size=33")


def run(args, cwd, timeout=300):
    # one thread per process (torchrun sets this too): several processes share this machine's cores
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.slow  # two torchrun processes (11 s); the DDP stop-and-resume in the slow checks runs torchrun too
def test_torchrun_two_processes_match_single_process_eval(tmp_path):
    """Rank 0 alone picks (and creates) the timestamped run folder; rank 1 writes nothing of its own."""
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "train.py"), *SMALL], cwd=tmp_path)
    summaries = list(tmp_path.rglob("summary.json"))
    assert len(summaries) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
    run_dir = summaries[0].parent
    summary = json.loads(summaries[0].read_text())
    assert summary["status"] == "finished" and summary["processes"] == 2
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]

    overrides = ["trainer.device=cpu"]
    result = evaluate_checkpoint(compose([f"checkpoint={run_dir / 'last.pt'}", *overrides], "eval"),
                                 tmp_path / "eval", overrides)
    assert result["test_samples"] == 33
    assert result["test_acc"] == summary["test_acc_final"] == rows[-1]["test_acc"]
    assert result["test_loss"] == pytest.approx(rows[-1]["test_loss"], rel=1e-5)  # other batches: rounding differs
    assert result["firing_rates"] == pytest.approx(rows[-1]["firing_rates"], rel=1e-5)


def submitit_local(tmp_path, *overrides):
    """A multirun through hydra/launcher=submitit_local, started outside the checkout (jobs must still import arlif)."""
    run([sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=submitit_local",
         "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={tmp_path / 'sweep'}", *SMALL, *overrides], cwd=tmp_path)
    return sorted((tmp_path / "sweep").glob("*/summary.json"))


@pytest.mark.slow  # the launcher path is the two-task job's below; this adds a second job
def test_submitit_local_multirun_of_two_jobs(tmp_path):
    summaries = submitit_local(tmp_path, "seed=1,2", "trainer.epochs=1")
    assert [json.loads(p.read_text())["seed"] for p in summaries] == [1, 2]
    assert all(json.loads(p.read_text())["status"] == "finished" for p in summaries)


@pytest.mark.slow  # torchrun's two processes above cover the process group
def test_submitit_job_with_two_tasks_trains_as_one_ddp_run(tmp_path):
    """What the multi-GPU SLURM launcher configs do: one job, one task per device, one process group."""
    summaries = submitit_local(tmp_path, "hydra.launcher.tasks_per_node=2")
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["processes"] == 2 and summary["status"] == "finished"


def test_samplers_split_the_data_without_padding(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    shards = []
    for r in range(3):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shards.append(list(distributed.ShardSampler(10)))
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_epoch_batches_depend_on_seed_and_epoch_only_and_skip_on_resume():
    data = TensorDataset(torch.arange(20))

    def batches(epoch, done=0):
        sampler = distributed.EpochBatches(data, 4, seed=7, generator=torch.Generator())
        sampler.start(epoch, done)
        return list(sampler)

    assert batches(1) == batches(1) != batches(2)
    assert batches(1, done=3) == batches(1)[3:] and len(batches(1)) == 5


@pytest.mark.parametrize("bn_mode", BN_MODES)
def test_seq_sync_batchnorm_is_seq_batchnorm_in_one_process(bn_mode):
    cfg = compose([*SMALL, f"model.bn_mode={bn_mode}", "T=2", "model.tdbn_threshold=0.5"])
    torch.manual_seed(0)
    plain = build_model(cfg)
    synced = convert_sync_batchnorm(build_model(cfg))
    synced.load_state_dict(plain.state_dict())
    norms = [m for m in synced.modules() if isinstance(m, SeqBatchNorm2d)]
    assert norms and all(isinstance(m, SeqSyncBatchNorm) for m in norms)
    assert synced.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(6, 2, 8, 8)
    assert torch.equal(plain(x, T=2), synced(x, T=2))  # training mode: per-step statistics
    torch.testing.assert_close(list(plain.buffers()), list(synced.buffers()))  # batched vs per-step: fp32 rounding


def test_torchrun_argv(monkeypatch):
    argv = ["train.py", "T=2", "hydra.run.dir=/runs/a"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert torchrun_argv(argv) == argv
    monkeypatch.setenv("RANK", "1")
    assert torchrun_argv(argv) == ["train.py", "T=2", "hydra.run.dir=.", "hydra.output_subdir=null",
                                   "hydra/job_logging=stdout"]
    with pytest.raises(ConfigError, match="multirun"):
        torchrun_argv(["train.py", "-m", "seed=1,2"])


@pytest.mark.slow  # 35 s; the mutation check runs it for the mutants of resume and sharding
def test_ddp_stop_on_one_rank_then_exact_resume(tmp_path):
    """SIGTERM reaches rank 1 only: both ranks stop after the same batch, save, and the resumed run
    reproduces an uninterrupted two-process run's metrics.

    The runs train with every source of randomness of the published DVS recipe: CIFAR10-DVS fixture
    files with the per-sample crop, flip and one-op policy in a loader worker per process, and neuron
    dropout; 70 training samples make 17 batches of 2 per process.
    """
    from test_faults import DRIVE

    data_dir = tmp_path / "data"
    write_cifar10_dvs(data_dir, list(range(8)), 200)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    small = ["dataset=cifar10_dvs", f"data_dir={data_dir}", "dataset.test_per_class=1", "dataset.split_sizes=[70,10]",
             "dataset.image_size=16", "model=quickcnn", "model.dropout=0.3", "logger=none", "trainer.epochs=3",
             "batch_size=2", "trainer.num_workers=1", "T=2", "trainer.deterministic=true"]
    run([*torchrun, "train.py", *small, f"hydra.run.dir={tmp_path / 'steady'}"], cwd=REPO)
    stopped = subprocess.run([*torchrun, "--no-python", sys.executable, "-c", DRIVE, "SIGTERM@1", "19", *small,
                              f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True,
                             timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert stopped.returncode != 0 and "exitcode: 3" in stopped.stderr
    partial = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["partial_epoch"]
    assert partial["epoch"] == 2 and [r["batches"] for r in partial["ranks"]] == [10, 10]
    run([*torchrun, "train.py", *small, f"hydra.run.dir={tmp_path / 'run'}", "trainer.resume=auto"], cwd=REPO)

    def rows(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in ("epoch_time_s", "images_per_s")}
                for line in lines]

    assert rows("run") == rows("steady") and len(rows("steady")) == 3
