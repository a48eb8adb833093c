"""Data behind the paper's figures, for the scripts in scripts/.

- Fig. 1c: membrane-potential distributions of fresh neurons driven by perturbed normal
  inputs, and how much they change between time steps (JS divergence, Wasserstein-1).
- Fig. 2: per-layer firing rates of trained checkpoints, through eval.py's pipeline.
- Fig. 3: α and β of every AR-LIF layer across epochs, from metrics.jsonl or W&B.
"""

from __future__ import annotations

import json
import logging
from itertools import combinations
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from torch import Tensor

from arlif.errors import ConfigError, DataError
from arlif.neurons import build_neuron
from arlif.runner.records import EVAL
from arlif.runner.tracking import resolve_wandb_mode

log = logging.getLogger(__name__)


# ---- Fig. 1c --------------------------------------------------------------------------------

def perturbed_normal_inputs(T: int, n: int, mean: float, std: float, perturbation: float, seed: int) -> Tensor:
    """Input currents [T, n]: a fixed N(mean, std²) current per neuron plus fresh N(0, perturbation²) noise per step."""
    g = torch.Generator().manual_seed(seed)
    base = mean + std * torch.randn(n, generator=g)
    return base + perturbation * torch.randn(T, n, generator=g)


def membrane_potentials(neuron: str, inputs: Tensor) -> Tensor:
    """Charged membrane potential h[t] [T, n] of a freshly built `neuron` layer (initial α, β) fed `inputs`."""
    layer = build_neuron(neuron, channels=inputs.shape[1], T=inputs.shape[0])
    layer.store_v = True
    with torch.no_grad():
        layer(inputs)
    return layer.v_seq


def step_distances(v: Tensor, bins: int = 100) -> dict:
    """Distances between the distributions of v[s] and v[t] for every pair of steps s < t.

    `js`: Jensen-Shannon divergence (base 2, in [0, 1]) of histograms on shared bins;
    `wasserstein`: Wasserstein-1 distance of the samples.  Matrices are T x T (symmetric,
    zero diagonal); `*_mean` average the pairs s < t.
    """
    x = v.double().numpy()
    T = x.shape[0]
    edges = np.histogram_bin_edges(x, bins=bins)
    hists = [np.histogram(row, bins=edges)[0] for row in x]
    js, w1 = np.zeros((T, T)), np.zeros((T, T))
    for s, t in combinations(range(T), 2):
        js[s, t] = js[t, s] = jensenshannon(hists[s], hists[t], base=2) ** 2
        w1[s, t] = w1[t, s] = wasserstein_distance(x[s], x[t])
    pairs = np.triu_indices(T, 1)
    return {"js": js.tolist(), "wasserstein": w1.tolist(), "js_mean": float(js[pairs].mean()),
            "wasserstein_mean": float(w1[pairs].mean())}


# ---- Fig. 2 (and Table 3) -------------------------------------------------------------------

def evaluate_runs(inputs: Sequence[Path], out_dir: Path, overrides: Sequence[str] = ()) -> list[dict]:
    """The eval.json result of each input, in order.

    An `eval.json` file is read as it is; a checkpoint or run folder is evaluated on its
    test set exactly as `python eval.py checkpoint=PATH <overrides>` does, writing
    out_dir/eval/<i>/eval.json.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from arlif.runner.config import compose
    from arlif.runner.evaluation import evaluate_checkpoint

    results = []
    for i, path in enumerate(map(Path, inputs)):
        if path.name == EVAL:
            try:
                results.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"{path} is not a readable eval.json: {exc}") from exc
            continue
        try:
            cfg = compose(overrides, config_name="eval")
        except (HydraException, OmegaConfBaseException) as exc:
            raise ConfigError(f"the overrides {list(overrides)} do not apply to conf/eval.yaml: {exc}") from exc
        cfg.checkpoint = str(path)
        results.append(evaluate_checkpoint(cfg, out_dir / "eval" / str(i), overrides))
    return results


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(script arguments, config overrides): the overrides are whatever follows `--`."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    split = argv.index("--")
    return argv[:split], argv[split + 1:]


def run_labels(results: Sequence[dict], labels: Optional[Sequence[str]] = None) -> list[str]:
    """Given labels, or each result's neuron name (with its position when names repeat)."""
    if labels:
        if len(labels) != len(results):
            raise DataError(f"{len(labels)} labels for {len(results)} runs; give one label per run")
        return list(labels)
    names = [r["neuron"] for r in results]
    return [n if names.count(n) == 1 else f"{n} #{i + 1}" for i, n in enumerate(names)]


# ---- Fig. 3 ---------------------------------------------------------------------------------

SPREAD = ("mean", "min", "max")  # how a vector parameter (per channel or step) is logged per layer


def parameter_history(rows: Sequence[dict]) -> dict:
    """{"epoch": [...], "alpha": {layer: [...]}, "beta": {layer: [...]}, "range": {kind: {layer: [(min, max), ...]}}}
    from per-epoch rows.

    Rows are metrics.jsonl records (nested "alpha"/"beta" dicts) or W&B history rows (flat
    "alpha/<layer>" keys); rows without α are skipped.  A layer whose value is a vector was
    logged as {"mean", "min", "max"} ("alpha/<layer>/mean", ... in W&B): its series is the
    mean and "range" holds its (min, max) per epoch.
    """
    out = {"epoch": [], "alpha": {}, "beta": {}, "range": {"alpha": {}, "beta": {}}}
    for row in rows:
        params = {kind: dict(row.get(kind) or {}) for kind in ("alpha", "beta")}
        for key, value in row.items():
            kind, sep, layer = key.partition("/")
            if sep and kind in params and value is not None:
                head, slash, part = layer.rpartition("/")
                if slash and part in SPREAD:
                    params[kind].setdefault(head, {})[part] = value
                else:
                    params[kind][layer] = value
        if not params["alpha"]:
            continue
        out["epoch"].append(row["epoch"])
        for kind in ("alpha", "beta"):
            for layer, value in params[kind].items():
                if isinstance(value, dict):
                    out["range"][kind].setdefault(layer, []).append((value["min"], value["max"]))
                    value = value["mean"]
                out[kind].setdefault(layer, []).append(value)
    return out


# ---- W&B ------------------------------------------------------------------------------------

def log_figure(project: str, name: str, image: Path, rows: Sequence[dict], out_dir: Path) -> None:
    """Log a figure and its numbers as a W&B run of `project` ("[entity/]project"); warn on failure."""
    log_figures(project, name, {name: image}, {f"{name}_data": rows}, out_dir)


def log_figures(project: str, name: str, images: dict[str, Path], tables: dict[str, Sequence[dict]],
                out_dir: Path) -> None:
    """Log images and row tables (by key) as one W&B run `name` of `project`; warn on failure."""
    try:
        import wandb

        entity, _, proj = project.rpartition("/")
        run = wandb.init(project=proj, entity=entity or None, name=name, job_type="figure", dir=str(out_dir),
                         mode=resolve_wandb_mode("auto"))
        logged = {key: wandb.Image(str(image)) for key, image in images.items()}
        for key, rows in tables.items():
            columns = list(rows[0]) if rows else []
            logged[key] = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
        run.log(logged)
        run.finish()
    except Exception as exc:  # W&B is optional: the files on disk are the result
        log.warning("could not log %s to W&B (%s: %s); the files are written", name, type(exc).__name__, exc)
