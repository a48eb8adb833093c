"""Optuna plumbing shared by the sweep process and its trials: storage, sampler, pruner and objective.

Storage.  A path (the default: `<study folder>/optuna.journal`) is Optuna's journal file storage:
an append-only log guarded by a lock made with an atomic symlink, which is safe on the network file
systems (NFS) clusters share, where SQLite's file locks are not.  A URL (`sqlite:///...`,
`postgresql://...`, `mysql://...`) is a database through SQLAlchemy.

Objective.  Validation accuracy (percent) on the `dataset.val_fraction` held out of the training set:
`val_acc_best`, the best epoch's (default; the epoch best.pt keeps), or `val_acc_final`, the last
epoch's.  Test-set objectives are refused: the paper's best-test-epoch number is for reporting only.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy
import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from arlif.errors import ConfigError
from arlif.runner.records import metrics_lines, read_summary, writing
from arlif.runner.runlock import process_runs, process_start

OBJECTIVES = ("val_acc_best", "val_acc_final")
SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "gp": optuna.samplers.GPSampler, "qmc": optuna.samplers.QMCSampler}
PRUNERS = {"median": optuna.pruners.MedianPruner, "percentile": optuna.pruners.PercentilePruner,
           "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "hyperband": optuna.pruners.HyperbandPruner, "threshold": optuna.pruners.ThresholdPruner,
           "none": optuna.pruners.NopPruner}
DEFAULT_JOURNAL = "optuna.journal"


def make_storage(storage: str) -> BaseStorage:
    """A database URL (contains `://`) or a journal file path."""
    if "://" in storage:
        return RDBStorage(storage)
    with writing(Path(storage)):
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage, lock_obj=JournalFileSymlinkLock(storage)))


def _build(table: Mapping[str, type], spec: Mapping[str, Any], key: str, **extra):
    kwargs = dict(spec)
    name = kwargs.pop("name", None)
    if name not in table:
        raise ConfigError(f"{key}.name={name!r} is unknown; choose one of {sorted(table)}")
    if name == "none":
        kwargs = {}
    try:
        return table[name](**kwargs, **extra)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {name} does not accept {kwargs}: {exc}") from exc


def build_sampler(spec: Mapping[str, Any], trial_number: int) -> optuna.samplers.BaseSampler:
    """The sampler of `hydra.sweeper.sampler`, seeded from its `seed` and the number of the trial about to
    be asked, so that the trial's proposal is reproducible whichever sweep process asks for it."""
    spec = dict(spec)
    seed = spec.pop("seed", None)
    if seed is not None:  # mixed, so that consecutive trials draw unrelated random streams
        seed = int(numpy.random.SeedSequence([seed, trial_number]).generate_state(1)[0])
    return _build(SAMPLERS, spec, "hydra.sweeper.sampler", seed=seed)


def build_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    return _build(PRUNERS, spec, "hydra.sweeper.pruner")


def check_objective(objective: str, val_fraction: float) -> None:
    """Refuse, before any trial runs, an objective that is not measured on a validation split."""
    if objective not in OBJECTIVES:
        reason = ("it reads the test set, which is for reporting, never for selection"
                  if "test" in str(objective) else "it is unknown")
        raise ConfigError(f"hydra.sweeper.objective={objective} cannot be the search objective: {reason}; "
                          f"choose one of {list(OBJECTIVES)} (validation accuracy)")
    if not val_fraction:
        raise ConfigError(f"dataset.val_fraction={val_fraction} leaves no validation split, so the search "
                          "would select on the test set; set dataset.val_fraction (e.g. 0.1)")


def objective_value(objective: str, summary: Mapping[str, Any], last_epoch: Optional[Mapping[str, Any]]):
    """The objective of a run given its summary.json and its last metrics.jsonl line (None if not measured)."""
    if objective == "val_acc_best":
        return summary.get("val_acc_best")
    return None if last_epoch is None else last_epoch.get("val_acc")


def read_run(run_dir: Path) -> tuple[Optional[dict], Optional[dict]]:
    """(summary.json, last line of metrics.jsonl) of a run folder; None for what is missing."""
    lines = metrics_lines(run_dir)
    return read_summary(run_dir), (json.loads(lines[-1]) if lines else None)


def load(study_name: str, storage: BaseStorage, pruner: Optional[optuna.pruners.BasePruner] = None) -> optuna.Study:
    return optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)


def live_trial(study: optuna.Study, storage: BaseStorage, number: int) -> optuna.trial.Trial:
    """The running trial `number` of `study` (opened on `storage`), to report to or annotate from any process."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


class StudyLock:
    """An inter-process lock in the study folder (the journal's NFS-safe symlink lock) around asking for
    trials, so that concurrent sweep processes keep the study's total and never adopt the same trial."""

    def __init__(self, study_dir: Path):
        self._lock = JournalFileSymlinkLock(str(study_dir / "sweepers"))

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


def owner_stamp() -> dict:
    """Who runs a trial now: this host and process (its pid and start time) and when it last said so."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "process_start": process_start(pid), "time": time.time()}


def is_orphan(trial: optuna.trial.FrozenTrial, stale_after_s: float) -> bool:
    """A running trial whose sweep process is gone: dead on this host (its pid gone, or now another process's,
    told apart by the recorded start time, as arlif.runner.runlock does), or silent for `stale_after_s`."""
    stamp = trial.user_attrs.get("owner")
    if stamp is None:
        return True
    if stamp["host"] == socket.gethostname():
        pid, start = stamp["pid"], stamp.get("process_start")
        if not process_runs(pid) or (start and start != process_start(pid)):
            return True
    return time.time() - stamp["time"] > stale_after_s


class Heartbeat:
    """While open, restamps the owner of the given running trials every `interval_s` seconds."""

    def __init__(self, trials: list[optuna.trial.Trial], interval_s: float):
        self.trials, self.interval_s = trials, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            for trial in self.trials:
                trial.set_user_attr("owner", owner_stamp())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
