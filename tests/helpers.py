"""Helpers the test modules import (`from helpers import tiny_run`); fixtures live in conftest.py."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_RUN = {"dataset": "synthetic", "model": "quickcnn", "logger": "none", "dataset.image_size": 8,
            "dataset.train_size": 16, "dataset.test_size": 8, "trainer.num_workers": 0, "trainer.epochs": 1,
            "batch_size": 8, "T": 2}


def tiny_run(*overrides: str) -> list[str]:
    """Overrides for a real training of a few seconds: synthetic 8×8 data, quickcnn, T=2, no logger and no
    loader workers; `overrides` ("key=value") replace or add keys."""
    values = dict(TINY_RUN)
    for override in overrides:
        key, _, value = override.partition("=")
        values[key] = value
    return [f"{key}={value}" for key, value in values.items()]


def script(name: str, *argv) -> str:
    """Run scripts/<name>.py in this process, as its command line would (without the interpreter's start-up),
    and return what it prints (make_tables.py) or what its main returns."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args([str(a) for a in argv])
    return module.make_tables(args) if name == "make_tables" else module.main(args)


def meta_model(cfg):
    """The configured network built full size on the meta device: every layer and shape, no weights to draw."""
    import torch

    from arlif.runner.build import build_model

    with torch.device("meta"):
        return build_model(cfg)
