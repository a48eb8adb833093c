"""Result tables: runs' summaries grouped by paper cell, beside the published numbers.

Besides Tables 1 and 2: AR-LIF's CIFAR10-DVS cells as the released code ran them; the competitors'
numbers as each paper published them beside our rerun with that paper's recipe; and "same recipe"
comparisons, every set of runs that differ only in the neuron (such as a Table 1 cell rerun with
each competitor neuron, conf/table/compare_same_recipe.yaml), each neuron beside AR-LIF's runs.

Runs are the records of `arlif.reports.runs` (summary.json files or W&B run summaries, each
with its effective `status`).  Runs of one
(experiment, dataset, model, neuron, T) launched with the same overrides (`.hydra/overrides.yaml`,
seed and bookkeeping keys aside) are one group; its seeds are reduced to mean ± sample std.
Runs of one cell launched with other values, such as a search's trials, are one group each.  A paper cell (arlif.reports.paper) takes the group named `Cell.experiment`; any other group is
listed under "Other runs".  A cell without runs stays empty: a missing number is never
written as zero.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from arlif.reports.csv_rows import write_rows
from arlif.reports.paper import (ABLATIONS, DATASETS, METHODS, MODELS, PUBLISHED, SAME_RECIPE_NEURONS, TABLE1,
                                 TABLE1_CODE, TABLE2, Cell, PublishedCell)
from arlif.reports.runs import KEY_FIELDS

log = logging.getLogger(__name__)

GROUP_FIELDS = KEY_FIELDS + ("variant",)
MISSING = "—"


@dataclass
class Group:
    """The runs of one (experiment, dataset, model, neuron, T, variant) and their statistics."""

    key: tuple
    runs: list[dict]

    def _values(self, field: str) -> list[float]:
        return [r[field] for r in self.runs if r[field] is not None]

    def mean(self, field: str) -> Optional[float]:
        values = self._values(field)
        return statistics.fmean(values) if values else None

    def std(self, field: str) -> Optional[float]:
        """Sample standard deviation over seeds; None for fewer than two runs."""
        values = self._values(field)
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def epochs(self) -> str:
        """Epochs completed (a range when runs differ) out of the planned number."""
        done = sorted({r["epochs_completed"] for r in self.runs})
        planned = sorted({r["epochs"] for r in self.runs})
        span = str(done[0]) if len(done) == 1 else f"{done[0]}-{done[-1]}"
        return f"{span}/{'/'.join(map(str, planned))}"

    @property
    def status(self) -> str:
        """The runs' status, e.g. `finished` or `2 finished, 1 killed` ("?" for records without one)."""
        counts = Counter(r.get("status") or "?" for r in self.runs)
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def group_runs(runs: Iterable[dict]) -> dict[tuple, Group]:
    """Runs by (experiment, dataset, model, neuron, T, variant); warns when a seed repeats within a group.

    `variant` tells apart runs of one (experiment, ..., T) launched with other command-line overrides
    (e.g. the trials of a search, or a grid over optimizer.lr): those of the overrides whose values differ
    among them that the run was given, "key=value, ...".  It is "" when they differ only in seed (seeds
    stay one group) and for runs of the preset as it is, which are the ones a paper cell takes.
    """
    by_cell: dict[tuple, list[dict]] = {}
    for run in runs:
        by_cell.setdefault(tuple(run[k] for k in KEY_FIELDS), []).append(run)
    groups: dict[tuple, Group] = {}
    for cell, members in by_cell.items():
        overrides = [run.get("overrides", {}) for run in members]
        keys = sorted({k for o in overrides for k in o})
        differing = [k for k in keys if len({o.get(k) for o in overrides}) > 1]
        for run, own in zip(members, overrides):
            key = cell + (", ".join(f"{k}={own[k]}" for k in differing if k in own),)
            groups.setdefault(key, Group(key, [])).runs.append(run)
    for key, group in groups.items():
        seeds = [r["seed"] for r in group.runs]
        for seed in sorted(set(s for s in seeds if seeds.count(s) > 1)):
            log.warning("%s has %d runs with seed %s, all counted: %s", key[0], seeds.count(seed), seed,
                        ", ".join(r["source"] for r in group.runs if r["seed"] == seed))
    return groups


