"""Fig. 3: the learnable α and β of every AR-LIF layer across training epochs.

Other neurons' runs plot what they logged under the same names (GLIF's gates α and β, per
channel: the line is the layer's mean and the band its min–max).

    python scripts/fig3_params.py RUN_FOLDER            # or its metrics.jsonl
    python scripts/fig3_params.py --wandb ENTITY/PROJECT/RUN_ID

The values are those logged after each epoch (metrics.jsonl, or the W&B run's history).
The paper's figure is DVS-Gesture, VGG-11, T = 20 (experiment=table1/dvs_gesture_vgg11_t20).
Writes fig3_params.png and fig3_params.csv (one row per epoch, parameter and layer; min and max for
per-channel values, empty for per-layer ones).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
import numpy as np

from arlif.reports.analysis import log_figure, parameter_history
from arlif.reports.runs import read_wandb_history
from arlif.reports.csv_rows import write_rows
from arlif.runner.cli import run_cli
from arlif.runner.records import read_metrics
from arlif.errors import ConfigError, DataError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", type=Path, help="a run folder or its metrics.jsonl")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT/RUN_ID", help="read the history of this W&B run instead")
    p.add_argument("--out", type=Path, default=Path("results/fig3"), help="output folder")
    p.add_argument("--log-wandb", metavar="[ENTITY/]PROJECT", help="also log the figure to this W&B project")
    return p.parse_args(argv)


def plot(history: dict, path: Path) -> None:
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for ax, kind, symbol in zip(axes, ("alpha", "beta"), ("α", "β")):
        layers = history[kind]
        colors = colormaps["viridis"](np.linspace(0, 1, len(layers)))
        for (layer, values), color in zip(layers.items(), colors):
            ax.plot(history["epoch"], values, color=color, label=layer, lw=1.2)
            if layer in history["range"][kind]:
                low, high = zip(*history["range"][kind][layer])
                ax.fill_between(history["epoch"], low, high, color=color, alpha=0.2, lw=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("epoch")
        ax.set_ylabel(symbol)
        ax.set_title(f"{symbol} per layer")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def csv_rows(history: dict) -> list[dict]:
    """One row per epoch, parameter and layer; min and max only for per-channel values."""
    rows = []
    for i, epoch in enumerate(history["epoch"]):
        for kind in ("alpha", "beta"):
            spread = history["range"][kind]
            for layer, values in history[kind].items():
                low, high = spread[layer][i] if layer in spread else (None, None)
                rows.append({"epoch": epoch, "parameter": kind, "layer": layer, "value": values[i], "min": low,
                             "max": high})
    return rows


def main(args: argparse.Namespace) -> str:
    if (args.run is None) == (args.wandb is None):
        raise ConfigError("give either a run folder (or metrics.jsonl) or --wandb ENTITY/PROJECT/RUN_ID")
    source = args.wandb or args.run
    history = parameter_history(read_wandb_history(args.wandb) if args.wandb else read_metrics(args.run))
    if not history["epoch"]:
        raise DataError(f"{source} logged no α/β: it has no finished epoch or no AR-LIF neurons")
    rows = csv_rows(history)
    args.out.mkdir(parents=True, exist_ok=True)
    png, csv_path = args.out / "fig3_params.png", args.out / "fig3_params.csv"
    plot(history, png)
    write_rows(rows, csv_path)
    if args.log_wandb:
        log_figure(args.log_wandb, "fig3_params", png, rows, args.out)
    return (f"{len(history['alpha'])} layers over {len(history['epoch'])} epochs from {source}\n"
            f"written to {png} and {csv_path}")


if __name__ == "__main__":
    print(run_cli(lambda: main(parse_args())))
