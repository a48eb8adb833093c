"""The two datasets that need no download: scikit-learn digits (quick start) and synthetic."""

import json
import subprocess
import sys

import pytest
import torch

from arlif.runner.config import CONF_DIR, compose
from arlif.data import build_data


def test_digits_fixed_stratified_split():
    a = build_data(compose(["dataset=digits", "seed=1"]))
    b = build_data(compose(["dataset=digits", "seed=2"]))
    assert (len(a.train), len(a.test)) == (1437, 360)
    x, y = a.test.tensors
    assert x.shape == (360, 1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, b.test.tensors[0])  # the test images do not move with the seed
    per_class = torch.bincount(torch.cat([y, a.train.tensors[1]]))
    assert ((torch.bincount(y) - 0.2 * per_class).abs() <= 1).all()  # stratified
    assert not a.temporal and a.batch_transform is None


def test_synthetic_static_and_temporal_shapes():
    static = build_data(compose(["dataset=synthetic"]))
    x, y = static.train[0]
    assert x.shape == (2, 16, 16) and y.item() == 0 and not static.temporal
    frames = build_data(compose(["dataset=synthetic", "dataset.temporal=true", "T=5"]))
    assert frames.train[0][0].shape == (5, 2, 16, 16) and frames.temporal
    again = build_data(compose(["dataset=synthetic", "dataset.temporal=true", "T=5"]))
    assert torch.equal(frames.test.tensors[0], again.test.tensors[0])  # drawn from the seed


@pytest.mark.slow
def test_quickstart_reaches_90_percent_in_3_minutes(tmp_path):
    out = subprocess.run([sys.executable, "train.py", "experiment=quickstart", f"hydra.run.dir={tmp_path}"],
                         cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_acc_final"] >= 90.0 and summary["finished"]
    assert summary["wall_time_s"] < 180
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
