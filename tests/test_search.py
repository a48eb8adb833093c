"""Hyperparameter search (arlif.search, hydra_plugins/arlif_optuna_sweeper): real small Optuna studies.

Studies run `train.py -m` in subprocesses on a tiny synthetic preset written to a temporary config
dir (`--config-dir`).  Its random sampler is seeded so that the trials' learning rates are, by trial
number, 0.1 (learns: COMPLETE), 1e9 (nan loss: FAIL), 0.1, 1e-6 (stays at chance: PRUNED by the
threshold pruner after epoch 1).  One study is shared by several tests and is run by two sweep
processes at once on one storage.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from arlif.runner.config import CONF_DIR
from arlif.runner.config import compose as compose_run
from arlif.errors import CheckpointError, ConfigError
from arlif.runner.runlock import RunLock
from arlif.runner.training import train
from arlif.search.report import RESULTS, write_report
from arlif.search.space import hydra_value, search_space
from arlif.search.study import build_pruner, build_sampler, check_objective, is_orphan, make_storage, owner_stamp
from arlif.search.sweep import SUBDIR, StudySweep
from arlif.search.trial import trial_reporter
from helpers import tiny_run

REPO = CONF_DIR.parent
TINY = """\
# @package _global_
defaults:
  - override /dataset: synthetic
  - override /model: quickcnn
  - override /logger: none
  - override /hydra/sweeper: arlif_optuna
T: 2
batch_size: 8
dataset: {train_size: 96, test_size: 32, image_size: 8, noise: 0.5, val_fraction: 0.25}
trainer: {epochs: 2, num_workers: 0, progress_bar: false}
hydra:
  sweeper:
    study_name: tiny
    n_trials: 4
    sampler: {name: random, seed: 49}
    pruner: {name: threshold, lower: 50}
    params:
      optimizer.lr: choice(1e-6, 0.1, 1e9)
"""
# Kills its own process (SIGKILL) when TrainingRun.run_epoch is entered for the KILL_AT-th time.
KILLER = """\
import os, runpy, signal, sys
import arlif.runner.training as training
real, calls = training.TrainingRun.run_epoch, []
def run_epoch(self, epoch):
    calls.append(epoch)
    if len(calls) == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, epoch)
training.TrainingRun.run_epoch = run_epoch
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def sweep_args(conf_dir: Path, study_dir: Path, *overrides: str) -> list[str]:
    return ["-m", "--config-dir", str(conf_dir), "hparams_search=tiny", f"hydra.sweep.dir={study_dir}", *overrides]


def start(args: list[str], **env) -> subprocess.Popen:
    """`python <args>` in the checkout, one torch thread (tiny models; two sweep processes share 2 cores)."""
    return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out = proc.communicate(timeout=600)[0]
    return proc.returncode, out


