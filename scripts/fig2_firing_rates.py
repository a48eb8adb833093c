"""Fig. 2: firing rate of every neuron layer for a set of trained networks (e.g. hard, soft, AR-LIF).

    python scripts/fig2_firing_rates.py RUN_OR_CHECKPOINT [...] [--labels hard soft ar-lif] [-- OVERRIDES]
    python scripts/fig2_firing_rates.py outputs/eval/*/eval.json

A checkpoint (or a run folder: its best.pt) is evaluated on its whole test set as
`python eval.py checkpoint=PATH` does (overrides such as data_dir=/data trainer.device=cpu
go after `--`); an eval.json written by eval.py is used as it is.  The firing rate of a
layer is the fraction of its neurons spiking per time step, averaged over the test set.
Writes fig2_firing_rates.png and fig2_firing_rates.csv (one row per run and layer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from arlif.reports.analysis import evaluate_runs, log_figure, run_labels, split_overrides
from arlif.reports.csv_rows import write_rows
from arlif.runner.cli import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="checkpoints, run folders or eval.json files")
    p.add_argument("--labels", nargs="+", help="legend label per run (default: the neuron names)")
    p.add_argument("--out", type=Path, default=Path("results/fig2"), help="output folder")
    p.add_argument("--log-wandb", metavar="[ENTITY/]PROJECT", help="also log the figure to this W&B project")
    own, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(own)
    args.overrides = overrides
    return args


def rows_of(results: list[dict], labels: list[str]) -> list[dict]:
    return [{"label": label, "experiment": r["experiment"], "neuron": r["neuron"], "layer_index": i + 1,
             "layer": layer, "firing_rate": rate}
            for label, r in zip(labels, results) for i, (layer, rate) in enumerate(r["firing_rates"].items())]


def plot(rows: list[dict], labels: list[str], path: Path) -> None:
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        rates = [r["firing_rate"] for r in mine]
        ax.plot([r["layer_index"] for r in mine], rates, marker="o", ms=3,
                label=f"{label} (mean {sum(rates) / len(rates):.3f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("neuron layer")
    ax.set_ylabel("firing rate (spikes per neuron per step)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def main(args: argparse.Namespace) -> str:
    results = evaluate_runs(args.runs, args.out, args.overrides)
    labels = run_labels(results, args.labels)
    rows = rows_of(results, labels)
    args.out.mkdir(parents=True, exist_ok=True)
    png, csv_path = args.out / "fig2_firing_rates.png", args.out / "fig2_firing_rates.csv"
    plot(rows, labels, png)
    write_rows(rows, csv_path)
    if args.log_wandb:
        log_figure(args.log_wandb, "fig2_firing_rates", png, rows, args.out)
    means = "\n".join(f"{label:>24}  mean firing rate {r['firing_rate']:.4f}  test acc {r['test_acc']:.2f}"
                      for label, r in zip(labels, results))
    return f"{means}\nwritten to {png} and {csv_path}"


if __name__ == "__main__":
    print(run_cli(lambda: main(parse_args())))
