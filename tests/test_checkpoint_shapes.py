"""A checkpoint of the right network but other shapes: one CheckpointError line on resume and in eval,
naming the parameters that differ and the checkpoint's config values to pass instead."""

import subprocess
import sys

import pytest

from arlif.runner.checkpoint import load_checkpoint, save_checkpoint
from arlif.runner.config import CONF_DIR, compose
from arlif.errors import CheckpointError
from arlif.runner.evaluation import evaluate_checkpoint
from arlif.runner.training import train
from helpers import tiny_run

# quickcnn on 2-channel 8x8 images of 4 classes: its head is fc [4, 256]
TINY = tiny_run()
MISMATCHES = {
    "dataset.num_classes=5": "fc.weight: checkpoint [4, 256] vs model [5, 256]; fc.bias: checkpoint [4] vs model [5]; "
                             "pass the checkpoint's dataset.num_classes=4",
    "dataset.in_channels=3": "encoder.module.weight: checkpoint [32, 2, 3, 3] vs model [32, 3, 3, 3]; "
                             "pass the checkpoint's dataset.in_channels=2",
    "dataset.image_size=16": "fc.weight: checkpoint [4, 256] vs model [4, 1024]; "
                             "pass the checkpoint's dataset.image_size=8",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    train(compose(TINY), run_dir)
    return run_dir


@pytest.mark.parametrize("override", sorted(MISMATCHES))
def test_resume_and_eval_name_the_shapes_and_the_values_to_pass(run_dir, override):
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    before = last.read_bytes()
    with pytest.raises(CheckpointError) as err:
        train(compose([*TINY, "trainer.epochs=2", "trainer.resume=auto", override]), run_dir)
    assert str(err.value) == f"checkpoint {last} does not fit quickcnn with arlif neurons: {MISMATCHES[override]}"
    assert last.read_bytes() == before  # the run it refused to continue is untouched
    with pytest.raises(CheckpointError) as err:
        evaluate_checkpoint(compose([f"checkpoint={run_dir}", override], "eval"), run_dir / "eval", [override])
    assert str(err.value) == f"checkpoint {best} does not fit quickcnn with arlif neurons: {MISMATCHES[override]}"


def test_eval_of_another_neuron_lists_the_first_few_and_counts_the_rest(run_dir):
    with pytest.raises(CheckpointError) as err:
        evaluate_checkpoint(compose([f"checkpoint={run_dir}", "neuron=lif_hard"], "eval"), run_dir / "eval",
                            ["neuron=lif_hard"])
    assert str(err.value) == (f"checkpoint {run_dir / 'best.pt'} does not fit quickcnn with lif_hard neurons: "
                              "features.1.alpha: not in the model; features.1.beta_raw: not in the model; "
                              "features.5.alpha: not in the model and 3 more; pass the checkpoint's neuron.name=arlif")


def test_weights_of_another_code_version_are_named_too(run_dir, tmp_path):
    state = load_checkpoint(run_dir / "best.pt")
    state["model"]["fc.weight"] = state["model"]["fc.weight"][:, :128]  # same config, other shapes
    save_checkpoint(state, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"fc.weight: checkpoint \[4, 128\] vs model \[4, 256\]; its config "
                                              "builds this same network, so it was written by another version"):
        evaluate_checkpoint(compose([f"checkpoint={tmp_path / 'old.pt'}"], "eval"), tmp_path / "eval")


def test_bn_mode_is_no_shape_so_eval_under_either_gives_the_same_result(run_dir):
    """bn_mode only changes how training normalises; the weights and the evaluation are the same."""
    results = [evaluate_checkpoint(compose([f"checkpoint={run_dir}", o], "eval"), run_dir / "eval", [o])
               for o in ("model.bn_mode=per_step", "model.bn_mode=shared")]
    assert results[0]["test_loss"] == results[1]["test_loss"] and results[0]["test_acc"] == results[1]["test_acc"]


def test_eval_py_prints_one_error_line_and_exits_2(run_dir):
    out = subprocess.run([sys.executable, "eval.py", f"checkpoint={run_dir}", "dataset.num_classes=5",
                          f"hydra.run.dir={run_dir / 'eval_cli'}"], cwd=CONF_DIR.parent, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2
    message = (f"error: checkpoint {run_dir / 'best.pt'} does not fit quickcnn with arlif neurons: "
               f"{MISMATCHES['dataset.num_classes=5']}")
    assert out.stderr.strip().splitlines()[-1] == message and "Traceback" not in out.stderr
