"""Reading run records: the one place reports learn what runs exist, how they stand and their histories.

A run record is one run's summary (`summary.json` in a run folder, or a W&B run's summary: the
same keys) reduced to RUN_FIELDS, with its effective `status` (finished, interrupted, diverged,
pruned, running, or killed: said running but nothing runs it any more;
arlif.runner.runlock.effective_status), its `source` (the file, or wandb:<entity/project/id>)
and its launch `overrides` (`.hydra/overrides.yaml`, without the keys in NOT_A_VARIANT).
A run's history is its metrics.jsonl (arlif.runner.records) or its W&B history.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Iterable, Optional, Sequence

from omegaconf import OmegaConf

from arlif.errors import ConfigError, DataError
from arlif.runner.records import SUMMARY, read_metrics
from arlif.runner.runlock import effective_status

log = logging.getLogger(__name__)

KEY_FIELDS = ("experiment", "dataset", "model", "neuron", "T")
RUN_FIELDS = KEY_FIELDS + ("seed", "test_acc_best", "test_acc_final", "epochs_completed", "epochs")
# Command-line overrides that do not change what a run trains: runs differing only in these stay one group.
NOT_A_VARIANT = ("seed", "data_dir", "trainer.resume", "trainer.num_workers", "trainer.device", "trainer.progress_bar",
                 "search", "hydra", "logger", "experiment.name", "experiment.tags")
# Overrides that choose a key field itself (the group or value, not a key under it): never a variant of a cell.
KEY_OVERRIDES = ("T", "dataset", "model", "neuron")
# Overrides whose value differs from seed to seed but means one variant: each seed starts from its own checkpoint
# (TET's TIT), so the runs started from a checkpoint are one group, apart from those trained from scratch.
ANY_VALUE = {"trainer.init_weights": "<a checkpoint>"}


def read_summaries(paths: Iterable[Path]) -> list[dict]:
    """Every summary.json in or under the given files and folders, with its effective `status`; an
    unreadable file is skipped with a warning naming it."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path} does not exist; pass run folders, multirun folders or summary.json files")
        files = [path] if path.is_file() else sorted(path.rglob(SUMMARY))
        if not files:
            log.warning("no %s under %s", SUMMARY, path)
        for file in files:
            try:
                summary = json.loads(file.read_text())
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: it cannot be read as JSON (%s)", file, exc)
                continue
            if not isinstance(summary, dict):
                log.warning("skipping %s: it is not a summary (a JSON object)", file)
                continue
            record = _run_record(summary, str(file), effective_status(summary, file.parent))
            if record is None:
                continue
            record["overrides"] = _training_overrides(file.parent / ".hydra" / "overrides.yaml")
            runs.append(record)
    return runs


def read_wandb_runs(project: str, groups: Sequence[str] = (), api=None) -> list[dict]:
    """Run summaries of a W&B project ("entity/project"), optionally only the given groups."""
    filters = {"group": {"$in": list(groups)}} if groups else {}
    runs = []
    try:
        if api is None:
            import wandb

            api = wandb.Api()
        found = list(api.runs(project, filters=filters))
    except Exception as exc:  # wandb raises its own types for a missing login, project or network
        raise ConfigError(f"--wandb {project}: W&B cannot list its runs ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); check the ENTITY/PROJECT name, "
                          "`wandb login` (or WANDB_API_KEY) and the network") from exc
    for run in found:
        summary = dict(run.summary)
        status = summary.get("status")  # W&B's own heartbeat tells a run that died
        if status == "running" and getattr(run, "state", "running") in ("crashed", "failed", "killed"):
            status = "killed"
        record = _run_record(summary, f"wandb:{project}/{run.id}", status)
        if record is not None:
            runs.append(record)
    return runs


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line arguments that say which runs to read (shared by make_tables.py and plot_runs.py)."""
    parser.add_argument("paths", nargs="*", type=Path,
                        help="run folders, multirun or study folders, or summary.json files")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read the runs of this W&B project")
    parser.add_argument("--group", action="append", default=[], help="only these W&B groups (repeatable)")


def read_runs(args: argparse.Namespace) -> list[dict]:
    """The runs named by `add_source_arguments`' arguments: summary files first, then W&B."""
    if not args.paths and not args.wandb:
        raise ConfigError("give run folders to read, or --wandb ENTITY/PROJECT")
    runs = read_summaries(args.paths)
    if args.wandb:
        runs += read_wandb_runs(args.wandb, args.group)
    return runs


def _training_overrides(path: Path) -> dict[str, str]:
    """{key: value} of the Hydra command-line overrides a run was launched with (`.hydra/overrides.yaml`),
    without those in NOT_A_VARIANT; empty when the file is missing or unreadable."""
    try:
        lines = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else []
    except Exception as exc:  # a torn or foreign file: the run still counts, as one of its cell's seeds
        log.warning("%s cannot be read (%s); its run is grouped without its overrides", path, exc)
        return {}
    out = {}
    for line in lines if isinstance(lines, list) else []:
        key, _, value = str(line).lstrip("+~").partition("=")
        if key not in KEY_OVERRIDES and not any(key == k or key.startswith(k + ".") or key.startswith(k + "/")
                                                for k in NOT_A_VARIANT):
            out[key] = ANY_VALUE.get(key, value)
    return out


def _run_record(summary: dict, source: str, status: Optional[str]) -> Optional[dict]:
    missing = [k for k in RUN_FIELDS if k not in summary]
    if missing:
        log.warning("skipping %s: it lacks %s (not a finished epoch of an arlif run?)", source, missing)
        return None
    return {**{k: summary[k] for k in RUN_FIELDS}, "status": status, "source": source, "overrides": {}}


def read_wandb_history(run_path: str, api=None) -> list[dict]:
    """The logged history rows of a W&B run ("entity/project/run_id")."""
    if api is None:
        import wandb

        api = wandb.Api()
    return list(api.run(run_path).scan_history())



def load_history(run: dict) -> list[dict]:
    """The per-epoch rows of a run: its metrics.jsonl beside summary.json, or its W&B history."""
    source = run["source"]
    if not source.startswith("wandb:"):
        return read_metrics(Path(source).parent)
    try:
        return read_wandb_history(source.removeprefix("wandb:"))
    except Exception as exc:  # wandb raises its own types for a missing login, run or network
        raise DataError(f"the W&B history of {source} cannot be read ({type(exc).__name__}: {exc})") from exc