def _cell_key(cell: Cell) -> tuple:
    return cell.experiment, cell.dataset, cell.model, cell.neuron, cell.T, ""


def _stats(group: Optional[Group], paper: Optional[float]) -> dict:
    """Numeric columns of one row (None where there is nothing to report)."""
    if group is None:
        return {"best_mean": None, "best_std": None, "final_mean": None, "final_std": None, "delta_best": None,
                "runs": 0, "epochs": None, "status": None}
    best = group.mean("test_acc_best")
    return {"best_mean": best, "best_std": group.std("test_acc_best"),
            "final_mean": group.mean("test_acc_final"), "final_std": group.std("test_acc_final"),
            "delta_best": None if best is None or paper is None else best - paper,
            "runs": len(group.runs), "epochs": group.epochs, "status": group.status}


@dataclass
class Table:
    """Rows of plain values: written as CSV as they are, and as Markdown formatted."""

    title: str
    columns: list[str]
    rows: list[dict]


STATS = ["best_mean", "best_std", "final_mean", "final_std", "delta_best", "runs", "epochs", "status"]


def _arlif_cell(dataset: str, model: str, T: int) -> Optional[Cell]:
    """AR-LIF's Table 1 cell for this dataset and T: the one with this model, else the dataset's first."""
    cells = [c for c in TABLE1 if (c.dataset, c.T) == (dataset, T)]
    return next((c for c in cells if c.model == model), cells[0] if cells else None)


def _published_row(cell: PublishedCell, group: Optional[Group]) -> dict:
    arlif = _arlif_cell(cell.dataset, cell.model, cell.T)
    return {"method": METHODS[cell.method], "dataset": DATASETS[cell.dataset], "model": MODELS[cell.model],
            "neuron": cell.neuron, "T": cell.T, "published": cell.acc, **_stats(group, cell.acc),
            "arlif_paper": arlif.acc if arlif else None, "source": cell.source, "preset": cell.preset}


def _recipe(key: tuple) -> tuple:
    """(experiment with the neuron's name as "<neuron>", dataset, model, T, variant): what a run shares with the
    runs that differ from it only in the neuron."""
    experiment, dataset, model, neuron, T, variant = key
    template = "-".join("<neuron>" if part == neuron else part for part in str(experiment).split("-"))
    return template, dataset, model, T, variant


def same_recipe_rows(groups: dict[tuple, Group]) -> list[dict]:
    """One row per neuron of every recipe that was run with two or more neurons, AR-LIF's first."""
    by_recipe: dict[tuple, dict[str, Group]] = {}
    for key, group in groups.items():
        by_recipe.setdefault(_recipe(key), {})[key[3]] = group
    rows = []
    for (template, dataset, model, T, variant), by_neuron in sorted(by_recipe.items(), key=lambda kv: str(kv[0])):
        if len(by_neuron) < 2:
            continue
        arlif = by_neuron["arlif"].mean("test_acc_best") if "arlif" in by_neuron else None
        cell = next((c for c in TABLE1 if c.experiment == template.replace("<neuron>", "arlif")), None)
        for neuron, group in sorted(by_neuron.items(), key=lambda kv: (kv[0] != "arlif", kv[0])):
            stats = _stats(group, None if neuron == "arlif" else arlif)
            rows.append({"recipe": template, "dataset": DATASETS.get(dataset, dataset), "model": MODELS.get(model, model),
                         "T": T, "variant": variant, "neuron": neuron,
                         "method": "AR-LIF" if neuron == "arlif" else SAME_RECIPE_NEURONS.get(neuron, neuron),
                         **{("vs_arlif" if k == "delta_best" else k): v for k, v in stats.items()},
                         "arlif_paper": cell.acc if cell else None})
    return rows


