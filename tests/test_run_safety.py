"""Operating runs safely: Ctrl-C saves and resumes exactly, a second one aborts; one run per run folder,
and a dead holder does not block a resume; a killed run reads as killed; records are written whole;
failed starts leave no folder; every user error exits 2 with one line.

Signals and launches go to real `train.py` subprocesses (test_faults' driver); resumed runs must
reproduce an uninterrupted run's per-epoch metrics number for number (CPU, deterministic).
"""

import json
import os
import runpy
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import MissingConfigException

from arlif.runner.checkpoint import load_checkpoint, write_atomically
from arlif.runner.cli import EXIT_ABORTED, EXIT_INTERRUPTED, hydra_message
from arlif.runner.config import CONF_DIR, compose
from arlif.data.layout import no_empty_folders_left
from arlif.errors import ConfigError
from arlif.runner.training import train
from arlif.reports.runs import read_summaries, read_wandb_runs
from arlif.runner.launch_guard import RunFolderGuard
from arlif.runner.runlock import LOCK_NAME, STALE_AFTER_S, RunFolderBusy, RunLock, effective_status, holder_gone, this_process
from test_faults import BATCHES, DRIVE, FAULT, REPO, interactive, rows, run_driver


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def steady(tmp_path_factory):
    """The uninterrupted run (synthetic data, 3 epochs of 16 batches) the resumed runs must reproduce."""
    run_dir = tmp_path_factory.mktemp("steady")
    train(compose(FAULT), run_dir)
    return rows(run_dir)


def python(*args, env=None):
    """`python *args` in the checkout, in its own process group; `env` replaces the environment."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=os.environ if env is None else env, preexec_fn=interactive, start_new_session=True)


def snapshot(folder):
    """Every file under `folder` with its content and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def summary_of(run_dir):
    return json.loads((Path(run_dir) / "summary.json").read_text())


@pytest.mark.slow  # the SIGTERM stop takes the same path
def test_ctrl_c_saves_mid_epoch_exits_3_and_resumes_exactly(tmp_path, steady):
    # Ctrl-C reaches the whole process group, the data-loader worker included
    out = run_driver("SIGINT", BATCHES + 3, tmp_path, "trainer.num_workers=1")
    assert out.returncode == EXIT_INTERRUPTED, out.stderr
    assert "Traceback" not in out.stderr and "KeyboardInterrupt" not in out.stderr, out.stderr
    assert out.stderr.splitlines()[-1] == (f"stopped: received SIGINT; continue with trainer.resume=auto "
                                           f"hydra.run.dir={tmp_path}")
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and state["partial_epoch"]["ranks"][0]["batches"] == 10
    summary = summary_of(tmp_path)
    assert (summary["status"], summary["stop_reason"]) == ("interrupted", "received SIGINT")
    assert not (tmp_path / LOCK_NAME).exists()  # released on the way out
    summary = train(compose([*FAULT, "trainer.resume=auto"]), tmp_path)
    assert summary["status"] == "finished" and rows(tmp_path) == steady


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once(tmp_path):
    out = run_driver("SIGINT", f"{BATCHES + 3},{BATCHES + 4}", tmp_path)  # the second before the stop's check
    assert out.returncode == EXIT_ABORTED, out.stderr
    assert out.stderr.splitlines()[-1].startswith("aborted by Ctrl-C") and "Traceback" not in out.stderr
    assert load_checkpoint(tmp_path / "last.pt")["partial_epoch"] is None  # nothing saved after epoch 1
    assert summary_of(tmp_path)["status"] == "running" and not (tmp_path / LOCK_NAME).exists()
    assert effective_status(summary_of(tmp_path), tmp_path) == "killed"


def test_sigkill_leaves_a_stale_lock_reported_killed_and_resume_proceeds(tmp_path, steady):
    out = run_driver("SIGKILL", BATCHES + 5, tmp_path)
    assert out.returncode == -signal.SIGKILL, out.stderr
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    summary = summary_of(tmp_path)
    assert summary["status"] == "running" and summary["holder"] == holder and summary["updated_at"]
    assert holder["host"] == socket.gethostname()
    assert holder_gone(holder, 0.0) == f"process {holder['pid']} no longer runs"

    script = runpy.run_path(str(REPO / "scripts" / "make_tables.py"), run_name="make_tables")
    printed = script["make_tables"](script["parse_args"]([str(tmp_path), "--out", str(tmp_path / "tables")]))
    row = (tmp_path / "tables" / "other_runs.csv").read_text().splitlines()[1]
    assert row.endswith(",killed") and "| 1/3 | killed |" in printed

    summary = train(compose([*FAULT, "trainer.resume=auto"]), tmp_path)  # the dead holder does not block it
    assert summary["status"] == "finished" and rows(tmp_path) == steady
    assert read_summaries([tmp_path])[0]["status"] == "finished" and not (tmp_path / LOCK_NAME).exists()


