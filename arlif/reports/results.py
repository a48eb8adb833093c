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
from arlif.reports.verdict import AHEAD, BEHIND, SINGLE, UNRESOLVED, compare

log = logging.getLogger(__name__)

GROUP_FIELDS = KEY_FIELDS + ("variant",)
MISSING = "—"


@dataclass
class Group:
    """The runs of one (experiment, dataset, model, neuron, T, variant) and their statistics."""

    key: tuple
    runs: list[dict]

    def values(self, field: str) -> list[float]:
        """The runs' values of `field` (a summary key), leaving out missing ones."""
        return [r[field] for r in self.runs if r[field] is not None]

    def mean(self, field: str) -> Optional[float]:
        values = self.values(field)
        return statistics.fmean(values) if values else None

    def std(self, field: str) -> Optional[float]:
        """Sample standard deviation over seeds; None for fewer than two runs."""
        values = self.values(field)
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


LIKE = "like with like"
NOT_COMPARABLE = "not comparable"


def comparability(cell: PublishedCell, runs: int) -> str:
    """Whether our `runs` reruns' best-epoch mean (`delta_best`) compares like with like with the published number:
    a best epoch of one run with our best epochs, a seed mean with our mean of at least two seeds; a released
    checkpoint or an unstated statistic with nothing.  Empty when there is nothing to compare."""
    if not runs or cell.acc is None:
        return ""
    if cell.statistic == "best_epoch":
        return f"{LIKE}: best epochs (ours: mean of {runs} run{'s' if runs > 1 else ''})"
    if cell.statistic == "seed_mean" and runs >= 2:
        return f"{LIKE}: seed means (ours: {runs} seeds at their best epoch; the source does not say which epoch)"
    if cell.statistic == "seed_mean":
        return f"{NOT_COMPARABLE}: the published number is a mean of {cell.seeds} seeds, ours one run"
    return f"{NOT_COMPARABLE}: the published number is a {cell.statistic_text}" if cell.statistic == "checkpoint" \
        else f"{NOT_COMPARABLE}: the published number's statistic is not stated"


def _published_row(cell: PublishedCell, group: Optional[Group]) -> dict:
    arlif = _arlif_cell(cell.dataset, cell.model, cell.T)
    stats = _stats(group, cell.acc)
    return {"method": METHODS[cell.method], "recipe": cell.recipe, "dataset": DATASETS[cell.dataset],
            "model": MODELS[cell.model], "neuron": cell.neuron, "T": cell.T, "published": cell.acc,
            "statistic": cell.statistic_text, **stats, "comparison": comparability(cell, stats["runs"]),
            "arlif_paper": arlif.acc if arlif else None, "source": cell.source, "preset": cell.preset}


def _recipe(key: tuple) -> tuple:
    """(experiment with the neuron's name as "<neuron>", dataset, model, T, variant): what a run shares with the
    runs that differ from it only in the neuron."""
    experiment, dataset, model, neuron, T, variant = key
    template = "-".join("<neuron>" if part == neuron else part for part in str(experiment).split("-"))
    return template, dataset, model, T, variant


VERDICT = ["diff", "ci_low", "ci_high", "df", "verdict", "seeds_to_resolve", "diff_final", "verdict_final"]


def _verdict(arlif: Optional[Group], group: Group) -> dict:
    """AR-LIF's runs against this neuron's (arlif.reports.verdict): best epoch in full, final epoch's difference and
    verdict; empty for AR-LIF's own row or a recipe without AR-LIF's runs."""
    if arlif is None or arlif is group:
        return dict.fromkeys(VERDICT)
    best = compare(arlif.values("test_acc_best"), group.values("test_acc_best"))
    final = compare(arlif.values("test_acc_final"), group.values("test_acc_final"))
    return {"diff": best.diff, "ci_low": best.low, "ci_high": best.high, "df": best.df, "verdict": best.verdict,
            "seeds_to_resolve": best.seeds_to_resolve, "diff_final": final.diff, "verdict_final": final.verdict}


