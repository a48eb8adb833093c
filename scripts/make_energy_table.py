"""Table 3: parameters, FLOPs, MACs, ACs and inference energy per test sample, beside the paper's.

    python scripts/make_energy_table.py RUN_OR_CHECKPOINT [...] [-- OVERRIDES]
    python scripts/make_energy_table.py outputs/eval/*/eval.json

A checkpoint (or a run folder: its best.pt) is evaluated on its whole test set as
`python eval.py checkpoint=PATH` does (overrides such as data_dir=/data go after `--`);
an eval.json written by eval.py is used as it is.  The counts follow arlif/instruments/energy.py: the
first layer and layers fed real values cost MACs, layers fed spikes cost
ACs = input firing rate · T · FLOPs, E = 4.6 pJ · MACs + 0.9 pJ · ACs, for every neuron and
architecture.  The paper's row (copied from its Table 3, AR-LIF only) is printed once, under
the first of ours for the same dataset, model and T.
Writes energy.md (also printed) and energy.csv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arlif.reports.analysis import evaluate_runs, split_overrides
from arlif.reports.csv_rows import write_rows
from arlif.runner.cli import run_cli
from arlif.errors import DataError
from arlif.reports.paper import DATASETS, MODELS, TABLE3

COLUMNS = ["source", "dataset", "model", "neuron", "T", "params_M", "flops_M", "macs_M", "acs_M", "energy_uJ",
           "firing_rate", "test_acc"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="checkpoints, run folders or eval.json files")
    p.add_argument("--out", type=Path, default=Path("results/energy"), help="output folder")
    own, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(own)
    args.overrides = overrides
    return args


def our_row(result: dict) -> dict:
    if "energy" not in result:
        raise DataError(f"the evaluation of {result.get('checkpoint', 'a run')} has no 'energy' entry; "
                        "rerun eval.py with this version of arlif")
    e = result["energy"]
    return {"source": "ours", "dataset": result["dataset"], "model": result["model"], "neuron": result["neuron"],
            "T": result["T"], "params_M": e["params"] / 1e6, "flops_M": e["flops"] / 1e6, "macs_M": e["macs"] / 1e6,
            "acs_M": e["acs"] / 1e6, "energy_uJ": e["energy_uJ"], "firing_rate": result["firing_rate"],
            "test_acc": result["test_acc"]}


def paper_row(row: dict):
    for p in TABLE3:
        if (p.dataset, p.model, p.T) == (row["dataset"], row["model"], row["T"]):
            return {"source": "paper", "dataset": p.dataset, "model": p.model, "neuron": "arlif", "T": p.T,
                    "params_M": p.params_m, "flops_M": p.flops_m, "macs_M": p.macs_m, "acs_M": p.acs_m,
                    "energy_uJ": p.energy_uj, "firing_rate": None, "test_acc": None}
    return None


def to_markdown(rows: list[dict]) -> str:
    headers = ["source", "dataset", "net", "neuron", "T", "Params (M)", "FLOPs (M)", "MACs (M)", "ACs (M)", "Energy (µJ)",
               "firing rate", "test acc (%)"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [r["source"], DATASETS.get(r["dataset"], r["dataset"]), MODELS.get(r["model"], r["model"]),
                 r["neuron"], str(r["T"])]
        cells += [f"{r[c]:.2f}" for c in ("params_M", "flops_M", "macs_M", "acs_M", "energy_uJ")]
        cells += ["—" if r["firing_rate"] is None else f"{r['firing_rate']:.4f}",
                  "—" if r["test_acc"] is None else f"{r['test_acc']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    note = ("Rows `ours` are measured on the runs given; rows `paper` are copied from the AR-LIF paper's Table 3 "
            "(no firing rate or accuracy published).")
    return "\n".join(lines) + "\n\n" + note + "\n"


def main(args: argparse.Namespace) -> str:
    rows = []
    for result in evaluate_runs(args.runs, args.out, args.overrides):
        ours = our_row(result)
        paper = paper_row(ours)
        rows += [ours] + ([paper] if paper is not None and paper not in rows else [])
    args.out.mkdir(parents=True, exist_ok=True)
    write_rows(rows, args.out / "energy.csv", COLUMNS)
    markdown = to_markdown(rows)
    (args.out / "energy.md").write_text(markdown)
    return f"{markdown}\nwritten to {args.out}/ (energy.md, energy.csv)"


if __name__ == "__main__":
    print(run_cli(lambda: main(parse_args())))
