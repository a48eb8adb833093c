"""Every config group option and preset composes, resolves and validates; bad values fail clearly."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from arlif.runner.config import CONF_DIR, compose, resolve, validate
from arlif.errors import CheckpointError, ConfigError
from arlif.runner.training import train

GROUPS = ["dataset", "model", "neuron", "loss", "optimizer", "scheduler", "trainer", "logger", "experiment"]
OPTIONS = [(g, str(p.relative_to(CONF_DIR / g).with_suffix(""))) for g in GROUPS
           for p in sorted((CONF_DIR / g).rglob("*.yaml"))]  # presets may sit in subfolders


def test_every_group_has_options():
    found = {g for g, _ in OPTIONS}
    assert found == set(GROUPS)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes(group, option):
    cfg = resolve(compose([f"{group}={option}"]))
    validate(cfg)
    if group in ("dataset", "model", "neuron"):
        assert cfg[group].name == option


def test_default_is_the_headline_cell():
    cfg = compose()
    assert (cfg.dataset.name, cfg.model.name, cfg.neuron.name, cfg.T) == ("cifar10", "resnet18", "arlif", 4)
    assert cfg.optimizer.name == "sgd" and cfg.scheduler.t_max == cfg.trainer.epochs == 400
    assert (cfg.loss.tet_weight, cfg.loss.mse_weight, cfg.loss.mse_target) == (0.95, 0.05, "constant")
    assert cfg.logger.name == "wandb" and cfg.logger.group == "cifar10-resnet18-arlif-T4"


def test_preset_wins_over_defaults_and_command_line_wins_over_preset():
    cfg = compose(["experiment=quickstart"])
    assert (cfg.dataset.name, cfg.model.name, cfg.experiment.name, cfg.logger.mode) == \
        ("digits", "quickcnn", "quickstart", "offline")
    assert compose(["experiment=quickstart", "T=2"]).T == 2


def test_eval_config_composes_with_run_overrides():
    cfg = compose(["checkpoint=some.pt", "trainer.device=cpu"], config_name="eval")
    assert cfg.checkpoint == "some.pt" and cfg.trainer.device == "cpu"


def test_cfg_job_prints_the_headline_config():
    out = subprocess.run([sys.executable, "train.py", "--cfg", "job"], cwd=CONF_DIR.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    printed = OmegaConf.create(out.stdout)
    assert printed.model.name == "resnet18" and printed.T == 4


BAD = [
    ("T=0", "T=0"),
    ("T=-3", "T=-3"),
    ("batch_size=0", "batch_size=0"),
    ("trainer.epochs=0", "trainer.epochs=0"),
    ("seed=-1", "seed=-1"),
    ("model.name=resnet50", "model.name='resnet50'"),
    ("neuron.name=izhikevich", "neuron.name='izhikevich'"),
    ("model.bn_mode=global", "model.bn_mode='global'"),
    ("neuron.decay=1.5", "neuron.decay=1.5"),
    ("model.dropout=1.0", "model.dropout=1.0"),
    ("dataset.val_fraction=1.0", "dataset.val_fraction=1.0"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0"),
    ("trainer.device=gpu", "trainer.device='gpu'"),
    ("trainer.precision=fp8", "trainer.precision='fp8'"),
    ("optimizer.name=lion", "optimizer.name='lion'"),
    ("optimizer.lr=0", "optimizer.lr=0"),
    ("logger.mode=sometimes", "logger.mode='sometimes'"),
    ("neuron.decay=abc", "neuron.decay='abc' must be a number in [0, 1]"),
    ("neuron.v_threshold=abc", "neuron.v_threshold='abc'"),
    ("model.dropout=x", "model.dropout='x'"),
    ("optimizer.lr=abc", "optimizer.lr='abc'"),
    ("optimizer=sgd optimizer.momentum=-1", "optimizer.momentum=-1"),
    ("optimizer=adamw optimizer.betas=3", "optimizer.betas=3"),
    ("scheduler.eta_min=-0.1", "scheduler.eta_min=-0.1"),
    ("loss.phi=one", "loss.phi='one'"),
    ("loss.tet_weight=abc", "loss.tet_weight='abc'"),
    ("experiment.name=${nope}", "cannot be resolved"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_a_config_error_naming_the_key(override, message, tmp_path):
    cfg = compose(["experiment=quickstart", "logger=wandb", *override.split()])
    with pytest.raises(ConfigError) as err:
        train(cfg, tmp_path)
    assert message in str(err.value)
    assert not (tmp_path / "config.yaml").exists()  # nothing that looks like a result


def test_missing_resume_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nope"):
        train(compose(["experiment=quickstart", f"trainer.resume={tmp_path}/nope.pt"]), tmp_path)


def test_cli_prints_one_message_and_exits_nonzero(tmp_path):
    out = subprocess.run([sys.executable, "train.py", "experiment=quickstart", "T=0", f"hydra.run.dir={tmp_path}"],
                         cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == "error: T=0 must be a positive integer"
    assert "Traceback" not in out.stderr
