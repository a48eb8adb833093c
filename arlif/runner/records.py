"""The run-folder format: its file names, how they are written (whole or not at all) and read back.

A run folder holds `config.yaml` (the resolved config), `metrics.jsonl` (one JSON line per
epoch), `summary.json` (how the run stands or ended), `last.pt` and `best.pt` (checkpoints,
arlif.runner.checkpoint) and, after `eval.py`, `eval.json`.  Every writer and reader of these
files (the runner, the search, the reports) names them through this module.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Optional

from arlif.errors import DataError, storage_error

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
EVAL = "eval.json"
LAST = "last.pt"
BEST = "best.pt"


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """A write of `path` that the disk refuses (full, over quota, read-only, no permission) becomes one StorageError
    naming the file; any other error passes as it is."""
    try:
        yield
    except OSError as exc:
        err = storage_error(exc, path)
        if err is None:
            raise
        raise err from exc


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes the file's new content to `<path>.tmp`, which is flushed to disk and renamed over
    `path`: a kill at any moment leaves either the old or the new file whole, never a torn one.  A write that
    fails removes `<path>.tmp` and leaves `path` as it was; a refused one is a StorageError (`writing`)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with writing(path):
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json(path: Path, data: dict) -> None:
    """Write `data` as JSON atomically: a kill mid-write keeps the previous file whole."""
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def metrics_lines(path: Path) -> list[str]:
    """The non-empty lines of a run's metrics.jsonl (a file or its run folder); [] when there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    return [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def read_metrics(path: Path) -> list[dict]:
    """The per-epoch records of a run's metrics.jsonl (a file or its run folder); a DataError when unreadable."""
    path = Path(path)
    file = path / METRICS if path.is_dir() else path
    try:
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {file}: {exc}; pass a run folder or its metrics.jsonl") from exc


def read_summary(run_dir: Path) -> Optional[dict]:
    """A run folder's summary.json, or None when it has none yet."""
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.exists() else None
