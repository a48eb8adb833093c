"""Fig. 1c: membrane-potential distributions of LIF and AR-LIF neurons across time steps.

    python scripts/fig1c_membrane.py [--out results/fig1c] [--steps 8] [--neurons 20000] ...

Each neuron type (fresh layers: AR-LIF at its initial α = 1, β = 0) is driven by the same
inputs i[t] = x + ε_t, x ~ N(mean, std²) per neuron and ε_t ~ N(0, perturbation²) per step.
The charged potential h[t] is compared between every two steps with the Jensen-Shannon
divergence of their histograms and the Wasserstein-1 distance (lower: the distribution
changes less over time).  The paper does not give its input parameters; the defaults are
a standard normal current with noise of half its std.  Writes fig1c_membrane.png,
fig1c_membrane.csv (means over step pairs) and fig1c_membrane.json (all pairs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
import numpy as np

from arlif.reports.analysis import log_figure, membrane_potentials, perturbed_normal_inputs, step_distances
from arlif.reports.csv_rows import write_rows
from arlif.runner.cli import run_cli
from arlif.errors import ConfigError
from arlif.neurons import NEURONS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/fig1c"), help="output folder")
    p.add_argument("--neuron-types", nargs="+", default=["lif_hard", "lif_soft", "arlif"], metavar="NAME")
    p.add_argument("--steps", type=int, default=8, help="time steps T")
    p.add_argument("--neurons", type=int, default=20000, help="neurons (samples per step)")
    p.add_argument("--mean", type=float, default=0.0, help="mean of the per-neuron input current")
    p.add_argument("--std", type=float, default=1.0, help="std of the per-neuron input current")
    p.add_argument("--perturbation", type=float, default=0.5, help="std of the per-step input noise")
    p.add_argument("--bins", type=int, default=100, help="histogram bins for the JS divergence")
    p.add_argument("--seed", type=int, default=2022)
    p.add_argument("--log-wandb", metavar="[ENTITY/]PROJECT", help="also log the figure to this W&B project")
    return p.parse_args(argv)


def check(args: argparse.Namespace) -> None:
    unknown = [n for n in args.neuron_types if n not in NEURONS]
    if unknown:
        raise ConfigError(f"--neuron-types {unknown} unknown; choose from {sorted(NEURONS)}")
    if args.steps < 2 or args.neurons < 2 or args.bins < 2:
        raise ConfigError("--steps, --neurons and --bins must each be at least 2")


def plot(potentials: dict, distances: dict, path: Path) -> None:
    names = list(potentials)
    fig = Figure(figsize=(4.2 * len(names), 3.4))
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)
    everything = np.concatenate([v.flatten().numpy() for v in potentials.values()])
    edges = np.linspace(*np.percentile(everything, [0.5, 99.5]), 80)
    colors = colormaps["viridis"](np.linspace(0, 1, next(iter(potentials.values())).shape[0]))
    for ax, name in zip(axes[0], names):
        for t, (row, color) in enumerate(zip(potentials[name].numpy(), colors)):
            ax.hist(row, bins=edges, density=True, histtype="step", color=color, label=f"t={t + 1}")
        d = distances[name]
        ax.set_title(f"{name}\nJS {d['js_mean']:.4f}, W1 {d['wasserstein_mean']:.4f}", fontsize=10)
        ax.set_xlabel("membrane potential h[t]")
    axes[0][0].set_ylabel("density")
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def main(args: argparse.Namespace) -> str:
    check(args)
    inputs = perturbed_normal_inputs(args.steps, args.neurons, args.mean, args.std, args.perturbation, args.seed)
    potentials = {name: membrane_potentials(name, inputs) for name in args.neuron_types}
    distances = {name: step_distances(v, args.bins) for name, v in potentials.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "fig1c_membrane.png"
    plot(potentials, distances, png)
    rows = [{"neuron": n, "js_divergence_mean": d["js_mean"], "wasserstein_mean": d["wasserstein_mean"]}
            for n, d in distances.items()]
    write_rows(rows, args.out / "fig1c_membrane.csv")
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "log_wandb")}
    (args.out / "fig1c_membrane.json").write_text(json.dumps({"settings": settings, "distances": distances}, indent=2))
    if args.log_wandb:
        log_figure(args.log_wandb, "fig1c_membrane", png, rows, args.out)
    table = "\n".join(f"{r['neuron']:>24}  JS {r['js_divergence_mean']:.4f}  W1 {r['wasserstein_mean']:.4f}"
                      for r in rows)
    return f"{table}\nwritten to {args.out}/ (fig1c_membrane.png, .csv, .json)"


if __name__ == "__main__":
    print(run_cli(lambda: main(parse_args())))
