"""What `eval.py` does: test a checkpoint with the model and data of its own config, write eval.json."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from arlif.errors import ConfigError
from arlif.instruments.energy import SynapticOpCounter
from arlif.models import count_parameters
from arlif.runner.build import build_loss, build_model, load_data, make_test_loader
from arlif.runner.checkpoint import check_model_fits, load_checkpoint
from arlif.runner.config import resolve, validate
from arlif.runner.steps import StepRunner, neuron_parameters
from arlif.runner.records import BEST, EVAL, write_json, writing
from arlif.runner.runtime import resolve_device, resolve_precision


def _apply_overrides(run_cfg: DictConfig, cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Copy the keys the user overrode on the eval command line from `cfg` into the checkpoint's config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key == "checkpoint" or key.startswith("hydra"):
            continue
        if override.is_delete() or override.package:
            raise ConfigError(f"eval.py cannot apply {override.input_line!r}; override plain keys or groups only")
        OmegaConf.update(run_cfg, key, OmegaConf.select(cfg, key), merge=False, force_add=True)


def evaluate_checkpoint(cfg: DictConfig, out_dir: Path, overrides: Sequence[str] = ()) -> dict:
    """Test a checkpoint (file, or a run directory's best.pt) and write eval.json into `out_dir`.

    The model and data come from the checkpoint's config, with `overrides` (command-line
    overrides, e.g. ["data_dir=/data", "trainer.device=cpu"]) taken from `cfg`.
    """
    try:
        path = Path(cfg.checkpoint)
    except MissingMandatoryValue:
        raise ConfigError("checkpoint is not set: run `python eval.py checkpoint=PATH` "
                          "(a .pt file or a run directory)") from None
    if path.is_dir():
        path = path / BEST
    state = load_checkpoint(path, "evaluate")
    run_cfg = OmegaConf.create(state["config"])
    _apply_overrides(run_cfg, cfg, overrides)
    run_cfg = resolve(run_cfg)
    validate(run_cfg)
    device = resolve_device(run_cfg.trainer.device)
    model = build_model(run_cfg)
    check_model_fits(model, state, path, run_cfg)
    model.load_state_dict(state["model"])
    bundle, _, _ = load_data(run_cfg)
    loader = make_test_loader(bundle.test, run_cfg, device)
    model.to(device)
    trainer = StepRunner(model, build_loss(run_cfg), None, device, resolve_precision("fp32", device), run_cfg.T,
                      bundle.temporal, progress_bar=run_cfg.trainer.progress_bar,
                      limit_test_batches=run_cfg.trainer.limit_test_batches)
    with SynapticOpCounter(model) as ops:
        test = trainer.evaluate(loader)
    result = {"checkpoint": str(path), "epoch": state["epoch"], "experiment": run_cfg.experiment.name,
              "dataset": run_cfg.dataset.name, "model": run_cfg.model.name, "neuron": run_cfg.neuron.name,
              "T": run_cfg.T, "test_acc": test["acc"], "test_loss": test["loss"], "test_samples": test["samples"],
              "firing_rate": test["firing_rate"], "firing_rates": test["firing_rates"],
              "params": count_parameters(model), **neuron_parameters(model), "energy": ops.report().as_dict()}
    out_dir = Path(out_dir)
    with writing(out_dir / EVAL):
        out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / EVAL, result)
    return result
