"""A checkpoint from elsewhere is data (docs/scaling.md, "What loading a checkpoint can do").

A crafted checkpoint whose config names code (here a probe module on sys.path that leaves a marker file
when it is imported and another when it is called) is refused on every load path, sealed with arlif's
own `save_checkpoint` or not, with one line naming the key and value; the probe is never imported."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import get_method

from arlif.errors import CheckpointError, ConfigError
from arlif.runner.checkpoint import load_checkpoint, save_checkpoint
from arlif.runner.config import CONF_DIR, compose, resolve, validate
from arlif.runner.evaluation import evaluate_checkpoint
from arlif.runner.training import train
from helpers import tiny_run
from test_checksums import script

REPO = CONF_DIR.parent
RUN = tiny_run()
PROBE = "arlif_untrusted_probe"
PROBE_SOURCE = """\
from pathlib import Path
Path(__file__).with_name("imported").touch()
def build(*args, **kwargs):
    Path(__file__).with_name("called").touch()
"""
CODE = f"{PROBE}.build"


@pytest.fixture
def probe(tmp_path, monkeypatch) -> Path:
    """A folder on sys.path (and PYTHONPATH) holding the probe module; returns it."""
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / f"{PROBE}.py").write_text(PROBE_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), str(REPO)]))
    yield folder
    sys.modules.pop(PROBE, None)


def craft(trained: Path, folder: Path, sealed: bool, key: str = "dataset.builder", value: str = CODE) -> Path:
    """A copy of the trained run folder whose checkpoints' configs set `key` to `value`."""
    shutil.copytree(trained, folder)
    for name in ("last.pt", "best.pt"):
        state = torch.load(folder / name, weights_only=True)
        section, _, leaf = key.rpartition(".")
        state["config"][section][leaf] = value
        (save_checkpoint if sealed else torch.save)(state, folder / name)
    return folder


def refusal(path: Path, key: str = "dataset.builder", value: str = CODE) -> str:
    return f"checkpoint {path}: its config's {key}={value!r} is not "


def untouched(probe: Path) -> bool:
    return not (probe / "imported").exists() and not (probe / "called").exists() and PROBE not in sys.modules


def test_the_probe_leaves_its_markers_when_code_is_loaded_by_name(probe, trained):
    """What the tests below rule out, shown to be seen: resolving the name as before imports and calls it."""
    assert untouched(probe)
    get_method(CODE)(compose(RUN))
    assert (probe / "imported").exists() and (probe / "called").exists()


@pytest.mark.parametrize("sealed", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["sealed", "unsealed"])
def test_eval_py_refuses_a_checkpoint_that_names_code(sealed, probe, trained, tmp_path):
    run_dir = craft(trained, tmp_path / "run", sealed)
    out = subprocess.run([sys.executable, "eval.py", f"checkpoint={run_dir}", f"hydra.run.dir={tmp_path / 'eval'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {refusal(run_dir / 'best.pt')}"), out.stderr
    assert "Traceback" not in out.stderr
    assert untouched(probe)


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "unsealed"])
def test_resume_and_the_scripts_refuse_a_checkpoint_that_names_code(sealed, probe, trained, tmp_path):
    """trainer.resume=PATH and =auto (a search trial's too), eval.py's evaluation, and the figure and table scripts
    that evaluate run folders."""
    run_dir = craft(trained, tmp_path / "run", sealed)
    loads = {run_dir / "last.pt": [
                 lambda: train(compose([*RUN, "trainer.epochs=2", f"trainer.resume={run_dir / 'last.pt'}"]),
                               tmp_path / "resumed"),
                 lambda: train(compose([*RUN, "trainer.epochs=2", "trainer.resume=auto"]), run_dir)],
             run_dir / "best.pt": [
                 lambda: evaluate_checkpoint(compose([f"checkpoint={run_dir}"], "eval"), tmp_path / "eval"),
                 lambda: script("fig2_firing_rates", run_dir, "--out", tmp_path / "fig2"),
                 lambda: script("make_energy_table", run_dir, "--out", tmp_path / "energy")]}
    for path, calls in loads.items():
        for call in calls:
            with pytest.raises(CheckpointError) as err:
                call()
            assert str(err.value).startswith(refusal(path)) and "\n" not in str(err.value)
            assert untouched(probe)


@pytest.mark.parametrize("key", ["model.name", "neuron.name", "loss.name"])
def test_every_name_that_chooses_code_is_checked(key, trained, tmp_path):
    run_dir = craft(trained, tmp_path / "run", sealed=True, key=key, value="os.system")
    with pytest.raises(CheckpointError, match=f"^{refusal(run_dir / 'last.pt', key, 'os.system')}"):
        load_checkpoint(run_dir / "last.pt")


def test_a_checkpoint_with_the_former_dotted_path_still_evaluates(trained, tmp_path):
    """Checkpoints written before the registry hold the builder's dotted path: read as its name, not imported."""
    run_dir = craft(trained, tmp_path / "run", sealed=True, value="arlif.data.synthetic.build_synthetic")
    result = evaluate_checkpoint(compose([f"checkpoint={run_dir}"], "eval"), tmp_path / "eval")
    assert result["dataset"] == "synthetic" and result["test_samples"] == 8


def test_a_run_config_names_a_registered_builder():
    cfg = resolve(compose([*RUN, f"dataset.builder={CODE}"]))
    with pytest.raises(ConfigError, match=rf"^dataset.builder='{CODE}' is not a dataset builder of arlif; choose one"):
        validate(cfg)
