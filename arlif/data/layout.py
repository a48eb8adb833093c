"""Checks that a dataset on disk is complete, with one `DataError` that says how to fix it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from arlif.errors import ConfigError, DataError


def data_root(cfg) -> Path:
    """`cfg.data_dir` as a path (the folder that holds every dataset's own folder)."""
    if not cfg.get("data_dir"):
        raise ConfigError("data_dir is not set: pass data_dir=<folder holding the datasets> (or set ARLIF_DATA)")
    return Path(str(cfg.data_dir)).expanduser()


def not_found(what: str, root: Path, layout: str, how: str) -> DataError:
    """The error for a missing or incomplete dataset: where it was looked for, layout, how to get it."""
    return DataError(f"{what} not found or incomplete under {root}\n"
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


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value ('x_2' before 'x_10')."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
