"""The sweep process: ask Optuna for trials, launch them as Hydra jobs, tell Optuna how each ended.

Trials run in batches of `n_jobs` through the configured Hydra launcher (in this process, or as
submitit jobs locally or on SLURM).  Trial N always runs in `<study folder>/trial-<N>` with
`trainer.resume=auto`, so the study survives kills: a rerun of the same command adopts the running
trials whose sweep process is gone (dead on this host, or silent for STALE_BEATS heartbeats),
leaves those whose job still runs (its run folder is held, arlif.runner.runlock), finishes those whose
run folder says they ended and resumes the others from their last.pt, then asks
for new trials until the study holds `n_trials`.  Asking and adopting happen under a lock in the
study folder, so several sweep processes on one storage share the study without duplicate trial
numbers or surplus trials.  How a trial ended is read from its run folder (summary.json,
metrics.jsonl): finished -> COMPLETE with the objective, pruned -> PRUNED, diverged or crashed -> FAIL
with the reason in the trial's user attrs.  A trial stopped by a user error (a damaged checkpoint to resume,
a bad value of its sampled config) is a FAIL whose reason is its `error:` line, and the sweep goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from arlif.errors import ConfigError, user_error_in
from arlif.runner.runlock import live_holder
from arlif.search.report import write_report
from arlif.search.space import SearchSpace, hydra_value, search_space
from arlif.search.study import (DEFAULT_JOURNAL, Heartbeat, StudyLock, build_pruner, build_sampler, check_objective,
                                is_orphan, live_trial, make_storage, objective_value, owner_stamp, read_run)

log = logging.getLogger(__name__)

SUBDIR = "trial-{:03d}"
STALE_BEATS = 4


def _crash(job: Optional[JobReturn]) -> Optional[str]:
    if job is None or job.status != JobStatus.FAILED:
        return None
    try:
        job.return_value  # re-raises the job's exception
    except Exception as exc:  # noqa: BLE001 - any exception of the trial is its failure reason
        err = user_error_in(exc)
        return f"error: {err}" if err is not None else f"the trial crashed: {type(exc).__name__}: {exc}"
    return "the trial crashed"


class StudySweep:
    """One sweep process of the study configured under `hydra.sweeper` (see the plugin's config)."""

    def __init__(self, settings: Mapping[str, Any], config: DictConfig, launcher):
        self.s = SimpleNamespace(**settings)
        self.config, self.launcher = config, launcher
        self.folder = Path(config.hydra.sweep.dir).resolve()
        self.storage_url = self.s.storage or str(self.folder / DEFAULT_JOURNAL)

    def _check(self) -> None:
        for key in ("n_trials", "n_jobs"):
            value = getattr(self.s, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}={value!r} must be a positive integer")
        if not self.s.heartbeat_s > 0:
            raise ConfigError(f"hydra.sweeper.heartbeat_s={self.s.heartbeat_s!r} must be a positive number of seconds")
        check_objective(self.s.objective, OmegaConf.select(self.config, "dataset.val_fraction"))
        build_pruner(self.s.pruner)
        build_sampler(self.s.sampler, 0)

    def run(self, arguments: Sequence[str]) -> list:
        """Run the study to `n_trials` trials; returns the launcher's results, batch by batch."""
        self._check()
        # every trial resumes its own folder; a `trainer.resume=auto` the rerun hint adds changes nothing
        arguments = [arg for arg in arguments if not arg.startswith("trainer.resume=")]
        space = search_space(self.s.params, self.s.complements, arguments)
        self.folder.mkdir(parents=True, exist_ok=True)
        storage, lock = make_storage(self.storage_url), StudyLock(self.folder)
        with lock:
            study = optuna.create_study(study_name=self.s.study_name, storage=storage, direction="maximize",
                                        load_if_exists=True)
            self._check_same_search(study, space)
        log.info("study %s in %s (storage %s): %d of %d trials exist", self.s.study_name, self.folder,
                 self.storage_url, len(study.get_trials(deepcopy=False)), self.s.n_trials)
        returns, reported = [], False
        try:
            while True:
                with lock:
                    batch = self._claim(study, storage, space)
                if not batch:
                    break
                reported = False
                results, stopped = self._launch(study, storage, batch)
                returns.append(results)
                self._report(study)
                reported = True
                if stopped:
                    break
        finally:
            if not reported:  # nothing ran (a finished study), or a batch ended in an exception
                self._report(study)
        return returns

    def _report(self, study: optuna.Study) -> None:
        write_report(study, self.folder, self.s.objective, self.s.n_trials, self.s.plots)

    def _check_same_search(self, study: optuna.Study, space: SearchSpace) -> None:
        """A study keeps one search: refuse to add trials of another config or space to it."""
        search = {**space.describe(), "objective": self.s.objective}
        stored = study.user_attrs.get("search")
        if stored is None:
            study.set_user_attr("search", search)
        elif stored != search:
            changed = sorted(k for k in search if stored.get(k) != search[k])
            raise ConfigError(f"study {self.s.study_name} in {self.storage_url} was started with other {changed} "
                              f"({stored}); rerun it with the same command, or start a new study with "
                              "hydra.sweeper.study_name=NAME hydra.sweep.dir=FOLDER")

    def _claim(self, study: optuna.Study, storage, space: SearchSpace) -> list[optuna.trial.Trial]:
        """Up to n_jobs trials to run now: orphaned running ones first, then new ones up to n_trials."""
        batch = []
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if len(batch) == self.s.n_jobs:
                break
            if not is_orphan(frozen, STALE_BEATS * self.s.heartbeat_s):
                continue
            if "overrides" not in frozen.user_attrs:  # its sweep process died between asking and launching
                study.tell(frozen.number, state=TrialState.FAIL, skip_if_finished=True)
                continue
            if live_holder(self.folder / SUBDIR.format(frozen.number)) is not None:
                continue  # its job outlived its sweep process (e.g. on SLURM): a later sweep tells how it ended
            if self._finish(study, storage, frozen.number):
                continue  # it had ended; only the tell was lost
            trial = live_trial(study, storage, frozen.number)
            trial.set_user_attr("owner", owner_stamp())
            log.info("resuming trial %d, left running by a sweep process that is gone", frozen.number)
            batch.append(trial)
        while len(batch) < self.s.n_jobs:
            number = len(study.get_trials(deepcopy=False))  # the next trial number (we hold the lock)
            if number >= self.s.n_trials:
                break
            study.sampler = build_sampler(self.s.sampler, number)
            trial = study.ask(space.dimensions)
            trial.set_user_attr("owner", owner_stamp())
            trial.set_user_attr("overrides", space.fixed + space.overrides(trial.params))
            trial.set_user_attr("run_dir", str(self.folder / SUBDIR.format(trial.number)))
            batch.append(trial)
        return batch

    def _job_overrides(self, trial: optuna.trial.Trial) -> list[str]:
        """The trial's overrides plus its run folder, resume and identity (the `search` node of its config)."""
        identity = {"study": self.s.study_name, "storage": self.storage_url, "trial": trial.number,
                    "objective": self.s.objective, "pruner": dict(self.s.pruner), "params": trial.params}
        extra = [f"hydra.sweep.subdir={SUBDIR.format(trial.number)}", "trainer.resume=auto",
                 f"++search={hydra_value(identity)}"]
        if OmegaConf.select(self.config, "logger.name") == "wandb":
            extra += [f"logger.group={hydra_value(self.s.study_name)}",
                      f"logger.run_name={hydra_value(f'{self.s.study_name}-trial{trial.number}')}"]
        return list(trial.user_attrs["overrides"]) + extra

    def _launch(self, study: optuna.Study, storage, batch: list) -> tuple[Sequence[JobReturn], bool]:
        """Run one batch; returns the launcher's results and whether the sweep must stop here."""
        jobs = [self._job_overrides(trial) for trial in batch]
        results, error = [], None
        with Heartbeat(batch, self.s.heartbeat_s):
            try:
                # Hydra's job numbers (its log's #N) are the trial numbers when the batch's are consecutive
                results = self.launcher.launch(jobs, initial_job_idx=batch[0].number)
            except Exception as exc:  # noqa: BLE001 - e.g. a killed submitit job; the run folders say the rest
                error = exc
        stopped = False
        for i, trial in enumerate(batch):
            if not self._finish(study, storage, trial.number, results[i] if results else None, error):
                log.warning("trial %d stopped before it ended; rerun the same command to continue it", trial.number)
                stopped = True
        return results, stopped

    def _finish(self, study: optuna.Study, storage, number: int, job: Optional[JobReturn] = None,
                error: Optional[BaseException] = None) -> bool:
        """Tell Optuna how trial `number` ended, from its run folder; False if it has not ended."""
        run_dir = self.folder / SUBDIR.format(number)
        summary, last = read_run(run_dir)
        status = summary.get("status") if summary else None
        crash = _crash(job)
        if error is not None and crash is None and live_holder(run_dir) is None:  # not a job still running
            crash = f"the launcher failed: {type(error).__name__}: {error}"
        value, reason = None, None
        if status == "finished":
            value = objective_value(self.s.objective, summary, last)
            state = TrialState.COMPLETE if value is not None else TrialState.FAIL
            reason = None if value is not None else f"the run measured no {self.s.objective}"
        elif status == "pruned":
            state, reason = TrialState.PRUNED, summary.get("stop_reason")
        elif status == "diverged":
            state, reason = TrialState.FAIL, summary.get("stop_reason")
        elif crash:
            state, reason = TrialState.FAIL, crash
        else:
            return False
        trial = live_trial(study, storage, number)
        trial.set_user_attr("epochs", summary.get("epochs_completed", 0) if summary else 0)
        if reason:
            trial.set_user_attr("reason", reason)
        study.tell(number, value, state=state, skip_if_finished=True)
        log.info("trial %d %s%s%s", number, state.name, f" {self.s.objective}={value:.2f}" if value is not None else "",
                 f" ({reason})" if reason else "")
        return True
