"""CSV output of every report: dict rows under named columns."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence

from arlif.runner.records import writing


def write_rows(rows: Sequence[dict], path: Path, columns: Optional[Sequence[str]] = None) -> None:
    """Write dict rows as CSV: `columns` (default: the first row's keys) in order, keys outside them left out,
    None as an empty field (a missing value)."""
    with writing(path), open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns or rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