def build_tables(runs: Iterable[dict]) -> list[Table]:
    """Table 1, Table 2, AR-LIF's released-code cells, the competitors as published, the same-recipe comparisons
    and the runs that belong to no paper cell."""
    groups = group_runs(runs)
    used = set()

    def cell_rows(cells: Sequence[Cell], label: Callable[[Cell], dict]) -> list[dict]:
        rows = []
        for cell in cells:
            group = groups.get(_cell_key(cell))
            used.add(_cell_key(cell))
            rows.append({**label(cell), "paper": cell.acc, **_stats(group, cell.acc), "preset": cell.preset})
        return rows

    stats_cols = ["paper"] + STATS
    by_cell = (lambda c: {"dataset": DATASETS[c.dataset], "model": MODELS[c.model], "T": c.T})
    table1 = Table("Table 1: AR-LIF, top-1 test accuracy (%)", ["dataset", "model", "T"] + stats_cols + ["preset"],
                   cell_rows(TABLE1, by_cell))
    table2 = Table("Table 2: ablation at T = 4, top-1 test accuracy (%)", ["dataset", "model", "neuron", "column"]
                   + stats_cols + ["preset"],
                   cell_rows(TABLE2, lambda c: {"dataset": DATASETS[c.dataset], "model": MODELS[c.model],
                                                "neuron": c.neuron, "column": ABLATIONS[c.neuron]}))
    code = Table("Table 1, CIFAR10-DVS as the authors' released code ran it (neuron arlif_psn_code), top-1 test "
                 "accuracy (%)", ["dataset", "model", "T"] + stats_cols + ["preset"], cell_rows(TABLE1_CODE, by_cell))
    published = []
    for cell in PUBLISHED:
        key = (cell.experiment, cell.dataset, cell.model, cell.neuron, cell.T, "")
        used.add(key)
        published.append(_published_row(cell, groups.get(key)))
    competitors = Table("Competitors as published, rerun with each paper's own recipe, top-1 test accuracy (%)",
                        ["method", "dataset", "model", "neuron", "T", "published"] + STATS
                        + ["arlif_paper", "source", "preset"], published)
    same = same_recipe_rows(groups)
    same_cols = ["recipe", "dataset", "model", "T"] + (["variant"] if any(r["variant"] for r in same) else []) + \
        ["neuron", "method", *(("vs_arlif" if c == "delta_best" else c) for c in STATS), "arlif_paper"]
    same_recipe = Table("Same recipe, the neuron swapped: each neuron beside AR-LIF, top-1 test accuracy (%)",
                        same_cols, same)
    other = [{**dict(zip(GROUP_FIELDS, key)), **_stats(group, None)}
             for key, group in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))) if key not in used]
    variant = ["variant"] if any(row["variant"] for row in other) else []
    other_cols = list(KEY_FIELDS) + variant + [c for c in stats_cols if c not in ("paper", "delta_best")]
    return [table1, table2, code, competitors, same_recipe, Table("Other runs: top-1 test accuracy (%)", other_cols,
                                                                  other)]


def _fmt(value, std=None) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.2f}" if std is None else f"{value:.2f} ± {std:.2f}"
    return str(value)


MARKDOWN_HEADERS = {"paper": "paper (copied)", "published": "published (copied)", "arlif_paper": "AR-LIF paper (copied)",
                    "best_mean": "best epoch (ours)", "final_mean": "final epoch (ours)", "delta_best": "Δ best − paper",
                    "vs_arlif": "Δ best − AR-LIF's (ours)", "source": "source of the copied number"}
SIGNED = ("delta_best", "vs_arlif")
PREAMBLE = ("Numbers marked (copied) are copied from the AR-LIF paper and from the papers and repositories "
            "named in the `source` column (arlif/reports/paper.py); none of them was measured here.  Every other "
            "number is measured from the runs read: top-1 test accuracy (%) at the best and at the final epoch, "
            "mean ± sample std over the runs (seeds) of a cell, with their count in `runs`.\n")


def to_markdown(table: Table) -> str:
    """The table as Markdown: mean ± std in one column, missing values as "—"."""
    cols = [c for c in table.columns if not c.endswith("_std")]
    lines = [f"### {table.title}", "", "| " + " | ".join(MARKDOWN_HEADERS.get(c, c) for c in cols) + " |",
             "|" + "---|" * len(cols)]
    for row in table.rows:
        cells = []
        for c in cols:
            value = row[c]
            if c in SIGNED and value is not None:
                cells.append(f"{value:+.2f}")
            else:
                cells.append(_fmt(value, row.get(c[:-5] + "_std") if c.endswith("_mean") else None))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(table: Table, path: Path) -> None:
    """The table's plain values; an empty field is a missing value."""
    write_rows(table.rows, path, table.columns)
