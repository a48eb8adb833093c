"""Data pipeline entry point: one `build_data(cfg)` for every dataset.

Each `conf/dataset/*.yaml` names its builder by a name registered in BUILDERS (`dataset.builder`), a
function `build_<name>(cfg) -> DataBundle` in this package taking the whole run config (it reads
`cfg.dataset.*`, `cfg.T`, `cfg.data_dir`, `cfg.seed`).  A config is data, even one read back from a
checkpoint someone else wrote: its `dataset.builder` only chooses among these names, never an import path
(docs/scaling.md, "What loading a checkpoint can do").  Samples are `(x, y)` with x a
float32 tensor `[C, H, W]` for static images (direct encoding: the model repeats it
over T) or `[T, C, H, W]` for event frames, and y an int class index.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

from torch.utils.data import Dataset

from arlif.errors import ConfigError

# dataset.builder name -> the module of arlif.data holding `build_<name>` (imported when used: torchvision, h5py).
BUILDERS = {"cifar": "static", "tiny_imagenet": "static", "cifar10_dvs": "events", "dvs_gesture": "events",
            "digits": "digits", "synthetic": "synthetic"}
# The dotted paths that configs written before the registry hold, read as the names they meant.
FORMER_PATHS = {f"arlif.data.{module}.build_{name}": name for name, module in BUILDERS.items()}


@dataclass
class DataBundle:
    """Train/test datasets plus what the model and loop need to know about them."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    temporal: bool  # True: samples are [T, C, H, W] frames; False: static [C, H, W]
    # Applied to each training batch (x, y) -> (x, y_soft) on the device, e.g. timm Mixup.
    batch_transform: Optional[Callable] = None


def builder_name(value) -> str:
    """The registered builder a `dataset.builder` value names; a ConfigError naming the key and value otherwise."""
    name = FORMER_PATHS.get(value, value) if isinstance(value, str) else None
    if name not in BUILDERS:
        raise ConfigError(f"dataset.builder={value!r} is not a dataset builder of arlif; choose one of "
                          f"{sorted(BUILDERS)} (a config names builders, never code to import)")
    return name


def build_data(cfg) -> DataBundle:
    """Build the dataset named by `cfg.dataset` through its registered builder."""
    name = builder_name(cfg.dataset.get("builder"))
    module = importlib.import_module(f"arlif.data.{BUILDERS[name]}")  # a fixed module of this package
    return getattr(module, f"build_{name}")(cfg)
