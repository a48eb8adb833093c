"""Tables 1 and 2, the neuron comparisons (and any other runs) from run summaries, beside the published numbers.

    python scripts/make_tables.py multirun/2026-01-01_12-00-00 [more run folders ...]
    python scripts/make_tables.py --wandb ENTITY/arlif [--group paper-cifar10-resnet18-arlif-T4 ...]

Writes tables.md (also printed) and table1.csv, table2.csv, table1_code.csv (AR-LIF's CIFAR10-DVS
cells as its released code ran them), competitors_published.csv (each competitor's published
number beside our rerun with its recipe), same_recipe.csv (runs that differ only in the neuron,
each beside AR-LIF's) and other_runs.csv to --out.  Accuracies are top-1 test accuracy in
percent: the best epoch (the paper's protocol) and the final epoch, mean ± sample std over the
runs (seeds) of a cell.  tables.md says which numbers are copied and which measured, which comparisons with a
published number are like with like, and, for every neuron run under AR-LIF's recipe, AR-LIF's seed mean minus
the neuron's with its 95 % Welch interval and a verdict (ahead, behind, not distinguishable); it ends with what
the reruns support about the paper's claim, in words.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arlif.runner.cli import run_cli
from arlif.reports.results import PREAMBLE, build_tables, support, to_markdown, write_csv
from arlif.reports.runs import add_source_arguments, read_runs

CSV_NAMES = ("table1.csv", "table2.csv", "table1_code.csv", "competitors_published.csv", "same_recipe.csv",
             "other_runs.csv")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    return parser.parse_args(argv)


def make_tables(args: argparse.Namespace) -> str:
    runs = read_runs(args)
    tables = build_tables(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    for table, name in zip(tables, CSV_NAMES):
        write_csv(table, args.out / name)
    _, _, _, competitors, same, _ = tables
    markdown = "\n".join([PREAMBLE] + [to_markdown(t) for t in tables if t.rows] + [support(same, competitors)])
    (args.out / "tables.md").write_text(markdown)
    return f"{markdown}\n{len(runs)} runs; written to {args.out}/ (tables.md, {', '.join(CSV_NAMES)})"


if __name__ == "__main__":
    print(run_cli(lambda: make_tables(parse_args())))
