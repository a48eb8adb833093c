"""One run per run folder: a lock file that works on network file systems and recognises dead holders.

A run holds its folder through `<run folder>/run.lock`, created with O_CREAT | O_EXCL (atomic on
local disks and on NFSv3+, Lustre and GPFS, unlike fcntl/flock locks, which some of them ignore).
The file says who holds the folder (host, pid, start time, SLURM job) and a thread refreshes its
mtime every HEARTBEAT_S seconds.  A run that finds the folder held stops with `RunFolderBusy`,
unless the holder is gone:

- the holder's SLURM job is this one, started earlier (a requeued job: SLURM ends the old one first);
- the holder ran on this host and its process no longer runs (pid gone, or reused by another
  process), or the host rebooted since (another boot id);
- otherwise (another host), its heartbeat is older than STALE_AFTER_S seconds.

A stale lock is renamed away (atomic), checked to be the one judged stale, and replaced.  The
processes of one torchrun job are one run: rank 0 holds the folder (`hold`).  `effective_status`
is the reader's side: a summary that says `running` while no live run holds its folder is `killed`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from arlif.errors import StorageError, UserError
from arlif.runner.records import writing

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0  # ten missed heartbeats: well past NFS attribute caching (<= 60 s) and small clock skew


class RunFolderBusy(UserError):
    """Another live run holds the run folder."""


def _boot_id() -> Optional[str]:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _slurm_job() -> Optional[dict]:
    job = os.environ.get("SLURM_JOB_ID")
    return {"id": job, "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0"))} if job else None


def this_process() -> dict:
    """The holder record of this process: what run.lock and summary.json's `holder` hold."""
    pid = os.getpid()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"host": socket.gethostname(), "pid": pid, "started": started,
            "boot_id": _boot_id(), "process_start": process_start(pid), "slurm_job": _slurm_job(),
            "token": uuid.uuid4().hex}


def holder_gone(holder: dict, heartbeat_age_s: float) -> Optional[str]:
    """Why the holder of a lock is certainly gone, or None when it may still run."""
    mine, theirs = _slurm_job(), holder.get("slurm_job")
    if mine and theirs and mine["id"] == theirs["id"] and theirs["restart"] < mine["restart"]:
        return f"its SLURM job {theirs['id']} was requeued"
    if holder.get("host") == socket.gethostname() and holder.get("pid"):
        if holder.get("boot_id") and holder["boot_id"] != _boot_id():
            return "its machine restarted since"
        pid = holder["pid"]
        if not process_runs(pid):
            return f"process {pid} no longer runs"
        if holder.get("process_start") and holder["process_start"] != process_start(pid):
            return f"process {pid} no longer runs (the pid now belongs to another process)"
        return None
    if heartbeat_age_s > STALE_AFTER_S:
        return f"its last heartbeat is {heartbeat_age_s:.0f} s old"
    return None


def read_lock(run_dir: Path) -> Optional[tuple[dict, float]]:
    """(holder, heartbeat age in seconds) of the folder's lock, or None when there is none.

    A lock being created right now, or torn, reads as an empty holder.
    """
    path = Path(run_dir) / LOCK_NAME
    try:
        age = time.time() - path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        holder = {}
    return (holder if isinstance(holder, dict) else {}), age


def live_holder(run_dir: Path) -> Optional[dict]:
    """The holder of the run folder when it may still run, else None."""
    lock = read_lock(run_dir)
    if lock is None or holder_gone(*lock) is not None:
        return None
    return lock[0]


def effective_status(summary: dict, run_dir: Path) -> Optional[str]:
    """A run's status as readers should show it: summary.json's `status`, except `killed` for a run that
    says `running` while no live run holds its folder (SIGKILL, out of memory, a node failure, a crash)."""
    status = summary.get("status")
    if status == "running" and live_holder(run_dir) is None:
        return "killed"
    return status


