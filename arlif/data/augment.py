"""Training augmentation for event frames: every random choice is shared by all T frames.

A sample is a short clip of T frames; drawing a different crop, flip or op per frame
would tear the motion apart, so each transform here draws its parameters once per
sample and applies them to the whole `[T, C, H, W]` tensor (torchvision v2 transforms
treat the leading T as a batch dimension and share their parameters across it).

`OneOpPerSample` is the published DVS policy (a TrivialAugment-style "one op, one
magnitude" draw): one op chosen uniformly from the configured subset of

    identity | shear_x (±0.3 rad) | translate_x, translate_y (±5 px) | rotate (±30°) | cutout

with the magnitude drawn uniformly from 31 evenly spaced levels in [-max, +max],
nearest-neighbour interpolation by default (bilinear on request) and zero fill (an
event count of 0 is "no event").
Cutout erases one rectangle covering 5-33% of the frame with aspect ratio 0.2-5.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from arlif.errors import ConfigError

# op name -> largest magnitude (radians for shear, pixels for translate, degrees for rotate)
MAX_MAGNITUDE = {"identity": 0.0, "shear_x": 0.3, "translate_x": 5.0, "translate_y": 5.0, "rotate": 30.0, "cutout": 0.0}
OPS = tuple(MAX_MAGNITUDE)
INTERPOLATION = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR}


class OneOpPerSample(torch.nn.Module):
    """Apply one randomly drawn op (and magnitude) to all frames of a `[..., C, H, W]` sample."""

    def __init__(self, ops: Sequence[str], interpolation: str = "nearest", num_magnitude_levels: int = 31) -> None:
        super().__init__()
        unknown = [op for op in ops if op not in MAX_MAGNITUDE]
        if unknown or not ops:
            raise ConfigError(f"dataset.policy_ops={list(ops)}: choose a non-empty subset of {list(OPS)}")
        if interpolation not in INTERPOLATION:
            raise ConfigError(f"dataset.policy_interpolation={interpolation!r}: choose one of {list(INTERPOLATION)}")
        self.ops = list(ops)
        self.interpolation = interpolation
        self.num_magnitude_levels = num_magnitude_levels
        self.cutout = v2.RandomErasing(p=1.0, scale=(0.05, 0.33), ratio=(0.2, 5.0), value=0)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        op = self.ops[int(torch.randint(len(self.ops), ()))]
        top = MAX_MAGNITUDE[op]
        level = int(torch.randint(self.num_magnitude_levels, ()))
        magnitude = -top + 2.0 * top * level / (self.num_magnitude_levels - 1)
        mode = INTERPOLATION[self.interpolation]
        if op == "shear_x":
            return F.affine(frames, angle=0.0, translate=[0, 0], scale=1.0,
                            shear=[math.degrees(magnitude), 0.0], interpolation=mode, fill=0)
        if op in ("translate_x", "translate_y"):
            shift = [int(magnitude), 0] if op == "translate_x" else [0, int(magnitude)]
            return F.affine(frames, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                            interpolation=mode, fill=0)
        if op == "rotate":
            return F.rotate(frames, magnitude, interpolation=mode, fill=0)
        if op == "cutout":
            return self.cutout(frames)
        return frames

    def extra_repr(self) -> str:
        return f"ops={self.ops}, interpolation={self.interpolation}, num_magnitude_levels={self.num_magnitude_levels}"


def frame_augmentation(image_size: int, crop_padding: int, hflip: bool, ops: Sequence[str],
                       interpolation: str = "nearest") -> v2.Transform:
    """Random crop (zero padding) -> horizontal flip -> one op per sample; each step optional."""
    steps = []
    if crop_padding > 0:
        steps.append(v2.RandomCrop(image_size, padding=crop_padding, fill=0))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if ops:
        steps.append(OneOpPerSample(ops, interpolation))
    return v2.Compose(steps) if steps else v2.Identity()