@pytest.fixture
def finished(tmp_path):
    run_dir = tmp_path / "run"
    train(compose([*FAULT, "trainer.epochs=1"]), run_dir)
    return run_dir


@pytest.fixture
def held(finished):
    """A finished run folder, held by a live process (this one)."""
    run_dir = finished
    lock = RunLock(run_dir)
    lock.acquire()
    yield run_dir, lock.holder
    lock.release()


def test_a_second_run_on_a_held_folder_exits_2_and_changes_nothing(held):
    run_dir, holder = held
    before = snapshot(run_dir)
    out = python("train.py", *FAULT, "trainer.resume=auto", f"hydra.run.dir={run_dir}")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: run folder {run_dir} is in use by another run (host {holder['host']}, "
                                 f"pid {os.getpid()}, started {holder['started']},") and out.stderr.count("\n") == 1
    assert snapshot(run_dir) == before
    with pytest.raises(RunFolderBusy, match=f"run folder {run_dir} is in use"):  # past the launch check too
        train(compose([*FAULT, "trainer.resume=auto", "trainer.epochs=2"]), run_dir)
    assert snapshot(run_dir) == before
    assert effective_status(summary_of(run_dir) | {"status": "running"}, run_dir) == "running"


def test_stale_holders(monkeypatch):
    me = this_process()
    assert holder_gone(me, 0.0) is None
    remote = {**me, "host": "elsewhere", "pid": 1}
    assert holder_gone(remote, STALE_AFTER_S - 1) is None
    assert holder_gone(remote, STALE_AFTER_S + 1) == f"its last heartbeat is {STALE_AFTER_S + 1:.0f} s old"
    assert holder_gone({**me, "boot_id": "another-boot"}, 0.0) == "its machine restarted since"
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    requeued = {**remote, "slurm_job": {"id": "77", "restart": 0}}
    assert holder_gone(requeued, 0.0) == "its SLURM job 77 was requeued"
    assert holder_gone({**requeued, "slurm_job": {"id": "77", "restart": 1}}, 0.0) is None  # the same job's own run


def test_a_holder_runs_only_while_its_own_process_does():
    """On the holder's host a pid alone does not say it runs: after the holder dies its pid may belong to
    another process (containers, wrap-around), told apart by the recorded process start time.  A record
    without a start time (no /proc) is judged by its pid; on another host the pid says nothing."""
    other = subprocess.Popen([sys.executable, "-c", "import json, time; from arlif.runner.runlock import this_process;"
                              " print(json.dumps(this_process()), flush=True); time.sleep(60)"],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        holder = json.loads(other.stdout.readline())
        assert holder["pid"] == other.pid and holder["process_start"]
        assert holder_gone(holder, 0.0) is None
        reused = {**holder, "process_start": this_process()["process_start"]}  # the pid, but not that process
        assert holder_gone(reused, 0.0) == f"process {other.pid} no longer runs (the pid now belongs to another process)"
    finally:
        other.kill()
        other.wait()
        other.stdout.close()
    assert holder_gone(holder, 0.0) == f"process {other.pid} no longer runs"
    assert holder_gone({**holder, "process_start": None}, 0.0) == f"process {other.pid} no longer runs"
    assert holder_gone({**holder, "host": "elsewhere"}, STALE_AFTER_S - 1) is None  # its heartbeat decides


def test_records_are_written_whole_and_readers_skip_broken_ones(tmp_path, caplog):
    path = tmp_path / "summary.json"
    path.write_text('{"status": "finished"}')

    def torn(tmp):
        tmp.write_text('{"status": "runn')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, torn)
    assert json.loads(path.read_text()) == {"status": "finished"}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text('{"status": "runn')
    assert read_summaries([tmp_path / "a"]) == []
    assert f"skipping {tmp_path / 'a' / 'summary.json'}: it cannot be read as JSON" in caplog.text


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    new = tmp_path / "outputs" / "run"
    out = python("train.py", *FAULT, "T=0", f"hydra.run.dir={new}")
    assert (out.returncode, out.stderr) == (2, "error: T=0 must be a positive integer\n")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow  # the same removal (remove_failed_start) for a multirun's job
