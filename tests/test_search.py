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
from hydra.types import HydraContext
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from arlif.runner.config import CONF_DIR
from arlif.errors import ConfigError
from arlif.search.space import search_space
from arlif.search.study import build_pruner, build_sampler, check_objective, make_storage

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
    assert all((study_dir / f"{name}.png").stat().st_size > 0 for name in ("history", "intermediate_values", "slice"))


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
