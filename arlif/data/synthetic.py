"""Random class-prototype data in any shape: runs the pipeline without downloading anything.

Each class has a fixed random prototype image; a sample is its class prototype plus
Gaussian noise.  With `dataset.temporal=true` samples are [T, C, H, W] frame sequences
(fresh noise per frame), as event datasets give; otherwise static [C, H, W] images.
Everything is drawn from `seed`, so the data are the same in every run with that seed.
Useful for smoke tests, timing a model, or checking a config before the real data exist.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from arlif.data import DataBundle
from arlif.errors import ConfigError


def build_synthetic(cfg) -> DataBundle:
    d = cfg.dataset
    for key in ("train_size", "test_size"):
        if d[key] < 1:
            raise ConfigError(f"dataset.{key}={d[key]} must be >= 1")
    gen = torch.Generator().manual_seed(cfg.seed)
    shape = (d.in_channels, d.image_size, d.image_size)
    prototypes = torch.randn(d.num_classes, *shape, generator=gen)

    def split(n: int) -> TensorDataset:
        y = torch.arange(n) % d.num_classes
        frames = (n, cfg.T) if d.temporal else (n,)
        noise = d.noise * torch.randn(*frames, *shape, generator=gen)
        x = (prototypes[y].unsqueeze(1) if d.temporal else prototypes[y]) + noise
        return TensorDataset(x, y)

    return DataBundle(train=split(d.train_size), test=split(d.test_size), num_classes=d.num_classes,
                      in_channels=d.in_channels, image_size=d.image_size, temporal=bool(d.temporal))