def same_recipe_rows(groups: dict[tuple, Group]) -> list[dict]:
    """One row per neuron of every recipe that was run with two or more neurons, AR-LIF's first; each other
    neuron's row compares AR-LIF's seeds with its seeds (`_verdict`)."""
    by_recipe: dict[tuple, dict[str, Group]] = {}
    for key, group in groups.items():
        by_recipe.setdefault(_recipe(key), {})[key[3]] = group
    rows = []
    for (template, dataset, model, T, variant), by_neuron in sorted(by_recipe.items(), key=lambda kv: str(kv[0])):
        if len(by_neuron) < 2:
            continue
        arlif = by_neuron.get("arlif")
        cell = next((c for c in TABLE1 if c.experiment == template.replace("<neuron>", "arlif")), None)
        for neuron, group in sorted(by_neuron.items(), key=lambda kv: (kv[0] != "arlif", kv[0])):
            stats = {k: v for k, v in _stats(group, None).items() if k != "delta_best"}
            rows.append({"recipe": template, "dataset": DATASETS.get(dataset, dataset), "model": MODELS.get(model, model),
                         "T": T, "variant": variant, "neuron": neuron,
                         "method": "AR-LIF" if neuron == "arlif" else SAME_RECIPE_NEURONS.get(neuron, neuron),
                         **stats, **_verdict(arlif, group), "arlif_paper": cell.acc if cell else None})
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
                        ["method", "recipe", "dataset", "model", "neuron", "T", "published", "statistic"] + STATS
                        + ["comparison", "arlif_paper", "source", "preset"], published)
    same = same_recipe_rows(groups)
    same_cols = ["recipe", "dataset", "model", "T"] + (["variant"] if any(r["variant"] for r in same) else []) + \
        ["neuron", "method", *(c for c in STATS if c != "delta_best"), *VERDICT, "arlif_paper"]
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
                    "statistic": "published statistic", "best_mean": "best epoch (ours)",
                    "final_mean": "final epoch (ours)", "delta_best": "Δ best − paper", "comparison": "comparable?",
                    "diff": "Δ AR-LIF − neuron, best epoch", "ci_low": "95 % interval (Welch)", "df": "df",
                    "verdict": "AR-LIF is", "seeds_to_resolve": "seeds per side to resolve",
                    "diff_final": "Δ final epoch", "verdict_final": "AR-LIF is (final epoch)",
                    "source": "source of the copied number"}
SIGNED = ("delta_best", "diff", "diff_final")
PREAMBLE = ("Numbers marked (copied) are copied from the AR-LIF paper and from the papers and repositories "
            "named in the `source` column (arlif/reports/paper.py); none of them was measured here.  Every other "
            "number is measured from the runs read: top-1 test accuracy (%) at the best and at the final epoch, "
            "mean ± sample std over the runs (seeds) of a cell, with their count in `runs`.  A published number "
            "is compared like with like only (`comparable?`): a best epoch with our best epochs, a seed mean with "
            "our mean of two or more seeds; any other difference is shown in parentheses, marked not comparable.  "
            "Same-recipe rows give AR-LIF's seed mean minus the neuron's, its 95 % Welch interval with its degrees "
            "of freedom, and the verdict: ahead or behind when the interval excludes 0, else not distinguishable "
            "(docs/reproduce.md, \"Comparing neurons\").\n")


def _cell(row: dict, column: str) -> str:
    value = row[column]
    if column == "ci_low":
        return MISSING if value is None else f"[{value:+.2f}, {row['ci_high']:+.2f}]"
    if column == "df" and value is not None:
        return f"{value:.1f}"
    if column in SIGNED and value is not None:
        signed = f"{value:+.2f}"
        return f"({signed}, not comparable)" if str(row.get("comparison", "")).startswith(NOT_COMPARABLE) else signed
    return _fmt(value, row.get(column[:-5] + "_std") if column.endswith("_mean") else None)


def to_markdown(table: Table) -> str:
    """The table as Markdown: mean ± std in one column, an interval as [low, high], missing values as "—"."""
    cols = [c for c in table.columns if not c.endswith("_std") and c != "ci_high"]
    lines = [f"### {table.title}", "", "| " + " | ".join(MARKDOWN_HEADERS.get(c, c) for c in cols) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(row, c) for c in cols) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def support(same: Table, competitors: Table) -> str:
    """In words: what the reruns support about the paper's claim (AR-LIF ahead of every competitor in every cell)
    and what they do not; empty when no run was compared."""
    pairs = [r for r in same.rows if r["verdict"] is not None]
    compared = [r for r in competitors.rows if r["comparison"]]
    if not pairs and not compared:
        return ""
    paragraphs = []
    if pairs:
        count = {v: sum(r["verdict"] == v for r in pairs) for v in (AHEAD, BEHIND, UNRESOLVED, SINGLE)}
        paragraphs.append(
            f"Same recipe, {len(pairs)} neuron-against-AR-LIF pairs (best epoch): AR-LIF is ahead in {count[AHEAD]} "
            f"(the 95 % interval of the difference is above 0), behind in {count[BEHIND]} (below 0) and not "
            f"distinguishable in {count[UNRESOLVED]}; {count[SINGLE]} have fewer than two seeds on a side, so a single "
            f"difference and no interval.  The paper claims AR-LIF ahead in every cell: the reruns support that "
            f"claim in the {count[AHEAD]} pairs where it is ahead, contradict it in the {count[BEHIND]} where it is "
            "behind, and neither support nor contradict it in the rest.  `seeds per side to resolve` says how "
            "many seeds would settle a pair if the spread and the difference stayed as observed.")
    if compared:
        like = sum(r["comparison"].startswith(LIKE) for r in compared)
        paragraphs.append(
            f"Published numbers: {len(compared)} reruns beside a competitor's number, {like} compared like with like "
            f"and {len(compared) - like} shown but not comparable (a released checkpoint, an unstated statistic, or "
            "one run beside a seed mean).  A difference from a published number says how closely a recipe "
            "reproduces it, not which neuron is better.")
    return "### What the reruns support\n\n" + "\n\n".join(paragraphs) + "\n"


def write_csv(table: Table, path: Path) -> None:
    """The table's plain values; an empty field is a missing value."""
    write_rows(table.rows, path, table.columns)
