"""Learning curves (scripts/plot_runs.py, arlif.reports.curves) of a real small multirun: groups and their run counts,
the band over seeds, diverged and killed runs marked, images of the right size that are not blank, and
report.md holding make_tables.py's numbers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from PIL import Image

from arlif.reports.curves import BAND, DPI, collect, curve_values, figure_size, plot_metric
from arlif.runner.records import read_metrics as metrics
from arlif.errors import ConfigError, DataError
from arlif.reports.results import build_tables
from arlif.reports.runs import read_summaries
from arlif.runner.tracking import flatten
from helpers import script, tiny_run

ROOT = Path(__file__).resolve().parents[1]
# Two learning rates x two seeds.  With the preset's AdamW, lr = 1e7 overflows the loss in epoch 2 on this
# data (1e6 to 1e8 all do, for seeds 1 to 3), so that group's runs stop as `diverged` after one epoch.  The
# experiment name carries the learning rate, which makes each learning rate a group in the tables and plots.
SWEEP = tiny_run("experiment=quickstart", "dataset.train_size=64", "dataset.test_size=32", "batch_size=16",
                 "trainer.epochs=2", "trainer.progress_bar=false", "seed=1,2", "optimizer.lr=0.1,1e7", "experiment.name=lr${optimizer.lr}")
GOOD, DIVERGED = "lr0.1", "lr10000000.0"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The multirun folder and the report written from it."""
    folder = tmp_path_factory.mktemp("sweep") / "multirun"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}  # tiny tensors: no thread spin
    out = subprocess.run([sys.executable, "train.py", "-m", *SWEEP, f"hydra.sweep.dir={folder}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    report = tmp_path_factory.mktemp("curves")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        printed = script("plot_runs", folder, "--out", report, "--log-wandb", "arlif-test")
    return folder, report, printed


def run_dirs(folder: Path, experiment: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and f"-{experiment}-seed" in p.name)


def test_groups_band_over_seeds_and_diverged_runs_marked(sweep):
    folder, _, printed = sweep
    assert printed.startswith("4 runs;")
    groups = {g.label: g for g in collect(read_summaries([folder]))}
    assert set(groups) == {GOOD, DIVERGED} and all(len(g.runs) == 2 for g in groups.values())
    assert {r.status for r in groups[GOOD].runs} == {"finished"}
    assert {r.status for r in groups[DIVERGED].runs} == {"diverged"}

    fig = plot_metric(list(groups.values()), "test_acc")
    (ax,) = fig.axes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [f"{GOOD} (n=2)", f"{DIVERGED} (n=2)", "diverged: last epoch"]
    assert fig.legends[0].get_title().get_text() == BAND

    good = [metrics(d) for d in run_dirs(folder, GOOD)]
    assert [len(m) for m in good] == [2, 2]
    mean_line = ax.lines[0]
    assert list(mean_line.get_xdata()) == [1, 2]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # one per group: both have two seeds
    vertices = bands[0].get_paths()[0].vertices
    for i, epoch in enumerate((1, 2)):
        accs = [m[i]["test_acc"] for m in good]
        assert mean_line.get_ydata()[i] == pytest.approx(sum(accs) / 2)
        assert {round(y, 9) for x, y in vertices if x == epoch} == {round(min(accs), 9), round(max(accs), 9)}

    # each diverged run: its curve ends at epoch 1 and carries the diverged marker there
    diverged = [metrics(d) for d in run_dirs(folder, DIVERGED)]
    assert [len(m) for m in diverged] == [1, 1]
    markers = [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines[1:] if line.get_marker() == "D"]
    assert sorted(markers) == sorted((1, m[0]["test_acc"]) for m in diverged)
    assert list(ax.lines[1].get_xdata()) == [1]  # the diverged group's mean ends with its runs


def test_images_have_their_size_and_show_the_curves(sweep):
    folder, report, _ = sweep
    layers = list(metrics(run_dirs(folder, GOOD)[0])[0]["alpha"])
    written = sorted(p.stem for p in report.glob("*.png"))
    assert written == sorted(["test_acc", "train_loss", "lr", "firing_rate", "alpha", "beta"])  # no val split
    # legend: two groups and the diverged marker, in one column per panel column
    for name, panels, legend_rows in (("test_acc", 1, 3), ("alpha", len(layers), 1)):
        image = np.asarray(Image.open(report / f"{name}.png").convert("RGB"), dtype=float) / 255
        width, height = figure_size(panels, legend_rows)
        assert image.shape[:2] == (round(height * DPI), round(width * DPI))
        assert (image < 0.9).any(axis=2).mean() > 0.03  # axes, text and curves, not a blank page
        for color in ("tab:blue", "tab:orange"):  # each group's line is drawn
            assert (np.abs(image - to_rgb(color)).max(axis=2) < 0.05).sum() > 20, (name, color)
    assert len(layers) == 3


def test_report_holds_the_tables_of_make_tables_and_the_plots(sweep, tmp_path):
    folder, report, _ = sweep
    text = (report / "report.md").read_text()
    script("make_tables", folder, "--out", tmp_path)
    sections = ["### " + s for s in (tmp_path / "tables.md").read_text().split("### ") if s]
    other = [s for s in sections if s.startswith("### Other runs")]
    assert len(other) == 1 and other[0].strip() in text
    assert "### Table 1" not in text  # paper tables without any of these runs are left out
    for png in report.glob("*.png"):
        assert f"]({png.name})" in text
    runs = [line for line in text.splitlines() if line.startswith(f"| {DIVERGED} |") and "summary.json" in line]
    assert len(runs) == 2 and all("| diverged | 1/2 |" in line for line in runs)


def test_plots_and_tables_are_logged_as_one_wandb_run(sweep):
    _, report, _ = sweep
    (run,) = (report / "wandb").glob("offline-run-*")
    media = run / "files" / "media"
    assert sorted(p.name.split("_0_")[0] for p in (media / "images").glob("*.png")) == \
        sorted(p.stem for p in report.glob("*.png"))
    assert sorted(p.name.split("_0_")[0] for p in (media / "table").glob("*.table.json")) == ["other_runs", "runs"]
    runs = json.loads(next((media / "table").glob("runs_0_*.table.json")).read_text())
    assert len(runs["data"]) == 4 and runs["columns"][:3] == ["group", "seed", "status"]


def test_killed_run_is_marked_at_its_last_epoch(sweep, tmp_path):
    folder, _, _ = sweep
    killed = tmp_path / "killed"
    shutil.copytree(run_dirs(folder, GOOD)[0], killed)
    summary = json.loads((killed / "summary.json").read_text())
    (killed / "summary.json").write_text(json.dumps({**summary, "status": "running", "epochs_completed": 1}))
    first = (killed / "metrics.jsonl").read_text().splitlines()[0]
    (killed / "metrics.jsonl").write_text(first + "\n")  # as a SIGKILL during epoch 2 leaves it

    (group,) = collect(read_summaries([killed]))
    assert [r.status for r in group.runs] == ["killed"]
    for metric in ("test_acc", "alpha"):
        fig = plot_metric([group], metric)
        assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"{GOOD} (n=1)", "killed: last epoch"]
        assert all(list(line.get_xdata()) == [1] for ax in fig.axes for line in ax.lines)
        assert not [c for ax in fig.axes for c in ax.collections]  # one run: no band


def test_runs_of_one_experiment_are_split_by_the_overrides_that_differ(sweep, tmp_path):
    """The same runs under one experiment name (as a grid over optimizer.lr, or a search's trials, has):
    their launch overrides (.hydra/overrides.yaml) differ in optimizer.lr only, so each lr is one group
    of two seeds, in the tables and the plots."""
    folder, _, _ = sweep
    grid = tmp_path / "grid"
    for run_dir in run_dirs(folder, GOOD) + run_dirs(folder, DIVERGED):
        shutil.copytree(run_dir, grid / run_dir.name)
        summary = json.loads((grid / run_dir.name / "summary.json").read_text())
        (grid / run_dir.name / "summary.json").write_text(json.dumps({**summary, "experiment": "grid"}))

    groups = {g.label: g for g in collect(read_summaries([grid]))}
    lrs = {f"optimizer.lr={name[2:]}" for name in (GOOD, DIVERGED)}  # as Hydra wrote the sweep's values
    assert set(groups) == lrs
    assert all(sorted(r.run["seed"] for r in g.runs) == [1, 2] for g in groups.values())
    other = {row["variant"]: row for row in build_tables(read_summaries([grid]))[-1].rows}
    assert set(other) == lrs and {r["runs"] for r in other.values()} == {2}


def test_wandb_history_rows_give_the_same_curves_as_metrics_jsonl(sweep):
    folder, _, _ = sweep
    rows = metrics(run_dirs(folder, GOOD)[0])
    history = [{**flatten(row), "_step": i, "_runtime": 3.0 * i} for i, row in enumerate(rows)]  # as W&B logs
    values = curve_values(history)
    assert values == curve_values(rows)
    per_layer = {f"{kind}/{layer}" for kind in ("alpha", "beta") for layer in rows[0]["alpha"]}
    assert set(values) == {"test_acc", "train_loss", "lr", "firing_rate"} | per_layer  # not firing_rates/<layer>
    assert values["test_acc"] == {row["epoch"]: row["test_acc"] for row in rows}


def test_nothing_to_plot_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="give run folders"):
        script("plot_runs")
    with pytest.raises(DataError, match="no finished epoch"):
        script("plot_runs", tmp_path, "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()