def _busy(run_dir: Path, holder: dict, age: float) -> RunFolderBusy:
    who = (f"host {holder.get('host')}, pid {holder['pid']}, started {holder.get('started')}" if holder.get("pid")
           else "a run starting now")
    return RunFolderBusy(f"run folder {run_dir} is in use by another run ({who}, last heartbeat {age:.0f} s ago): "
                         "wait for it to end or stop it, or pass another hydra.run.dir. If that run is gone, its "
                         f"lock {Path(run_dir) / LOCK_NAME} counts as stale {STALE_AFTER_S:.0f} s after its last "
                         "heartbeat (or delete that file)")


def check_free(run_dir: Path) -> None:
    """Raise RunFolderBusy when a live run holds `run_dir` (called before anything is written to it)."""
    lock = read_lock(run_dir)
    if lock is not None and holder_gone(*lock) is None:
        raise _busy(run_dir, *lock)


class RunLock:
    """The lock on one run folder, held from `acquire()` to `release()` with a heartbeat thread."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.holder = this_process()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def acquire(self) -> None:
        """Take the folder, or raise RunFolderBusy naming the live holder and what to do."""
        with writing(self.path):
            self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                with writing(self.path):
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                lock = read_lock(self.run_dir)
                if lock is not None:
                    self._take_over(*lock)
                continue
            try:
                with writing(self.path), os.fdopen(fd, "w") as f:
                    json.dump(self.holder, f)
                    f.flush()
                    os.fsync(f.fileno())
            except StorageError:
                self.path.unlink()  # a lock that names nobody
                raise
            self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
            self._thread.start()
            return
        raise RunFolderBusy(f"run folder {self.run_dir} could not be locked: other runs keep taking {self.path}; "
                            "start one run per folder")

    def _take_over(self, holder: dict, age: float) -> None:
        """Remove a lock whose holder is gone; raise RunFolderBusy for a live one."""
        reason = holder_gone(holder, age)
        if reason is None:
            raise _busy(self.run_dir, holder, age)
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{self.holder['token']}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another run removed it first
            return
        try:
            taken = json.loads(aside.read_text()).get("token")
        except (ValueError, AttributeError):
            taken = None
        if taken != holder.get("token"):  # a new lock replaced the stale one meanwhile: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        else:
            log.warning("run folder %s was held by pid %s on %s, which is gone (%s): taking it over",
                        self.run_dir, holder.get("pid"), holder.get("host"), reason)
        aside.unlink()

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(HEARTBEAT_S):
            lock = read_lock(self.run_dir)
            if lock is None or lock[0].get("token") != self.holder["token"]:
                log.warning("the lock %s of this run was removed or taken over by another run (this process was "
                            "judged dead): two runs may now write to %s", self.path, self.run_dir)
                return
            try:
                os.utime(self.path)
            except OSError as exc:
                if not warned:
                    log.warning("cannot refresh the run folder lock %s (%s): another run may take the folder",
                                self.path, exc)
                    warned = True

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        lock = read_lock(self.run_dir)
        if lock is not None and lock[0].get("token") == self.holder["token"]:
            with contextlib.suppress(OSError):  # a folder turned read-only: the lock reads as stale once we are gone
                self.path.unlink()


@contextlib.contextmanager
def hold(run_dir: Path) -> Iterator[dict]:
    """Hold `run_dir` for one run; yields the holder record on every process.

    Under torchrun rank 0 takes the lock for the run and tells the other processes whether it got it,
    so that all of them stop on a held folder.
    """
    from arlif.runner import distributed

    lock, error, refused = None, None, None
    if distributed.rank() == 0:
        lock = RunLock(run_dir)
        try:
            lock.acquire()
        except (RunFolderBusy, StorageError) as exc:  # held, or a disk that refuses the lock file
            lock, error, refused = None, str(exc), exc
    error, holder = distributed.broadcast_object((error, lock.holder if lock else None))
    if refused is not None:
        raise refused
    if error is not None:
        raise RunFolderBusy(error)
    try:
        yield holder
    finally:
        if lock is not None:
            lock.release()
