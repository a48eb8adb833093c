"""Learning curves of runs, grid cells, seed sets or sweeps, with their result tables, without W&B.

    python scripts/plot_runs.py multirun/2026-01-01_12-00-00 [more run, multirun or study folders ...]
    python scripts/plot_runs.py --wandb ENTITY/arlif --group cifar10-resnet18-arlif-T4 [--group ...]

Draws one PNG per metric over epochs (test and validation accuracy, training loss, learning
rate, mean firing rate, and α and β per layer for AR-LIF runs) from each run's metrics.jsonl
or W&B history.  Runs are grouped as make_tables.py groups them; a group is drawn as the mean
of its runs with a min–max band, its run count in the legend.  Runs that did not finish are
marked at their last epoch.  Writes the PNGs and report.md (runs, result tables, plots) to --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arlif.reports.analysis import log_figures
from arlif.runner.cli import run_cli
from arlif.reports.curves import write_report
from arlif.reports.runs import add_source_arguments, read_runs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    p.add_argument("--out", type=Path, default=Path("results/curves"), help="output folder (default: results/curves)")
    p.add_argument("--log-wandb", metavar="[ENTITY/]PROJECT", help="also log the plots and tables as one W&B run")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> str:
    runs = read_runs(args)
    sources = [str(p) for p in args.paths] + ([f"wandb:{args.wandb}"] if args.wandb else [])
    report = write_report(runs, args.out, sources)
    if args.log_wandb:
        tables = {t.title.partition(":")[0].lower().replace(" ", "_"): t.rows for t in report["tables"]}
        log_figures(args.log_wandb, "learning_curves", report["images"], tables, args.out)
    return (f"{len(runs)} runs; written to {args.out}/ (report.md, "
            f"{', '.join(p.name for p in report['images'].values())})")


if __name__ == "__main__":
    print(run_cli(lambda: main(parse_args())))
