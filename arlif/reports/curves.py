"""Learning curves of many runs, grouped as the result tables group them, and a Markdown report.

Runs are the records of `arlif.reports.results` (summary.json files, or W&B run summaries) and
their per-epoch history is the run's metrics.jsonl (or W&B history).  Runs are grouped by
`arlif.reports.results.group_runs` (experiment, dataset, model, neuron, T, and the launch overrides
that differ, e.g. a search's trials), so a group is a table row and its runs are its seeds.
Each metric gets one PNG: per group the mean over its runs at every epoch, a min–max band
when it has several runs, and its run count in the legend.
A run that has not finished (running, interrupted, killed, diverged, pruned) is drawn up
to its last logged epoch and marked there; past it, its group's mean covers only the runs
that got further.  `report.md` holds the run list, the result tables that hold these runs
(the same Markdown as `scripts/make_tables.py` writes), and the plots.
"""

from __future__ import annotations

import logging
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from arlif.reports.runs import load_history
from arlif.errors import DataError
from arlif.reports.results import GROUP_FIELDS, Table, build_tables, group_runs, to_markdown
from arlif.runner.tracking import flatten

log = logging.getLogger(__name__)

# metric (a metrics.jsonl key) -> axis label, in report order; α and β get one panel per layer
METRICS = {
    "test_acc": "test accuracy (%)",
    "val_acc": "validation accuracy (%)",
    "train_loss": "training loss",
    "lr": "learning rate",
    "firing_rate": "mean firing rate",
    "alpha": "α",
    "beta": "β",
}
PER_LAYER = ("alpha", "beta")
LOG_SCALE = ("train_loss",)
# how a run that did not finish is marked at its last epoch
STATUS_MARKERS = {"running": ">", "interrupted": "s", "killed": "X", "diverged": "D", "pruned": "v"}
BAND = "mean over runs; band: min–max"
DPI = 120
PANEL_SIZE = (5.0, 3.2)  # inches per panel
LEGEND_HEIGHT = 0.3  # inches per legend row
MAX_COLUMNS = 4


@dataclass
class RunCurves:
    """One run's record (arlif.reports.results) and its curves: {metric key: {epoch: value}}."""

    run: dict
    values: dict[str, dict[int, float]]

    @property
    def status(self) -> Optional[str]:
        """The effective status read by arlif.reports.results (finished, running, killed, diverged, ...)."""
        return self.run["status"]


@dataclass
class GroupCurves:
    """The runs of one results group, with the label it has in legends and tables."""

    label: str
    runs: list[RunCurves] = field(default_factory=list)

    def band(self, key: str) -> tuple[list[int], list[float], list[float], list[float]]:
        """(epochs, mean, min, max) over the runs that logged `key` at each epoch."""
        epochs = sorted(set().union(*(r.values.get(key, {}) for r in self.runs)))
        per_epoch = [[r.values[key][e] for r in self.runs if e in r.values.get(key, {})] for e in epochs]
        return (epochs, [statistics.fmean(v) for v in per_epoch], [min(v) for v in per_epoch],
                [max(v) for v in per_epoch])


def curve_values(rows: Sequence[dict]) -> dict[str, dict[int, float]]:
    """{metric key: {epoch: value}} of the plotted metrics; α/β keys are "alpha/<layer>" (W&B's form)."""
    values: dict[str, dict[int, float]] = {}
    for row in rows:
        flat = flatten(row)
        if flat.get("epoch") is None:
            continue
        for key, value in flat.items():
            metric, sep, _ = key.partition("/")
            wanted = metric in PER_LAYER if sep else key in METRICS and key not in PER_LAYER
            if wanted and isinstance(value, (int, float)) and not isinstance(value, bool):
                values.setdefault(key, {})[int(flat["epoch"])] = float(value)
    return values


def _short_numbers(text: str) -> str:
    """Long decimals (a search's sampled values) cut to 4 significant digits, so legends fit."""
    return re.sub(r"\d+\.\d{5,}(?:e[-+]?\d+)?", lambda m: f"{float(m.group()):.4g}", text)


def group_label(key: tuple, keys: Sequence[tuple]) -> str:
    """The experiment name, plus the key fields that tell apart groups sharing that name (only those when
    every group has that name)."""
    same = [k for k in keys if k[0] == key[0]]
    extra = [_short_numbers(value) if name == "variant" else f"{name}={value}"
             for i, (name, value) in enumerate(zip(GROUP_FIELDS, key)) if i and len({k[i] for k in same}) > 1]
    if extra and len(same) == len(keys):  # one experiment (e.g. a study): its name would only crowd the legend
        return ", ".join(extra)
    return key[0] + (f" ({', '.join(extra)})" if extra else "")


def collect(runs: Sequence[dict]) -> list[GroupCurves]:
    """The runs grouped as in the result tables, each with its curves; a run whose history cannot be read
    is listed without curves (warned)."""
    groups = group_runs(runs)
    keys = sorted(groups, key=lambda k: tuple(map(str, k)))
    out = []
    for key in keys:
        group = GroupCurves(group_label(key, keys))
        for run in groups[key].runs:
            try:
                values = curve_values(load_history(run))
            except DataError as exc:
                log.warning("no curves for %s: %s", run["source"], exc)
                values = {}
            group.runs.append(RunCurves(run, values))
        out.append(group)
    return out


