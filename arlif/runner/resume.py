"""Continuing a run from a checkpoint: which one, whether it fits, and restoring what it holds; and starting a
new run from another run's weights (`trainer.init_weights`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from arlif.errors import CheckpointError
from arlif.runner import distributed
from arlif.runner.checkpoint import check_model_fits, copy_checkpoint, load_checkpoint
from arlif.runner.engine import Trainer
from arlif.runner.progress import Progress
from arlif.runner.records import BEST, LAST
from arlif.runner.runtime import is_main_process, set_rng_state

log = logging.getLogger(__name__)


def resume_setting(cfg: DictConfig) -> Optional[str]:
    """`trainer.resume`, except that a requeued SLURM job (SLURM_RESTART_COUNT > 0) continues its run folder."""
    if cfg.trainer.resume is None and int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0:
        return "auto"
    return cfg.trainer.resume


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


def restore_training(trainer: Trainer, scheduler, state: dict, path: Path, cfg: DictConfig) -> None:
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
