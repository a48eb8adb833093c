"""Stopping cleanly on a signal: SIGTERM, SIGUSR1, SIGUSR2 and Ctrl-C make a run save and stop instead of dying.

Clusters warn before they end a job: SLURM sends SIGTERM when it preempts or cancels one, and with
`--signal` a chosen signal some minutes before the time limit (submitit asks for SIGUSR2; plain sbatch
scripts often use SIGUSR1).  A person at a terminal presses Ctrl-C (SIGINT).  While `StopSignals` is
active these signals only call `on_stop`; the training loop then stops within a few batches and
writes a checkpoint.  A second Ctrl-C aborts at once (KeyboardInterrupt).  `hand_over()` afterwards
gives a cluster signal to the handler it had before, so that submitit can requeue the job.  A process
started with SIGINT ignored (a background job of a shell) keeps ignoring it.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable, Optional

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopSignals:
    """`with StopSignals(trainer.request_stop) as signals: ...`: the stop signals and Ctrl-C call `on_stop(reason)`."""

    def __init__(self, on_stop: Callable[[str], None]):
        self.on_stop = on_stop
        self.received: Optional[int] = None
        self._previous: dict = {}

    def _handle(self, signum: int, _frame) -> None:
        if signum == signal.SIGINT:
            if self.received == signal.SIGINT:
                raise KeyboardInterrupt
            log.warning("Ctrl-C: stopping at the next check and saving a checkpoint; press Ctrl-C again to abort "
                        "without saving")
        self.received = signum
        self.on_stop(f"received {signal.Signals(signum).name}")

    def received_name(self) -> Optional[str]:
        """The received signal's name (SIGTERM, SIGINT, ...), or None."""
        return None if self.received is None else signal.Signals(self.received).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():  # Python allows handlers there only
            log.warning("not in the main thread: SIGTERM/SIGUSR1/SIGUSR2 and Ctrl-C will end the run without a "
                        "checkpoint")
            return self
        caught = STOP_SIGNALS + ((signal.SIGINT,) if signal.getsignal(signal.SIGINT) != signal.SIG_IGN else ())
        self._previous = {s: signal.signal(s, self._handle) for s in caught}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def hand_over(self) -> None:
        """Call the handler that the received cluster signal had before, when it was Python code (submitit's
        requeue).  Ctrl-C is not handed over: the run has stopped as asked."""
        previous = self._previous.get(self.received)
        if self.received in STOP_SIGNALS and callable(previous):
            previous(self.received, None)


def ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader `worker_init_fn`: workers ignore the stop signals and Ctrl-C (SLURM signals every process
    of a job, a terminal every process of its foreground group); the main process saves, then ends them."""
    for sig in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
