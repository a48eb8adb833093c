"""The training run's side of a search: report each epoch's objective to its Optuna trial, stop if pruned.

The sweeper gives every trial a `search` config node: study name, storage, trial number, objective,
pruner and sampled params.  `trial_reporter(cfg)` is None for any other run, and Optuna is imported
only when there is a trial, so plain training never needs it.  With several processes, rank 0 talks to
the storage and every rank follows its decision.
"""

from __future__ import annotations

from typing import Optional

from arlif.runner import distributed
from arlif.runner.runtime import is_main_process

STATES = {"finished": "COMPLETE", "pruned": "PRUNED", "diverged": "FAIL"}  # any other status: still RUNNING


class TrialReporter:
    """One run as trial `spec.trial` of study `spec.study`."""

    def __init__(self, spec, epochs: int):
        self.spec, self.epochs = spec, epochs
        self.pruned: Optional[str] = None  # why the pruner stopped the run
        self._trial = None
        if is_main_process():
            from arlif.search import study

            storage = study.make_storage(spec.storage)
            opened = study.load(spec.study, storage, study.build_pruner(spec.pruner))
            self._trial = study.live_trial(opened, storage, spec.trial)

    def should_prune(self, metrics: dict, summary: dict) -> bool:
        """Report the objective after epoch `metrics["epoch"]`; True when the pruner stops the run here
        (never after the last epoch, which completes the trial)."""
        reason = None
        if self._trial is not None:
            from arlif.search.study import objective_value

            epoch, value = metrics["epoch"], objective_value(self.spec.objective, summary, metrics)
            self._trial.report(value, epoch)
            if epoch < self.epochs and self._trial.should_prune():
                reason = (f"pruned by the {self.spec.pruner.name} pruner after epoch {epoch} "
                          f"({self.spec.objective} {value:.2f})")
        self.pruned = distributed.broadcast_object(reason)
        return self.pruned is not None

    def describe(self, status: str) -> dict:
        """The summary's `trial` entry (mirrored to W&B as trial/study, trial/number, trial/state)."""
        return {"study": self.spec.study, "number": self.spec.trial, "state": STATES.get(status, "RUNNING")}


def trial_reporter(cfg) -> Optional[TrialReporter]:
    """The reporter of a run launched as a search trial, else None."""
    spec = cfg.get("search")
    return TrialReporter(spec, cfg.trainer.epochs) if spec else None
