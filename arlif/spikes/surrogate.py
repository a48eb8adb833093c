"""Spike functions: the Heaviside step forward, a surrogate derivative backward.

The bottom of the neuron package (imports no kernel and no other neuron module).
Forward, for the argument z = potential - threshold:

    Θ(z) = 1 for z ≥ 0 (`fire_at_threshold=True`, AR-LIF, SpikingJelly)
           1 for z > 0 (`fire_at_threshold=False`, TET's and the AR-LIF-PSN code's ZIF)

Backward, dΘ/dz is replaced by the surrogate of `kind`:

    rectangle  (width a)   1/a                     for |z| ≤ a/2, else 0   (paper eq. 12; SJ Rect(1/a))
    triangle   (width γ)   (γ - |z|)/γ²            for |z| ≤ γ,   else 0   (TET's ZIF; SJ PiecewiseQuadratic)
    arctangent (slope α)   (α/2) / (1 + (π/2·α·z)²)                         (SJ ATan(α))
    sigmoid    (slope α)   α·σ(αz)·(1 - σ(αz))                              (SJ Sigmoid(α))

Each integrates to 1 over z.  `width` applies to rectangle and triangle, `slope` to
arctangent and sigmoid (None picks SpikingJelly's default slope: 2 and 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

SURROGATES = ("rectangle", "triangle", "arctangent", "sigmoid")
WIDTH_KINDS = ("rectangle", "triangle")
DEFAULT_SLOPES = {"arctangent": 2.0, "sigmoid": 4.0}


@dataclass(frozen=True)
class Surrogate:
    """How a neuron fires (`fire_at_threshold`) and which derivative trains it (`kind`, `width`/`slope`)."""

    kind: str = "rectangle"
    width: float = 1.0
    slope: Optional[float] = None
    fire_at_threshold: bool = True

    def __post_init__(self):
        if self.kind not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {self.kind!r}")
        if not isinstance(self.fire_at_threshold, bool):
            raise ValueError(f"fire_at_threshold must be true or false, got {self.fire_at_threshold!r}")
        if self.kind in WIDTH_KINDS:
            if self.slope is not None:
                raise ValueError(f"surrogate_slope applies to arctangent and sigmoid, not {self.kind}; "
                                 "use surrogate_width")
            if not self.width > 0:
                raise ValueError(f"surrogate_width must be > 0, got {self.width}")
        else:
            if self.slope is None:
                object.__setattr__(self, "slope", DEFAULT_SLOPES[self.kind])
            if not self.slope > 0:
                raise ValueError(f"surrogate_slope must be > 0, got {self.slope}")

    def __call__(self, z: Tensor) -> Tensor:
        """Spikes Θ(z) in z's dtype, trained with this surrogate."""
        return SpikeFunction.apply(z, self)

    def derivative(self, z: Tensor) -> Tensor:
        """The surrogate dΘ/dz at z."""
        if self.kind == "rectangle":
            return (z.abs() <= self.width / 2).to(z.dtype) / self.width
        if self.kind == "triangle":
            return (self.width - z.abs()).clamp(min=0.0) / self.width ** 2
        if self.kind == "arctangent":
            half = self.slope / 2
            return half / (1.0 + (math.pi * half * z) ** 2)
        s = torch.sigmoid(self.slope * z)
        return self.slope * s * (1.0 - s)

    def describe(self) -> str:
        size = f"width={self.width}" if self.kind in WIDTH_KINDS else f"slope={self.slope}"
        return f"{self.kind}({size}), fires at {'z >= 0' if self.fire_at_threshold else 'z > 0'}"


class SpikeFunction(torch.autograd.Function):
    """Θ(z) forward, `surrogate.derivative(z)` backward."""

    @staticmethod
    def forward(ctx, z: Tensor, surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(z)
        ctx.surrogate = surrogate
        fired = z >= 0 if surrogate.fire_at_threshold else z > 0
        return fired.to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (z,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(z), None


class RectangleSpike:
    """Today's spike of the AR-LIF family: `RectangleSpike.apply(z, a)` is `Surrogate("rectangle", a)(z)`."""

    @staticmethod
    def apply(z: Tensor, width: float) -> Tensor:
        return Surrogate("rectangle", width)(z)


__all__ = ["Surrogate", "SpikeFunction", "RectangleSpike", "SURROGATES", "DEFAULT_SLOPES"]
