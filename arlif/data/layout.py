"""Checks that a dataset on disk is complete, with one `DataError` that says how to fix it."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

from arlif.errors import ConfigError, DataError


def data_root(cfg) -> Path:
    """`cfg.data_dir` as a path (the folder that holds every dataset's own folder)."""
    if not cfg.get("data_dir"):
        raise ConfigError("data_dir is not set: pass data_dir=<folder holding the datasets> (or set ARLIF_DATA)")
    return Path(str(cfg.data_dir)).expanduser()


def not_found(what: str, root: Path, layout: str, how: str) -> DataError:
    """The error for a missing or incomplete dataset: where it was looked for, layout, how to get it."""
    return DataError(f"{what} not found or incomplete under {Path(root).absolute()}\n"
                     f"  expected layout: {layout}\n"
                     f"  how to get it: {how}")


def check_split_sizes(what: str, root: Path, found: Sequence[int], expected, layout: str, how: str) -> None:
    """Raise `not_found` unless the (train, test) sample counts equal `dataset.split_sizes` (None: no check)."""
    if expected is None:
        return
    expected = [int(n) for n in expected]
    if list(found) != expected:
        raise not_found(f"{what} ({found[0]} train / {found[1]} test samples where dataset.split_sizes="
                        f"{expected} expects {expected[0]} / {expected[1]})", root, layout, how)


@contextlib.contextmanager
def no_empty_folders_left(root: Path) -> Iterator[None]:
    """On a failure inside (a download that could not finish), remove the folders under `root`, and `root`
    itself, that the attempt created and left empty; folders that existed before are kept."""
    root = Path(root).absolute()
    top = root
    while not top.parent.exists():
        top = top.parent
    new = [top] if not top.exists() else []
    before = set(root.iterdir()) if root.is_dir() else set()
    try:
        yield
    except BaseException:
        if not new and root.is_dir():
            new = [p for p in root.iterdir() if p.is_dir() and p not in before]
        for folder in new:
            for path, _, _ in os.walk(folder, topdown=False):  # deepest first; a folder with files stays
                with contextlib.suppress(OSError):
                    os.rmdir(path)
        raise


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value ('x_2' before 'x_10')."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