def read_trials(study_dir: Path) -> list[dict]:
    with open(study_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


def train_starts(run_dir: Path) -> int:
    """How many times a run was started or resumed in this folder (its log line per start)."""
    return (run_dir / "train.log").read_text().count("quickcnn with arlif neurons")


@pytest.fixture(scope="module")
def conf_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("conf")
    (folder / "hparams_search").mkdir()
    (folder / "hparams_search" / "tiny.yaml").write_text(TINY)
    return folder


@pytest.fixture(scope="module")
def shared_study(conf_dir, tmp_path_factory):
    """Two sweep processes started together on one study folder and storage."""
    study_dir = tmp_path_factory.mktemp("study") / "tiny"
    procs = [start(["train.py", *sweep_args(conf_dir, study_dir)]) for _ in range(2)]
    ends = [finish(p) for p in procs]
    assert [rc for rc, _ in ends] == [0, 0], "\n".join(out[-3000:] for _, out in ends)
    return study_dir, read_trials(study_dir)


def test_two_sweep_processes_share_one_study(shared_study):
    study_dir, rows = shared_study
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    study = optuna.load_study(study_name="tiny", storage=make_storage(str(study_dir / "optuna.journal")))
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    for row in rows:
        run_dir = Path(row["run_dir"])
        assert run_dir == study_dir / f"trial-{int(row['number']):03d}"
        assert train_starts(run_dir) == 1  # each trial trained once, by one of the processes
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["search"]["trial"] == int(row["number"])


def test_losing_trial_is_pruned_and_keeps_its_run(shared_study):
    study_dir, rows = shared_study
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert [float(r["optimizer.lr"]) for r in pruned] == [1e-6]
    run_dir = Path(pruned[0]["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["epochs_completed"] == 1 < summary["epochs"]
    assert summary["stop_reason"].startswith("pruned by the threshold pruner after epoch 1")
    assert summary["trial"] == {"study": "tiny", "number": int(pruned[0]["number"]), "state": "PRUNED"}
    assert (run_dir / "last.pt").exists() and len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert pruned[0]["epochs"] == "1"


def test_failed_trial_is_recorded_and_the_study_finishes(shared_study):
    _, rows = shared_study
    assert [(r["state"], float(r["optimizer.lr"])) for r in rows if r["state"] != "PRUNED"] == \
        [("COMPLETE", 0.1), ("FAIL", 1e9), ("COMPLETE", 0.1)]
    failed = next(r for r in rows if r["state"] == "FAIL")
    assert "nan or inf" in failed["reason"] and failed["value"] == ""


def test_report_agrees_with_trials_csv(shared_study):
    study_dir, rows = shared_study
    report = yaml.safe_load((study_dir / "optimization_results.yaml").read_text())
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: float(r["value"]))
    assert report["best"]["trial"] == int(best["number"]) and report["best"]["value"] == float(best["value"])
    assert report["best"]["run_dir"] == best["run_dir"]
    assert report["best"]["params"] == {"optimizer.lr": float(best["optimizer.lr"])}
    assert report["trials"] == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}
    summary = json.loads((Path(best["run_dir"]) / "summary.json").read_text())
    assert summary["val_acc_best"] == report["best"]["value"]  # the objective: best validation epoch
    assert report["best"]["retrain"] == "python train.py hparams_search=tiny optimizer.lr=0.1"
    assert (report["name"], report["best_params"], report["best_value"]) == \
        ("optuna", report["best"]["params"], report["best"]["value"])  # Hydra's Optuna sweeper's keys
    assert all((study_dir / f"{name}.png").stat().st_size > 0 for name in ("history", "intermediate_values", "slice"))


def test_report_leads_with_hydras_optuna_sweeper_keys(tmp_path):
    """`name`, `best_params`, `best_value` first, as hydra-optuna-sweeper writes them (null before a trial is
    complete), then arlif's own fields."""
    study = optuna.create_study(direction="maximize")
    lr = FloatDistribution(1e-6, 1.0, log=True)

    def add(state, value, rate):
        study.add_trial(optuna.trial.create_trial(
            state=state, value=value, params={"optimizer.lr": rate}, distributions={"optimizer.lr": lr},
            user_attrs={"overrides": [f"optimizer.lr={rate}"], "run_dir": f"trial-{len(study.trials):03d}"}))

    def report():
        write_report(study, tmp_path, "val_acc_best", 4, plots=False)
        return yaml.safe_load((tmp_path / RESULTS).read_text())

    add(optuna.trial.TrialState.FAIL, None, 1.0)
    assert list(report())[:3] == ["name", "best_params", "best_value"]
    assert (report()["name"], report()["best_params"], report()["best_value"], report()["best"]) == \
        ("optuna", None, None, None)
    add(optuna.trial.TrialState.COMPLETE, 60.0, 0.1)
    add(optuna.trial.TrialState.COMPLETE, 70.0, 0.01)
    add(optuna.trial.TrialState.PRUNED, 80.0, 1e-6)  # a pruned trial's last value is never the best
    done = report()
    assert list(done)[:3] == ["name", "best_params", "best_value"]
    assert (done["best_params"], done["best_value"]) == ({"optimizer.lr": 0.01}, 70.0)
    assert done["best"]["trial"] == 2 and done["trials"] == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}
    assert done["failed"] == [{"trial": 0, "reason": None, "run_dir": "trial-000"}]