def metric_keys(groups: Sequence[GroupCurves], metric: str) -> list[str]:
    """The keys of `metric` that some run logged: the metric itself, or its layers in network order."""
    keys: dict[str, None] = {}
    for group in groups:
        for run in group.runs:
            keys.update(dict.fromkeys(k for k in run.values if k == metric or k.startswith(metric + "/")))
    return list(keys)


def figure_size(panels: int, legend_rows: int) -> tuple[float, float]:
    """Figure size in inches for `panels` panels and a legend of `legend_rows` rows below them."""
    columns = min(panels, MAX_COLUMNS)
    rows = -(-panels // columns)
    return PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + LEGEND_HEIGHT * (legend_rows + 1)


def plot_metric(groups: Sequence[GroupCurves], metric: str) -> Optional[Figure]:
    """The figure of one metric over epochs (one panel per layer for α/β); None when no run logged it."""
    keys = metric_keys(groups, metric)
    if not keys:
        return None
    colors = colormaps["tab10"].colors
    drawn = [any(k in r.values for k in keys for r in g.runs) for g in groups]  # LIF groups have no α
    handles = [Line2D([], [], color=colors[i % len(colors)], label=f"{g.label} (n={len(g.runs)})")
               for i, g in enumerate(groups) if drawn[i]]
    statuses = sorted({r.status for g, d in zip(groups, drawn) if d for r in g.runs if r.status in STATUS_MARKERS})
    handles += [Line2D([], [], marker=STATUS_MARKERS[s], color="black", ls="none", label=f"{s}: last epoch")
                for s in statuses]
    legend_columns = min(len(handles), len(keys), MAX_COLUMNS)  # one column per panel column: never wider
    # a bare Figure (no pyplot): drawn by the Agg canvas, whatever backend the caller uses
    fig = Figure(figsize=figure_size(len(keys), -(-len(handles) // legend_columns)), dpi=DPI, layout="constrained")
    axes = fig.subplots(-(-len(keys) // MAX_COLUMNS), min(len(keys), MAX_COLUMNS), squeeze=False).flatten()
    for ax, key in zip(axes, keys):
        for i, group in enumerate(groups):
            color = colors[i % len(colors)]
            epochs, mean, low, high = group.band(key)
            if not epochs:
                continue
            ax.plot(epochs, mean, color=color, lw=1.5, marker="." if len(epochs) < 30 else None)
            if len(group.runs) > 1:
                ax.fill_between(epochs, low, high, color=color, alpha=0.2, lw=0)
            for run in group.runs:
                if run.status in STATUS_MARKERS and run.values.get(key):
                    last = max(run.values[key])
                    ax.plot(last, run.values[key][last], marker=STATUS_MARKERS[run.status], color=color,
                            mec="black", ms=8, ls="none")
        if metric in PER_LAYER:
            ax.set_title(key.partition("/")[2], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRICS[metric])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric in LOG_SCALE:
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    fig.legend(handles=handles, loc="outside lower center", ncols=legend_columns, fontsize=8, title=BAND,
               title_fontsize=8)
    return fig


def runs_table(groups: Sequence[GroupCurves]) -> Table:
    """One row per run: its group, seed, status, epochs and accuracies, and where it was read from."""
    rows = [{"group": g.label, "seed": r.run["seed"], "status": r.status,
             "epochs": f"{r.run['epochs_completed']}/{r.run['epochs']}", "test_acc_best": r.run["test_acc_best"],
             "test_acc_final": r.run["test_acc_final"], "source": r.run["source"]}
            for g in groups for r in g.runs]
    return Table("Runs", ["group", "seed", "status", "epochs", "test_acc_best", "test_acc_final", "source"], rows)


def result_tables(runs: Sequence[dict]) -> list[Table]:
    """The tables of `make_tables.py` that hold at least one of these runs."""
    return [t for t in build_tables(runs) if any(row["runs"] for row in t.rows)]


def write_report(runs: Sequence[dict], out: Path, sources: Sequence[str]) -> dict:
    """Draw each logged metric to out/<metric>.png and write out/report.md.

    Returns {"report": path, "images": {metric: path}, "tables": [Table, ...]} (the runs table first).
    """
    if not runs:
        raise DataError(f"no finished epoch of any run in {', '.join(sources)}; "
                        "pass run folders, multirun or study folders, or --wandb ENTITY/PROJECT")
    groups = collect(runs)
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for metric in METRICS:
        fig = plot_metric(groups, metric)
        path = out / f"{metric}.png"
        if fig is None:
            path.unlink(missing_ok=True)  # from an earlier report into this folder: not these runs'
        else:
            fig.savefig(path, dpi=DPI)
            images[metric] = path
    tables = [runs_table(groups), *result_tables(runs)]
    unfinished = sum(r.status in STATUS_MARKERS for g in groups for r in g.runs)
    lines = ["# Learning curves", "",
             f"{len(runs)} runs in {len(groups)} groups ({unfinished} not finished), read from: "
             + ", ".join(f"`{s}`" for s in sources) + ".", "",
             f"Groups are the rows of the result tables (experiment, dataset, model, neuron, T); n is the number "
             f"of runs (seeds) in a group. Curves: {BAND} of the runs at each epoch. A run that did not finish is "
             "drawn to its last logged epoch and marked there with its status; after it, its group's curve covers "
             "only the runs that went on.", ""]
    lines += ["## Tables", ""] + [to_markdown(t) for t in tables]
    lines += ["## Curves", ""]
    lines += [f"### {METRICS[m]}\n\n![{METRICS[m]}]({p.name})\n" for m, p in images.items()]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return {"report": report, "images": images, "tables": tables}
