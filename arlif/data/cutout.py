"""CLIF's Cutout: torchtoolbox's `Cutout()` with its defaults, as HuuYuLong/Complementary-LIF's CIFAR pipeline
applies it (`dataset.recipe=clif`, arlif.data.static.cifar_transforms).

Written from the behaviour of torchtoolbox (PistonY/torch-toolbox, `transform/transforms.py` `Cutout`),
not copied.  On an 8-bit image of H×W pixels, after the random crop and before the flip:

- with probability p = 0.5, erase one rectangle; otherwise return the image unchanged;
- area fraction s ~ U(0.02, 0.4) and aspect r ~ U(0.4, 2.5); height h = int(√(s·H·W·r)) and width
  w = int(√(s·H·W / r)), so h/w ≈ r;
- top-left corner uniform over the positions that keep the rectangle inside the image
  (top in 0..H−h, left in 0..W−w, both ends included);
- fill: one integer v uniform in 0..255 (both ends included).  CLIF's images are PIL RGB images, and
  torchtoolbox fills them with `Image.paste(v, box)`, which reads an integer as a packed RGB colour:
  the rectangle becomes (v, 0, 0), red v and green and blue 0.  That is what is reproduced here.

torchtoolbox draws with Python's `random`; here torch's generator draws, so that the DataLoader's
per-worker seeding covers it.
"""

from __future__ import annotations

import math

import torch


class ToolboxCutout(torch.nn.Module):
    """The torchtoolbox Cutout above on a uint8 `[C, H, W]` tensor (a copy is returned when it erases)."""

    def __init__(self, p: float = 0.5, scale: tuple = (0.02, 0.4), ratio: tuple = (0.4, 2.5),
                 fill: tuple = (0, 255)) -> None:
        super().__init__()
        self.p, self.scale, self.ratio, self.fill = p, scale, ratio, fill

    def rectangle(self, height: int, width: int) -> tuple[int, int, int, int, int]:
        """One draw of (top, left, h, w, fill value) for an image of that size."""
        s = _uniform(*self.scale) * height * width
        r = _uniform(*self.ratio)
        w, h = int(math.sqrt(s / r)), int(math.sqrt(s * r))
        top, left = _integer(0, height - h), _integer(0, width - w)
        return top, left, h, w, _integer(*self.fill)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8:
            raise TypeError(f"ToolboxCutout erases 8-bit images (before ToDtype and Normalize), got {image.dtype}")
        if float(torch.rand(())) >= self.p:
            return image
        top, left, h, w, value = self.rectangle(image.shape[-2], image.shape[-1])
        out = image.clone()
        out[..., top:top + h, left:left + w] = 0
        out[..., 0, top:top + h, left:left + w] = value  # PIL's paste of an integer on RGB: (v, 0, 0)
        return out


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _integer(low: int, high: int) -> int:
    """Uniform integer in low..high, both included (Python's random.randint)."""
    return int(torch.randint(low, high + 1, ()))
