"""Entry-point helpers: user errors and stopped runs become one message and a documented exit code.

Exit codes of train.py (docs/scaling.md): 0 finished; 2 a user error (config, data, checkpoint);
3 stopped by a signal after saving a checkpoint (continue with trainer.resume=auto); 4 stopped
because the loss became nan or inf (the last good checkpoint is kept).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from arlif.errors import ConfigError, UserError

R = TypeVar("R")

EXIT_INTERRUPTED = 3
EXIT_DIVERGED = 4
CHECKOUT = Path(__file__).resolve().parent.parent


def run_cli(task: Callable[[], R]) -> R:
    """Run `task`; on a UserError print `error: <message>` to stderr and exit with its code."""
    try:
        return task()
    except UserError as err:
        print(f"error: {_user_message(err)}", file=sys.stderr)
        sys.exit(err.exit_code)


def _user_message(err: UserError) -> str:
    """The user's message, without the worker traceback DataLoader wraps around it.

    An error raised in a DataLoader worker is re-raised in the main process as the
    same type whose text is "Caught X in DataLoader worker ... Original Traceback ...",
    ending with the original "X: <message>" line(s).
    """
    text = str(err)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    marker = f"{type(err).__name__}: "
    start = text.rfind(marker)
    return text[start + len(marker):].strip() if start >= 0 else text


def exit_as_run_ended(summary: dict, run_dir: Path, multirun: bool) -> None:
    """Exit with the code of the run's `status` (rank 0 says why); a diverged run in a multirun returns,
    so that the sweep goes on."""
    tell = os.environ.get("RANK", "0") == "0"
    if summary["status"] == "interrupted":
        if tell:
            print(f"stopped: {summary['stop_reason']}; continue with trainer.resume=auto hydra.run.dir={run_dir}",
                  file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if summary["status"] == "diverged":
        if tell:
            print(f"error: {summary['stop_reason']}", file=sys.stderr)
        if not multirun:
            sys.exit(EXIT_DIVERGED)


def share_checkout() -> None:
    """Put this checkout on PYTHONPATH, so that jobs a Hydra launcher starts elsewhere (submitit) import arlif."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(CHECKOUT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), *paths]))


def torchrun_argv(argv: Sequence[str]) -> list[str]:
    """The Hydra command line for this process of a torchrun launch.

    Rank 0 keeps it and creates the run folder.  The other ranks write nothing of Hydra's (no
    folder, no .hydra/, no log file): they use rank 0's folder, which `arlif.pipeline.train`
    sends them, so that all ranks agree on it and never race to create it.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return list(argv)
    if any(arg in ("-m", "--multirun") for arg in argv):
        raise ConfigError("a multirun (-m) cannot run under torchrun: start one torchrun per run, or use "
                          "hydra/launcher=slurm_multigpu for multi-GPU sweeps (docs/scaling.md)")
    if os.environ.get("RANK", "0") == "0":
        return list(argv)
    kept = [arg for arg in argv if not arg.startswith("hydra.run.dir=")]
    return [*kept, "hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout"]