def test_a_failed_multirun_start_leaves_no_sweep_folder(tmp_path):
    sweep = tmp_path / "multirun"
    out = python("train.py", "-m", "dataset=cifar10", "model=quickcnn", "logger=none",
                 f"data_dir={tmp_path / 'nodata'}", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 2 and f"not found or incomplete under {tmp_path / 'nodata'}" in out.stderr
    assert not sweep.exists()


@pytest.mark.slow
def test_a_failed_resume_keeps_the_existing_folder(finished, tmp_path):
    ours = {p: v for p, v in snapshot(finished).items() if ".hydra" not in p.parts and p.name != "train.log"}
    out = python("train.py", *FAULT, "T=0", "trainer.resume=auto", f"hydra.run.dir={finished}")
    assert out.returncode == 2 and all(snapshot(finished)[p] == v for p, v in ours.items())
    (tmp_path / "empty").mkdir()  # a folder that existed before the launch stays, even with nothing in it
    out = python("train.py", *FAULT, "T=0", f"hydra.run.dir={tmp_path / 'empty'}")
    assert out.returncode == 2 and (tmp_path / "empty" / ".hydra").is_dir()


def test_override_typos_exit_2_with_one_line(tmp_path):
    out = python("train.py", "trainer.epoch=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert (out.returncode, out.stderr) == (2, "error: Could not override 'trainer.epoch'; To append to your config "
                                               "use +trainer.epoch=1 (Key 'epoch' is not in struct)\n")
    assert not (tmp_path / "run").exists()
    with pytest.raises(MissingConfigException) as err:  # what train.py gets from Hydra for an unknown option
        compose(["neuron=arlf"])
    options = ", ".join(sorted(p.stem for p in (CONF_DIR / "neuron").glob("*.yaml")))
    assert "lif_soft" in options and hydra_message(err.value) == (
        f"In 'config': Could not find 'neuron/arlf'; Available options in 'neuron': {options}")


def test_slurm_launcher_without_slurm_is_one_line(tmp_path, monkeypatch, capsys):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("config", ["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                            return_hydra_config=True)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no sbatch here
    with pytest.raises(SystemExit) as exit_info:
        RunFolderGuard().on_multirun_start(cfg)
    assert exit_info.value.code == 2 and not (tmp_path / "sweep").exists()
    err = capsys.readouterr().err
    assert err.startswith("error: hydra/launcher=slurm* submits SLURM jobs, but this machine has no `sbatch`")
    assert err.count("\n") == 1


def test_wandb_tables_without_a_login_are_a_config_error(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(ConfigError, match="--wandb me/arlif: W&B cannot list its runs .*wandb login"):
        read_wandb_runs("me/arlif")


@pytest.mark.slow
def test_ctrl_c_stops_a_local_multirun_and_resume_auto_continues_it(tmp_path):
    sweep = tmp_path / "sweep"
    out = python("-c", DRIVE, "SIGINT", BATCHES + 3, "-m", *FAULT, "seed=1,2", f"hydra.sweep.dir={sweep}")
    # the Ctrl-C came in the second epoch of the first run
    assert out.returncode == EXIT_INTERRUPTED, out.stderr
    assert out.stderr.splitlines()[-1] == (f"stopped: received SIGINT; the sweep stops after {sweep / '0-'}"
                                           f"{summary_of(next(sweep.glob('0-*')))['experiment']}-seed1. Continue it "
                                           f"with the same command plus trainer.resume=auto hydra.sweep.dir={sweep}")
    assert [p.name[:2] for p in sorted(sweep.glob("*-seed*"))] == ["0-"]  # the second run never started
    out = python("train.py", "-m", *FAULT, "seed=1,2", f"hydra.sweep.dir={sweep}", "trainer.resume=auto")
    assert out.returncode == 0, out.stderr
    assert [summary_of(p)["status"] for p in sorted(sweep.glob("*-seed*"))] == ["finished", "finished"]


def test_a_failed_download_leaves_no_empty_folders(tmp_path):
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)  # there before: stays
    with pytest.raises(OSError, match="no network"):
        with no_empty_folders_left(tmp_path / "data"):
            (tmp_path / "data" / "CIFAR10DVS" / "airplane").mkdir(parents=True)
            (tmp_path / "data" / "DvsGesture").mkdir()
            (tmp_path / "data" / "DvsGesture" / "part.tar.gz").write_bytes(b"partial")
            raise OSError("no network")
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == ["DvsGesture", "cifar-10-batches-py",
                                                                       "part.tar.gz"]
    with pytest.raises(OSError, match="no network"):
        with no_empty_folders_left(tmp_path / "new" / "data"):
            (tmp_path / "new" / "data" / "tiny-imagenet-200").mkdir(parents=True)
            raise OSError("no network")
    assert not (tmp_path / "new").exists()
