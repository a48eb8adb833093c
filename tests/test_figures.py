"""Figure scripts (Figs. 1c, 2, 3) and the energy table run on tiny checkpoints and write their files."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from arlif.reports.analysis import parameter_history, step_distances
from arlif.runner.config import compose
from arlif.errors import ConfigError, DataError
from arlif.reports.paper import TABLE3
from arlif.runner.training import train
from helpers import tiny_run

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
TINY_RUN = tiny_run("experiment=quickstart", "dataset.train_size=64", "dataset.test_size=32", "batch_size=16",
                    "trainer.epochs=2", "trainer.progress_bar=false")


def run(name, *argv):
    """Run scripts/<name>.py in this process (as its command line would) and return what it prints."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.main(script.parse_args([str(a) for a in argv]))


def check_png(path, size):
    """A PNG of `size` (width, height) pixels with something drawn: axes and text in grey, and data in colour."""
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == size
        rgb = np.asarray(img.convert("RGB")).astype(int)
    ink = (rgb.min(axis=-1) < 200).mean()  # anything darker than the white background
    colour = (rgb.max(axis=-1) - rgb.min(axis=-1) > 80).mean()  # matplotlib's data colours, not grey
    assert 0.01 < ink < 0.8 and colour > 0.002, (ink, colour)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run folders of a 2-epoch hard-reset LIF and AR-LIF training, by neuron name."""
    folders = {}
    for neuron in ("lif_hard", "arlif"):
        folders[neuron] = tmp_path_factory.mktemp(neuron)
        train(compose([*TINY_RUN, f"neuron={neuron}"]), folders[neuron])
    return folders


def test_step_distances_on_known_distributions():
    base = torch.randn(5000, dtype=torch.float64)
    same = step_distances(torch.stack([base, base, base]))
    assert same["js_mean"] == 0 and same["wasserstein_mean"] == 0
    shifted = step_distances(torch.stack([base, base + 0.5, base + 1.0]))
    assert shifted["wasserstein"][0][1] == pytest.approx(0.5) and shifted["wasserstein"][0][2] == pytest.approx(1.0)
    assert shifted["wasserstein_mean"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert 0 < shifted["js"][0][1] < shifted["js"][0][2] < 1


def test_fig1c_writes_plot_and_numbers(tmp_path):
    printed = run("fig1c_membrane", "--out", tmp_path, "--neurons", 2000, "--steps", 4)
    check_png(tmp_path / "fig1c_membrane.png", (1890, 510))  # figsize (4.2 per neuron x 3 neurons, 3.4) at 150 dpi
    rows = read_csv(tmp_path / "fig1c_membrane.csv")
    data = json.loads((tmp_path / "fig1c_membrane.json").read_text())
    assert [r["neuron"] for r in rows] == list(data["distances"]) == ["lif_hard", "lif_soft", "arlif"]
    for r in rows:
        d = data["distances"][r["neuron"]]
        assert float(r["js_divergence_mean"]) == d["js_mean"] and float(r["wasserstein_mean"]) == d["wasserstein_mean"]
        assert len(d["js"]) == 4 and d["wasserstein_mean"] > 0
        assert f"{d['js_mean']:.4f}" in printed
    assert data["settings"]["steps"] == 4


def test_fig2_evaluates_checkpoints(runs, tmp_path):
    order = ["lif_hard", "arlif"]
    printed = run("fig2_firing_rates", *(runs[n] for n in order), "--out", tmp_path, "--", "trainer.device=cpu")
    check_png(tmp_path / "fig2_firing_rates.png", (1050, 540))  # figsize (7, 3.6) at 150 dpi
    rows = read_csv(tmp_path / "fig2_firing_rates.csv")
    for i, neuron in enumerate(order):
        evaluated = json.loads((tmp_path / "eval" / str(i) / "eval.json").read_text())
        assert evaluated["neuron"] == neuron and neuron in printed
        mine = [r for r in rows if r["label"] == neuron]
        assert {r["layer"]: float(r["firing_rate"]) for r in mine} == evaluated["firing_rates"]
        # best.pt evaluated again gives the rates training measured at its best epoch
        summary = json.loads((runs[neuron] / "summary.json").read_text())
        metrics = [json.loads(line) for line in (runs[neuron] / "metrics.jsonl").read_text().splitlines()]
        at_best = metrics[summary["best_epoch"] - 1]["firing_rates"]
        assert evaluated["firing_rates"] == pytest.approx(at_best, rel=1e-6)

    # an eval.json is used as it is, and labels name the curves
    again = tmp_path / "again"
    run("fig2_firing_rates", tmp_path / "eval" / "1" / "eval.json", "--labels", "AR-LIF", "--out", again)
    assert {r["label"] for r in read_csv(again / "fig2_firing_rates.csv")} == {"AR-LIF"}
    assert not (again / "eval").exists()


def test_fig3_tracks_alpha_beta_and_logs_to_wandb(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run("fig3_params", runs["arlif"], "--out", tmp_path, "--log-wandb", "arlif-test")
    check_png(tmp_path / "fig3_params.png", (1500, 540))  # figsize (10, 3.6) at 150 dpi
    metrics = [json.loads(line) for line in (runs["arlif"] / "metrics.jsonl").read_text().splitlines()]
    rows = read_csv(tmp_path / "fig3_params.csv")
    assert len(rows) == 2 * sum(len(m["alpha"]) for m in metrics)
    for r in rows:
        assert float(r["value"]) == metrics[int(r["epoch"]) - 1][r["parameter"]][r["layer"]]
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_fig3_reads_wandb_history_rows():
    rows = [{"epoch": 1, "alpha/l1": 1.0, "beta/l1": 0.0, "_step": 1}, {"epoch": 2, "alpha/l1": 0.9, "beta/l1": 0.1},
            {"epoch": 3, "test_acc": 50.0}]
    assert parameter_history(rows) == {"epoch": [1, 2], "alpha": {"l1": [1.0, 0.9]}, "beta": {"l1": [0.0, 0.1]},
                                       "range": {"alpha": {}, "beta": {}}}


def test_fig3_reads_per_channel_values_as_mean_and_range():
    """metrics.jsonl nests {"mean", "min", "max"} for a vector; W&B flattens it to "alpha/<layer>/mean", ..."""
    nested = [{"epoch": 1, "alpha": {"l1": {"mean": 0.5, "min": 0.4, "max": 0.7}, "l2": 1.0},
               "beta": {"l1": {"mean": 0.1, "min": 0.0, "max": 0.2}, "l2": 0.0}}]
    flat = [{"epoch": 1, "alpha/l1/mean": 0.5, "alpha/l1/min": 0.4, "alpha/l1/max": 0.7, "alpha/l2": 1.0,
             "beta/l1/mean": 0.1, "beta/l1/min": 0.0, "beta/l1/max": 0.2, "beta/l2": 0.0}]
    want = {"epoch": [1], "alpha": {"l1": [0.5], "l2": [1.0]}, "beta": {"l1": [0.1], "l2": [0.0]},
            "range": {"alpha": {"l1": [(0.4, 0.7)]}, "beta": {"l1": [(0.0, 0.2)]}}}
    assert parameter_history(nested) == want and parameter_history(flat) == want


def test_fig3_on_a_lif_run_is_a_clear_error(runs, tmp_path):
    with pytest.raises(DataError, match="no α/β"):
        run("fig3_params", runs["lif_hard"], "--out", tmp_path)
    with pytest.raises(ConfigError, match="give either"):
        run("fig3_params", "--out", tmp_path)


def test_energy_table_from_checkpoints(runs, tmp_path):
    printed = run("make_energy_table", runs["arlif"], "--out", tmp_path)
    rows = read_csv(tmp_path / "energy.csv")
    evaluated = json.loads((tmp_path / "eval" / "0" / "eval.json").read_text())
    energy = evaluated["energy"]
    assert [(r["source"], r["neuron"]) for r in rows] == [("ours", "arlif")]  # no published row for this data
    assert float(rows[0]["energy_uJ"]) == energy["energy_uJ"] and float(rows[0]["acs_M"]) == energy["acs"] / 1e6
    assert energy["macs"] == energy["layers"][0]["macs"] > 0 and energy["acs"] > 0
    assert (tmp_path / "energy.md").read_text() in printed


def test_energy_table_puts_the_paper_row_under_ours_once(tmp_path):
    paper = TABLE3[0]
    paths = []
    for neuron in ("arlif", "clif"):
        result = {"dataset": paper.dataset, "model": paper.model, "neuron": neuron, "T": paper.T, "firing_rate": 0.1,
                  "test_acc": 95.0, "energy": {"params": 11.18e6, "flops": 1110.9e6, "macs": 1.77e6, "acs": 90e6,
                                               "energy_uJ": 4.6 * 1.77 + 0.9 * 90}}
        paths.append(tmp_path / neuron / "eval.json")
        paths[-1].parent.mkdir()
        paths[-1].write_text(json.dumps(result))
    printed = run("make_energy_table", *paths, "--out", tmp_path)
    rows = read_csv(tmp_path / "energy.csv")
    assert [(r["source"], r["neuron"]) for r in rows] == [("ours", "arlif"), ("paper", "arlif"), ("ours", "clif")]
    assert float(rows[1]["energy_uJ"]) == paper.energy_uj and rows[1]["test_acc"] == ""
    assert "copied from the AR-LIF paper's Table 3" in printed


def test_energy_table_of_a_resnet19_run_with_a_competitor_neuron(tmp_path):
    """A real one-epoch ResNet-19 training with TET's LIF: its checkpoint evaluates into an energy row."""
    folder = tmp_path / "run"
    train(compose([*TINY_RUN, "model=resnet19", "neuron=tet_lif", "trainer.epochs=1", "dataset.train_size=16",
                   "dataset.test_size=8"]), folder)
    printed = run("make_energy_table", folder, "--out", tmp_path / "energy")
    rows = read_csv(tmp_path / "energy" / "energy.csv")
    energy = json.loads((tmp_path / "energy" / "eval" / "0" / "eval.json").read_text())["energy"]
    assert [(r["source"], r["model"], r["neuron"]) for r in rows] == [("ours", "resnet19", "tet_lif")]
    # TET's count (3 input channels, 10 classes) for 2 input channels and 4 classes
    assert energy["params"] == 12_630_858 - 64 * 9 - (10 * 256 + 10) + (4 * 256 + 4)
    assert energy["macs"] == energy["layers"][0]["macs"] > 0  # only the stem is fed real values
    assert "| ours | synthetic | ResNet-19 | tet_lif |" in printed
