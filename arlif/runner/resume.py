"""Continuing a run from a checkpoint: which one, loading and verifying it, whether it fits, restoring it;
and starting a new run from another run's weights (`trainer.init_weights`).

`resume_point(cfg, run_dir)` is the one call that chooses (`trainer.resume`, SLURM requeues),
loads with its checksum verified and checks it holds the same network; the run then builds
its model and calls `restore_training`, `repair_best` and `restore_random_state` with it.
`arlif.runner.checkpoint` is the checkpoint file itself.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from arlif.errors import CheckpointError
from arlif.runner import distributed
from arlif.runner.checkpoint import check_model_fits, copy_checkpoint, load_checkpoint
from arlif.runner.steps import StepRunner
from arlif.runner.progress import Progress
from arlif.runner.records import BEST, LAST
from arlif.runner.runtime import is_main_process, set_rng_state

log = logging.getLogger(__name__)


def resume_setting(cfg: DictConfig) -> Optional[str]:
    """`trainer.resume`, except that a requeued SLURM job (SLURM_RESTART_COUNT > 0) continues its run folder."""
    if cfg.trainer.resume is None and int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0:
        return "auto"
    return cfg.trainer.resume


@dataclass
class ResumePoint:
    """The checkpoint a run continues from: its path and its verified contents."""
    path: Path
    state: dict


def resume_point(cfg: DictConfig, run_dir: Path) -> Optional[ResumePoint]:
    """The checkpoint this run continues (loaded, checksum verified, same network), or None to start fresh."""
    path = find_resume_checkpoint(resume_setting(cfg), run_dir)
    if path is None:
        return None
    state = load_checkpoint(path)
    check_same_network(state, cfg, path)
    return ResumePoint(path, state)


def find_resume_checkpoint(resume: Optional[str], run_dir: Path) -> Optional[Path]:
    """The checkpoint that `trainer.resume` asks for, or None to start fresh.

    null: start fresh (refusing to overwrite a run directory that already holds one);
    auto: this run directory's last.pt if there is one; PATH: that file, or a run
    directory's last.pt.
    """
    own = run_dir / LAST
    if resume is None:
        if own.exists():
            raise CheckpointError(f"{own} already exists; pass trainer.resume=auto to continue that run, "
                                  "or choose another hydra.run.dir")
        return None
    if resume == "auto":
        return own if own.exists() else None
    path = Path(resume)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"trainer.resume={resume}: no checkpoint at {path}")
    return path


def check_same_network(state: dict, cfg: DictConfig, path: Path) -> None:
    theirs = state["config"]
    if (theirs["model"]["name"], theirs["neuron"]["name"]) != (cfg.model.name, cfg.neuron.name):
        raise CheckpointError(f"checkpoint {path} holds a {theirs['model']['name']} with {theirs['neuron']['name']} "
                              f"neurons but this run builds a {cfg.model.name} with {cfg.neuron.name} neurons; "
                              "resume with the checkpoint's model and neuron, or start a new run folder")


def load_initial_weights(model, cfg: DictConfig) -> None:
    """`trainer.init_weights`: a fresh run's network starts from a checkpoint's weights (a run folder means its
    last.pt), nothing else of it: optimizer, schedule, epochs and random state start anew.  This is TET's TIT:
    train at a small T, then continue at the target T from that run (the weights of T-independent networks fit
    any T)."""
    if cfg.trainer.init_weights is None:
        return
    path = Path(str(cfg.trainer.init_weights))
    if path.is_dir():
        path = path / LAST
    state = load_checkpoint(path, "initialise")
    check_same_network(state, cfg, path)
    check_model_fits(model, state, path, cfg)
    model.load_state_dict(state["model"])
    log.info("weights from %s (trained at T=%s, epoch %d)", path, state["config"].get("T"), state["epoch"])


def restore_training(trainer: StepRunner, scheduler, state: dict, path: Path, cfg: DictConfig) -> None:
    """Model, optimizer, scaler and scheduler from `state`; a mismatch is a CheckpointError naming `path`."""
    check_model_fits(trainer.model, state, path, cfg)
    try:
        trainer.load_state_dict(state)
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match this run's model, neuron or optimizer: "
                              f"{str(exc).splitlines()[0]}") from exc


def repair_best(progress: Progress, resume_path: Path, run_dir: Path) -> None:
    """A kill between writing last.pt and copying it to best.pt leaves best.pt one best epoch behind."""
    boundary = progress.partial_epoch is None
    if is_main_process() and boundary and progress.epoch and progress.best_epoch() == progress.epoch:
        copy_checkpoint(resume_path, run_dir / BEST)


def restore_random_state(states: list, path: Path) -> None:
    """Every process's generators as the checkpoint left them, when the process count is the same."""
    if len(states) == distributed.world_size():
        set_rng_state(states[distributed.rank()])
        return
    log.warning("%s was written by %d processes and this run has %d: the random generators start again from "
                "the seed, so the rest of the run is not identical to an uninterrupted one",
                path, len(states), distributed.world_size())
