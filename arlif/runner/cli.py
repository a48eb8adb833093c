"""Entry-point helpers: user errors and stopped runs become one message and a documented exit code.

Exit codes of train.py (docs/scaling.md): 0 finished; 2 a user error (config, data, checkpoint, a
mistyped override, a run folder another run holds); 3 stopped by a signal or Ctrl-C after saving a
checkpoint (continue with trainer.resume=auto); 4 stopped because the loss became nan or inf (the
last good checkpoint is kept); 130 aborted by a second Ctrl-C, or by Ctrl-C before training began.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar

from arlif.errors import ConfigError, UserError, storage_error, user_error_in

R = TypeVar("R")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 3
EXIT_DIVERGED = 4
EXIT_ABORTED = 130  # 128 + SIGINT, as shells report a process ended by Ctrl-C
CHECKOUT = Path(__file__).resolve().parents[2]


def run_cli(task: Callable[[], R], on_error: Optional[Callable[[], None]] = None, trial: bool = False) -> R:
    """Run `task`; on a UserError (raised, or wrapped by torch.compile), or a write the disk refused (full,
    over quota, read-only, no permission), print `error: <message>` to stderr and exit with its code.  A search `trial` raises the UserError after printing it instead of
    exiting, so that the Hydra launcher records the job as failed and the sweep goes on to its next trial.

    A KeyboardInterrupt (Ctrl-C before training, or a second one during it) exits with 130 and one
    line.  `on_error` runs first in both cases (train.py: remove the folder of a failed start).
    """
    try:
        return task()
    except Exception as exc:
        # also one that torch.compile wrapped while tracing, and any write the disk refused
        err = user_error_in(exc) or storage_error(exc)
        if err is None:
            raise
        if on_error is not None:
            on_error()
        print(f"error: {_user_message(err)}", file=sys.stderr)
        if trial:
            raise err from None
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        if on_error is not None:
            on_error()
        print("aborted by Ctrl-C: nothing more was saved (a run's last.pt, if any, is kept)", file=sys.stderr)
        sys.exit(EXIT_ABORTED)


def run_hydra(main: Callable[[], None]) -> None:
    """Call a `@hydra.main` function; a mistyped override or unknown config option exits 2 with one
    `error:` line that keeps Hydra's advice (the available options, the `+key=value` hint), and so does a
    run or sweep folder that Hydra cannot create or write (disk full, read-only, no permission)."""
    from hydra.errors import CompactHydraException

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra then raises its errors instead of printing them
    try:
        main()
    except CompactHydraException as err:
        print(f"error: {hydra_message(err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:
        err = storage_error(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


def hydra_message(err: Exception) -> str:
    """Hydra's multi-line error text as one line: option lists joined by commas, the search path dropped."""
    from omegaconf.errors import OmegaConfBaseException

    text = str(err).split("Config search path:")[0]
    text = re.sub(r"\n\t", ", ", text).replace(":, ", ": ")
    message = "; ".join(line.strip().rstrip(".") for line in text.splitlines() if line.strip())
    if isinstance(err.__cause__, OmegaConfBaseException):
        message += f" ({str(err.__cause__).splitlines()[0]})"
    return message


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


def exit_as_run_ended(summary: dict, run_dir: Path, sweep_dir: Optional[Path] = None) -> None:
    """Exit with the code of the run's `status` (rank 0 says why).  In a multirun (`sweep_dir`) a stop
    ends the sweep after this run, with the command that continues it, also when the run ended otherwise
    at the check that saw the stop signal (its summary's `stop_signal`); a diverged run returns, so that
    the sweep goes on."""
    tell = os.environ.get("RANK", "0") == "0"
    if sweep_dir is not None and summary.get("stop_signal") and summary["status"] != "interrupted":
        if tell:
            print(f"stopped: received {summary['stop_signal']} while {run_dir} ran, which ended {summary['status']}; "
                  f"the sweep stops after it. Continue it with the same command plus trainer.resume=auto "
                  f"hydra.sweep.dir={sweep_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if summary["status"] == "interrupted":
        if tell and sweep_dir is None:
            print(f"stopped: {summary['stop_reason']}; continue with trainer.resume=auto hydra.run.dir={run_dir}",
                  file=sys.stderr)
        elif tell:
            print(f"stopped: {summary['stop_reason']}; the sweep stops after {run_dir}. Continue it with the same "
                  f"command plus trainer.resume=auto hydra.sweep.dir={sweep_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if summary["status"] == "diverged":
        if tell:
            print(f"error: {summary['stop_reason']}", file=sys.stderr)
        if sweep_dir is None:
            sys.exit(EXIT_DIVERGED)


def share_checkout() -> None:
    """Put this checkout on PYTHONPATH, so that jobs a Hydra launcher starts elsewhere (submitit) import arlif."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(CHECKOUT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), *paths]))


def torchrun_argv(argv: Sequence[str]) -> list[str]:
    """The Hydra command line for this process of a torchrun launch.

    Rank 0 keeps it and creates the run folder.  The other ranks write nothing of Hydra's (no
    folder, no .hydra/, no log file): they use rank 0's folder, which `arlif.runner.training.train`
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
