"""Checks on a composed run config, done before any data is read or memory taken.

Each bad value raises one ConfigError that names the key, what is wrong and the valid
choices.  Values owned by a builder (loss, optimizer, scheduler, logger, device,
precision) are checked where they are built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from arlif.data import builder_name
from arlif.errors import ConfigError
from arlif.models import MODELS
from arlif.models.layers import BN_MODES, DROPOUT_MASKS
from arlif.neurons import BACKENDS, NEURONS, SURROGATES
from arlif.runner.tracking import LOGGERS, WANDB_MODES

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The config `python train.py <overrides>` would run with, built in Python (tests, notebooks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def resolve(cfg: DictConfig) -> DictConfig:
    """Resolve every interpolation now, turning a broken one into a ConfigError."""
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"the config cannot be resolved: {exc}") from exc
    return cfg


def _positive_int(cfg, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} must be a positive integer")


def _optional_positive_int(cfg, key: str) -> None:
    if OmegaConf.select(cfg, key) is not None:
        _positive_int(cfg, key)


def check_number(cfg, key: str, low: float = -float("inf"), high: float = float("inf"),
                 low_open: bool = False, high_open: bool = False) -> float:
    """The number at `key`, or a ConfigError naming the key and the allowed interval."""
    value = OmegaConf.select(cfg, key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{key}={value!r} must be a number in {interval}")
    return value


def _boolean(cfg, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be true or false")


def _choice(cfg, key: str, choices) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is unknown; choose one of {sorted(choices)}")


def _check_neuron(cfg: DictConfig) -> None:
    """The shared neuron keys, where the neuron has them; each neuron checks the rest when it is built."""
    n = cfg.neuron
    if "surrogate" in n:
        _choice(cfg, "neuron.surrogate", SURROGATES)
    if "fire_at_threshold" in n:
        _boolean(cfg, "neuron.fire_at_threshold")
    for key, low, high, low_open in (("decay", 0.0, 1.0, False), ("v_threshold", 0.0, float("inf"), True),
                                     ("surrogate_width", 0.0, float("inf"), True)):
        if key in n:
            check_number(cfg, f"neuron.{key}", low, high, low_open=low_open)
    if n.get("surrogate_slope") is not None:
        check_number(cfg, "neuron.surrogate_slope", 0.0, low_open=True)


def validate(cfg: DictConfig) -> None:
    """Check the run config's shared keys (see conf/config.yaml)."""
    for key in ("T", "batch_size", "trainer.epochs", "dataset.num_classes", "dataset.in_channels",
                "dataset.image_size"):
        _positive_int(cfg, key)
    for key in ("trainer.limit_train_batches", "trainer.limit_test_batches", "trainer.overfit_batches",
                "trainer.profile_steps", "trainer.profile_warmup"):
        _optional_positive_int(cfg, key)
    for key in ("trainer.detect_anomaly", "trainer.channels_last"):
        if OmegaConf.select(cfg, key) is not None:  # absent from older checkpoints' configs
            _boolean(cfg, key)
    for key in ("trainer.deterministic", "trainer.progress_bar", "trainer.sync_batchnorm"):
        _boolean(cfg, key)
    compile_value = OmegaConf.select(cfg, "trainer.compile")  # absent from older checkpoints' configs
    if compile_value is not None and not isinstance(compile_value, bool) and compile_value not in COMPILE_MODES:
        raise ConfigError(f"trainer.compile={compile_value!r} must be true, false or a torch.compile mode: "
                          f"{', '.join(COMPILE_MODES)}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r} must be a non-negative integer")
    workers = cfg.trainer.num_workers
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"trainer.num_workers={workers!r} must be auto or an integer >= 0")
    builder_name(OmegaConf.select(cfg, "dataset.builder"))
    _choice(cfg, "model.name", MODELS)
    _choice(cfg, "neuron.name", NEURONS)
    _choice(cfg, "model.bn_mode", BN_MODES)
    _choice(cfg, "neuron.backend", BACKENDS)
    _check_neuron(cfg)
    check_number(cfg, "model.dropout", 0.0, 1.0, high_open=True)
    if OmegaConf.select(cfg, "model.dropout_mask") is not None:  # the next three are absent from older checkpoints
        _choice(cfg, "model.dropout_mask", DROPOUT_MASKS)
    if OmegaConf.select(cfg, "model.tdbn_threshold") is not None:
        check_number(cfg, "model.tdbn_threshold", 0.0, low_open=True)
    if OmegaConf.select(cfg, "model.classifier_dropout") is not None:
        check_number(cfg, "model.classifier_dropout", 0.0, 1.0, high_open=True)
    _choice(cfg, "logger.name", LOGGERS)
    if cfg.logger.name == "wandb":
        _choice(cfg, "logger.mode", WANDB_MODES)
    check_number(cfg, "dataset.val_fraction", 0.0, 1.0, high_open=True)
