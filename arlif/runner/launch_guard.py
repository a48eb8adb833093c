"""Run folders at launch: refuse a held one before Hydra writes into it, remove a failed start's.

Hydra creates the run folder, with `.hydra/` and the job's log file, before train.py's code runs.
`RunFolderGuard`, a Hydra callback (conf/config.yaml; eval.yaml includes it), runs before that:
- a run folder that a live run holds (arlif.runner.runlock) stops the launch with exit 2, so that not even
  Hydra's files of the holder are touched;
- it notes which folders are new (the run folder, or a multirun's sweep folder), so that
  `remove_failed_start` deletes, after a user error, only a folder this launch made and that still
  holds nothing but Hydra's files: never an existing run's folder, a resumed one, or other jobs'.
- a SLURM launcher on a machine without SLURM stops with one line instead of submitit's traceback.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from arlif.errors import ConfigError, UserError
from arlif.runner.runlock import check_free

# Folders this process's launch created (filled by RunFolderGuard before Hydra creates them).
NEW_FOLDERS: set[Path] = set()
HYDRA_FILES = {".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"}
SWEEP_FILES = {"multirun.yaml"}


def _fail(err: UserError) -> None:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(err.exit_code)


def _note_new(folder: str) -> None:
    """Note the topmost folder of `folder`'s path that does not exist yet: this launch creates it."""
    path = Path(folder).absolute()
    if path.exists():
        return
    while not path.parent.exists():
        path = path.parent
    NEW_FOLDERS.add(path)


class RunFolderGuard(Callback):
    """Hydra callback: checks before Hydra creates or writes a run folder (see the module docstring)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if os.environ.get("RANK", "0") != "0":  # torchrun's other ranks use rank 0's folder and create none
            return
        run_dir = OmegaConf.select(config, "hydra.run.dir")
        try:
            check_free(Path(run_dir))
        except UserError as err:
            _fail(err)
        _note_new(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
        if target.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
            _fail(ConfigError("hydra/launcher=slurm* submits SLURM jobs, but this machine has no `sbatch`: launch "
                              "from a SLURM login node, or run the jobs here with hydra/launcher=submitit_local "
                              "(or without hydra/launcher)"))
        _note_new(OmegaConf.select(config, "hydra.sweep.dir"))


def _is_new(path: Path) -> bool:
    return any(folder == path or folder in path.parents for folder in NEW_FOLDERS)


def _only(folder: Path, allowed: set[str]) -> bool:
    return all(p.relative_to(folder).as_posix() in allowed for p in folder.rglob("*"))


def remove_failed_start() -> None:
    """After a user error before training: delete the Hydra job's run folder if this launch created it and
    it holds only Hydra's files (`.hydra/`, the job's log), then its new parent folders left empty (or, for
    a sweep folder, with only its multirun.yaml)."""
    from hydra.core.hydra_config import HydraConfig

    job = HydraConfig.get()
    run_dir = Path(job.runtime.output_dir).absolute()
    if not run_dir.is_dir() or not _is_new(run_dir) or not _only(run_dir, HYDRA_FILES | {f"{job.job.name}.log"}):
        return
    shutil.rmtree(run_dir)
    for parent in run_dir.parents:
        if not _is_new(parent) or not _only(parent, SWEEP_FILES):
            break
        shutil.rmtree(parent)
