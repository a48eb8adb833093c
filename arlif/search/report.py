"""The study folder's report, rewritten whenever trials finish (docs/sweeps.md, "Reading the report").

- optimization_results.yaml: Hydra's Optuna sweeper's top-level `name`, `best_params` and `best_value`
  (so scripts written for that sweeper read it as they are; null until a trial is complete), then the
  study, its trial counts, `best`: the best trial's params, value, number, run folder and retrain command,
  and `failed`: each FAIL trial's number, reason and run folder;
- trials.csv: one row per trial (number, state, value, epochs trained, every param, run folder, reason);
- plots (Optuna's matplotlib visualisation): optimisation history, learning curves (the per-epoch
  objective every trial reported, pruned ones included), slice plot per parameter, and parameter
  importances once IMPORTANCE_MIN_TRIALS trials are complete.
Every file is written through a temporary file, so concurrent sweep processes never leave a torn one; a write the
disk refuses is one StorageError naming the file, its temporary file removed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import shlex
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from arlif.errors import StorageError
from arlif.runner.records import writing

IMPORTANCE_MIN_TRIALS = 4
RESULTS, TRIALS_CSV = "optimization_results.yaml", "trials.csv"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with writing(path):
            tmp.write_bytes(data)
            os.replace(tmp, path)
    except StorageError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def retrain_command(trial: optuna.trial.FrozenTrial) -> str:
    """The single-run command that trains this trial's config again."""
    return "python train.py " + " ".join(shlex.quote(arg) for arg in trial.user_attrs["overrides"])


def trial_rows(study: optuna.Study) -> list[dict]:
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    return [{"number": t.number, "state": t.state.name, "value": t.value,
             "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
             **{name: t.params.get(name) for name in names},
             "run_dir": t.user_attrs.get("run_dir"), "reason": t.user_attrs.get("reason")} for t in trials]


def results(study: optuna.Study, objective: str, n_trials: int) -> dict:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    best = study.best_trial if counts["COMPLETE"] else None
    out = {"name": "optuna", "best_params": dict(best.params) if best else None, "best_value": best.value if best else None,
           "study": study.study_name, "objective": objective, "direction": "maximize", "n_trials": n_trials,
           "trials": {k: v for k, v in counts.items() if v}, "best": None}
    if best:
        out["best"] = {"trial": best.number, "value": best.value, "params": dict(best.params),
                       "run_dir": best.user_attrs["run_dir"], "retrain": retrain_command(best)}
    out["failed"] = [{"trial": t.number, "reason": t.user_attrs.get("reason"), "run_dir": t.user_attrs.get("run_dir")}
                     for t in trials if t.state == TrialState.FAIL]
    return out


def _plots(study: optuna.Study, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its notes on categorical axes (choice params)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots = {"history": vis.plot_optimization_history, "intermediate_values": vis.plot_intermediate_values}
    if complete:
        plots["slice"] = vis.plot_slice
    if len(complete) >= IMPORTANCE_MIN_TRIALS and complete[0].params:
        plots["importances"] = vis.plot_param_importances
    with warnings.catch_warnings():  # Optuna's "experimental" notices, matplotlib's one-point axis limits
        warnings.simplefilter("ignore")
        for name, plot in plots.items():
            axes = plot(study)
            figure = getattr(axes, "figure", None) or axes.flat[0].figure
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure)
            _write(folder / f"{name}.png", buffer.getvalue())


def write_report(study: optuna.Study, folder: Path, objective: str, n_trials: int, plots: bool = True) -> None:
    """(Re)write the report of `study` into `folder`."""
    text = yaml.safe_dump(results(study, objective, n_trials), sort_keys=False, width=float("inf"))
    _write(folder / RESULTS, text.encode())
    rows = trial_rows(study)
    table = io.StringIO()
    if rows:
        writer = csv.DictWriter(table, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _write(folder / TRIALS_CSV, table.getvalue().encode())
    if plots and rows:
        _plots(study, folder)
