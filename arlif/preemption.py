"""Stopping cleanly on a signal: SIGTERM, SIGUSR1 and SIGUSR2 make a run save and stop instead of dying.

Clusters warn before they end a job: SLURM sends SIGTERM when it preempts or cancels one, and with
`--signal` a chosen signal some minutes before the time limit (submitit asks for SIGUSR2; plain sbatch
scripts often use SIGUSR1).  While `StopSignals` is active these signals only call `on_stop`; the
training loop then stops within a few batches and writes a checkpoint.  `hand_over()` afterwards
gives the signal to the handler it had before, so that submitit can requeue the job.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable, Optional

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopSignals:
    """`with StopSignals(trainer.request_stop) as signals: ...`: the stop signals call `on_stop(reason)`."""

    def __init__(self, on_stop: Callable[[str], None]):
        self.on_stop = on_stop
        self.received: Optional[int] = None
        self._previous: dict = {}

    def _handle(self, signum: int, _frame) -> None:
        self.received = signum
        self.on_stop(f"received {signal.Signals(signum).name}")

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python allows handlers there only
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        else:
            log.warning("not in the main thread: SIGTERM/SIGUSR1/SIGUSR2 will end the run without a checkpoint")
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def hand_over(self) -> None:
        """Call the handler that the received signal had before, when it was Python code (submitit's requeue)."""
        previous = self._previous.get(self.received)
        if callable(previous):
            previous(self.received, None)


def ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader `worker_init_fn`: workers ignore the stop signals (SLURM signals every process of a
    job); the main process saves, then ends them."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
