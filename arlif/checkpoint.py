"""Checkpoint files: written atomically, read with a clear error when unusable.

A checkpoint is a dict with at least `model`, `optimizer`, `scheduler`, `scaler`,
`epoch` (epochs completed), `best` ({"acc", "epoch"}), `rng` (one arlif.runtime.rng_state
per training process, by rank), `partial_epoch` (None, or the epoch a stop interrupted and
each process's progress through it) and `config` (the resolved run config as plain
containers).  Everything in it is a tensor or a plain value, so it loads with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from arlif.errors import CheckpointError

LAST = "last.pt"
BEST = "best.pt"


def _replace_atomically(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(state: dict, path: Path) -> None:
    """Write `state` to `path` through a temporary file, so a crash keeps the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    _replace_atomically(tmp, path)


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Atomically copy a checkpoint file (e.g. last.pt -> best.pt) without re-serialising it."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    _replace_atomically(tmp, dst)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint onto the CPU; any unreadable or foreign file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}); it is truncated, "
                              "corrupt or not an arlif checkpoint: pick another file") from exc
    missing = [k for k in ("model", "epoch", "config") if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is not an arlif checkpoint")
    return state


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
