"""Data pipeline entry point: one `build_data(cfg)` for every dataset.

Each `conf/dataset/*.yaml` names its builder by dotted path (`dataset.builder`), a
function `builder(cfg) -> DataBundle` taking the whole run config (it reads
`cfg.dataset.*`, `cfg.T`, `cfg.data_dir`, `cfg.seed`).  Samples are `(x, y)` with x a
float32 tensor `[C, H, W]` for static images (direct encoding: the model repeats it
over T) or `[T, C, H, W]` for event frames, and y an int class index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch.utils.data import Dataset

from arlif.errors import ConfigError


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


def build_data(cfg) -> DataBundle:
    """Build the dataset named by `cfg.dataset` through its registered builder."""
    from hydra.utils import get_method

    path = cfg.dataset.get("builder")
    if not path:
        raise ConfigError("dataset.builder is not set: every conf/dataset/*.yaml must name its builder function")
    try:
        builder = get_method(path)
    except Exception as exc:  # hydra wraps import errors in several types
        raise ConfigError(f"dataset.builder={path!r} cannot be imported: {exc}") from exc
    return builder(cfg)