@pytest.mark.slow  # the kill soak kills searches at random moments too
def test_killed_sweep_resumes_its_trial_and_skips_finished_ones(conf_dir, tmp_path):
    study_dir = tmp_path / "killed"
    args = sweep_args(conf_dir, study_dir, "optimizer.lr=0.1", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.pruner.name=none", "hydra.sweeper.plots=false")
    # 2 epochs of trial 0, then killed on entering epoch 2 of trial 1 (after its epoch 1 checkpoint)
    rc, out = finish(start(["-c", KILLER, *args], KILL_AT="4"))
    assert rc == -signal.SIGKILL, out[-3000:]
    first, second = study_dir / "trial-000", study_dir / "trial-001"
    assert json.loads((second / "summary.json").read_text())["epochs_completed"] == 1
    finished_at = (first / "metrics.jsonl").stat().st_mtime_ns

    rc, out = finish(start(["train.py", *args]))
    assert rc == 0, out[-3000:]
    assert "resuming trial 1" in out and f"resuming from {second / 'last.pt'} after epoch 1" in out
    assert (first / "metrics.jsonl").stat().st_mtime_ns == finished_at and train_starts(first) == 1
    assert [json.loads(line)["epoch"] for line in (second / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert [(r["number"], r["state"], r["epochs"]) for r in read_trials(study_dir)] == \
        [("0", "COMPLETE", "2"), ("1", "COMPLETE", "2")]
    assert not list(study_dir.glob("*.png"))


def local_study(folder: Path, objective: str = "val_acc_best", **settings):
    """A study on a journal in `folder` and a StudySweep of it (no launcher: its run folders are written here)."""
    storage = make_storage(str(folder / "optuna.journal"))
    study = optuna.create_study(study_name="local", storage=storage, direction="maximize")
    settings = {"study_name": "local", "storage": str(folder / "optuna.journal"), "objective": objective,
                "n_trials": 1, "n_jobs": 1, "heartbeat_s": 1000.0, "sampler": {"name": "random", "seed": 0},
                "params": {}, "complements": {}, "pruner": {"name": "none"}, "plots": False, **settings}
    sweep = StudySweep(settings, OmegaConf.create({"hydra": {"sweep": {"dir": str(folder)}}}), launcher=None)
    return study, storage, sweep


def write_run(folder: Path, summary: dict, *metrics: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))


def gone_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_last_epoch_completes_a_trial_whatever_the_pruner(tmp_path):
    """A trial that trained all its epochs is COMPLETE, with its objective, even when the pruner would stop it
    there (a threshold above any accuracy): the pruner decides only between epochs."""
    study, storage, sweep = local_study(tmp_path)
    trial = study.ask()
    identity = {"study": "local", "storage": str(tmp_path / "optuna.journal"), "trial": trial.number,
                "objective": "val_acc_best", "pruner": {"name": "threshold", "lower": 101.0}, "params": {}}
    run_dir = tmp_path / SUBDIR.format(trial.number)
    summary = train(compose_run(tiny_run("dataset.val_fraction=0.25", f"++search={hydra_value(identity)}")), run_dir,
                    trial_reporter)
    assert summary["status"] == "finished" and summary["trial"]["state"] == "COMPLETE"
    assert summary["stop_reason"] is None  # nothing stopped it
    assert sweep._finish(study, storage, trial.number)
    assert (study.trials[0].state, study.trials[0].value) == (TrialState.COMPLETE, summary["val_acc_best"])


def test_every_way_a_trial_ends_is_told_to_optuna(tmp_path):
    """How a trial's run folder (and its job) ended -> the state Optuna is told, the value and the reason."""
    crashed = JobReturn()
    crashed.status, crashed._return_value = JobStatus.FAILED, RuntimeError("out of memory")
    refused = JobReturn()  # train.py raises a trial's user error, after its one line, for the launcher to record
    refused.status, refused._return_value = JobStatus.FAILED, CheckpointError("checkpoint last.pt is damaged: ...")
    lost = OSError("the node is gone")
    cases = [  # summary.json, metrics.jsonl lines, job, launcher error -> state (None: not ended), value, reason
        ({"status": "finished", "val_acc_best": 80.0, "epochs_completed": 2}, [{"epoch": 2, "val_acc": 70.0}],
         None, None, TrialState.COMPLETE, 80.0, None),
        ({"status": "finished", "epochs_completed": 2}, [], None, None,
         TrialState.FAIL, None, "the run measured no val_acc_best"),
        ({"status": "pruned", "stop_reason": "pruned after epoch 1", "epochs_completed": 1}, [], None, None,
         TrialState.PRUNED, None, "pruned after epoch 1"),
        ({"status": "diverged", "stop_reason": "nan loss", "epochs_completed": 1}, [], None, None,
         TrialState.FAIL, None, "nan loss"),
        ({"status": "interrupted", "epochs_completed": 1}, [], None, None, None, None, None),
        ({"status": "running", "epochs_completed": 1}, [], crashed, None,
         TrialState.FAIL, None, "the trial crashed: RuntimeError: out of memory"),
        ({"status": "running", "epochs_completed": 1}, [], refused, None,
         TrialState.FAIL, None, "error: checkpoint last.pt is damaged: ..."),
        ({"status": "running", "epochs_completed": 1}, [], None, lost,
         TrialState.FAIL, None, "the launcher failed: OSError: the node is gone"),
        ({"status": "running", "epochs_completed": 1}, [], None, lost, None, None, None),  # its run holds its folder
        (None, [], None, None, None, None, None),  # never started
    ]
    study, storage, sweep = local_study(tmp_path)
    for number, (summary, metrics, job, error, state, value, reason) in enumerate(cases):
        study.ask()
        run_dir = tmp_path / SUBDIR.format(number)
        if summary is not None:
            write_run(run_dir, summary, *metrics)
        lock = RunLock(run_dir) if number == 8 else None  # a job that outlived its launcher still runs
        if lock:
            lock.acquire()
        try:
            ended = sweep._finish(study, storage, number, job, error)
        finally:
            if lock:
                lock.release()
        trial = study.trials[number]
        assert (ended, trial.state, trial.value, trial.user_attrs.get("reason")) == \
            (state is not None, state or TrialState.RUNNING, value, reason), number
    (tmp_path / "final").mkdir()
    final, final_storage, final_sweep = local_study(tmp_path / "final", "val_acc_final")
    final.ask()
    write_run(tmp_path / "final" / SUBDIR.format(0), cases[0][0], *cases[0][1])
    assert final_sweep._finish(final, final_storage, 0)
    assert final.trials[0].value == 70.0  # the last epoch's validation accuracy


def test_a_rerun_claims_trials_by_how_their_last_sweep_left_them(tmp_path):
    """Running trials whose sweep process is gone: never launched -> FAIL; its run still holds its folder ->
    left; ended -> told; otherwise resumed.  A trial of a live sweep process is left; new trials fill up
    to n_trials."""
    study, storage, sweep = local_study(tmp_path, n_trials=6, n_jobs=2)
    dead = {"host": socket.gethostname(), "pid": gone_pid(), "process_start": None, "time": time.time()}
    for number in range(5):
        trial = study.ask()
        trial.set_user_attr("owner", owner_stamp() if number == 3 else dead)
        if number:
            trial.set_user_attr("overrides", [])
            trial.set_user_attr("run_dir", str(tmp_path / SUBDIR.format(number)))
    write_run(tmp_path / SUBDIR.format(1), {"status": "running"})
    write_run(tmp_path / SUBDIR.format(2), {"status": "finished", "val_acc_best": 60.0, "epochs_completed": 2})
    write_run(tmp_path / SUBDIR.format(4), {"status": "interrupted", "epochs_completed": 1})
    lock = RunLock(tmp_path / SUBDIR.format(1))
    lock.acquire()
    try:
        batch = sweep._claim(study, storage, search_space({}, {}, []))
    finally:
        lock.release()
    assert [t.number for t in batch] == [4, 5]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.COMPLETE,
                                              TrialState.RUNNING, TrialState.RUNNING, TrialState.RUNNING]
    assert study.trials[4].user_attrs["owner"]["pid"] == os.getpid()  # adopted by this sweep process


def test_a_trial_is_orphaned_when_its_own_sweep_process_is_gone():
    """Dead on this host (pid gone, or now another process's), or silent too long; a live stamp is not."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = owner_stamp()

        def orphan(**stamp):
            trial = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={"owner": {**me, **stamp}})
            return is_orphan(trial, stale_after_s=100.0)

        assert not orphan() and not orphan(host="elsewhere", pid=1)
        assert orphan(pid=gone_pid()) and orphan(pid=other.pid)  # the second: the pid runs, but not our process
        assert not orphan(pid=other.pid, process_start=None)  # a stamp without a start time: the pid alone
        assert orphan(pid=gone_pid(), process_start=None)
        assert orphan(host="elsewhere", time=time.time() - 101) and orphan(time=time.time() - 101)
        assert is_orphan(optuna.trial.create_trial(state=TrialState.RUNNING), stale_after_s=100.0)  # never stamped
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("override, error", [
    ("hydra.sweeper.objective=test_acc_best",
     "error: hydra.sweeper.objective=test_acc_best cannot be the search objective: it reads the test set, which is "
     "for reporting, never for selection; choose one of ['val_acc_best', 'val_acc_final'] (validation accuracy)"),
    ("dataset.val_fraction=0",
     "error: dataset.val_fraction=0 leaves no validation split, so the search would select on the test set; "
     "set dataset.val_fraction (e.g. 0.1)"),
], ids=["test-set-objective", "no-validation-split"])
def test_a_test_set_objective_is_refused_before_any_trial(override, error, tmp_path, capsys):
    """The sweeper as Hydra instantiates it for `train.py -m hparams_search=quickstart <override>`."""
    study_dir = tmp_path / "refused"
    overrides = ["hparams_search=quickstart", override, f"hydra.sweep.dir={study_dir}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides, return_hydra_config=True)
        context = HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=Callbacks(cfg))
        sweeper = Plugins.instance().instantiate_sweeper(hydra_context=context, task_function=lambda _: None,
                                                         config=cfg)
        with pytest.raises(SystemExit) as stop:
            sweeper.sweep([o for o in overrides if not o.startswith("hydra.")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [error]
    assert not study_dir.exists()


def test_search_space_from_presets_and_command_line():
    preset = {"optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "loss.tet_weight": "interval(0.5, 1.0)",
              "model.dropout": "choice(0.0, 0.2)"}
    command_line = ["hparams_search=x", "model.dropout=0.1", "T=range(2, 9, 2)", "batch_size=int(interval(8, 64))"]
    space = search_space(preset, {"loss.mse_weight": "loss.tet_weight"}, command_line)
    assert space.dimensions == {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
                                "loss.tet_weight": FloatDistribution(0.5, 1.0),
                                "T": IntDistribution(2, 8, step=2), "batch_size": IntDistribution(8, 64)}
    assert space.fixed == ["hparams_search=x", "model.dropout=0.1"]
    assert space.overrides({"optimizer.lr": 0.01, "loss.tet_weight": 0.7, "T": 4, "batch_size": 16}) == \
        ["optimizer.lr=0.01", "loss.tet_weight=0.7", "T=4", "batch_size=16", "loss.mse_weight=0.3"]
    assert search_space({}, {}, ["neuron=arlif,lif_soft"]).dimensions == \
        {"neuron": CategoricalDistribution(["arlif", "lif_soft"])}


@pytest.mark.parametrize("params, complements, arguments, message", [
    ({"optimizer.lr": "0.1"}, {}, [], r"hydra.sweeper.params.optimizer.lr: 'optimizer.lr=0.1' is not a search"),
    ({"optimizer.lr": "interval(1, "}, {}, [], r"hydra.sweeper.params.optimizer.lr: cannot parse"),
    ({}, {}, ["seed=glob(*)"], r"command line: 'seed=glob\(\*\)' is not a search dimension"),
    ({}, {"loss.mse_weight": "loss.tet_weight"}, [], r"loss.tet_weight must be a searched number"),
])
def test_bad_search_space_is_a_config_error(params, complements, arguments, message):
    with pytest.raises(ConfigError, match=message):
        search_space(params, complements, arguments)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml")))
def test_every_preset_is_a_valid_search(preset):
    """Each preset composes, selects on a validation split, and builds its space, sampler and pruner."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", [f"hparams_search={preset}"], return_hydra_config=True)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper)
    check_objective(sweeper["objective"], cfg.dataset.val_fraction)
    space = search_space(sweeper["params"], sweeper["complements"], [f"hparams_search={preset}"])
    assert {"optimizer.lr", "loss.tet_weight"} <= set(space.dimensions)
    assert space.complements == {"loss.mse_weight": "loss.tet_weight"}
    build_sampler(sweeper["sampler"], 0)
    build_pruner(sweeper["pruner"])
    assert cfg.hydra.sweep.dir == f"multirun/search/{sweeper['study_name']}"


@pytest.mark.slow
def test_quickstart_search_prunes_and_finishes_in_5_minutes(tmp_path):
    """The README's search command as is (W&B offline included), on a quiet 2-core CPU."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "train.py", "-m", "hparams_search=quickstart",
                          f"hydra.sweep.dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-3000:]
    states = [row["state"] for row in read_trials(tmp_path)]
    assert len(states) == 12 and "PRUNED" in states and states.count("COMPLETE") >= 4
    assert (tmp_path / "importances.png").exists()
    assert seconds < 300
