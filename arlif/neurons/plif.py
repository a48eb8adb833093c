"""PLIF, the parametric LIF (Fang et al., ICCV 2021; code fangwei123456/Parametric-Leaky-Integrate-and-Fire-
Spiking-Neuron, `codes/models.py`; SpikingJelly 2.0 `ParametricLIFNode`).

One learnable scalar w per layer sets the decay k = σ(w), initialised so that 1/k = init_tau
(2): w = -ln(init_tau - 1).  Per step, with v[-1] = 0 and threshold V (1):

    h[t] = v[t-1] + k·(x[t] - v[t-1])        (decay_input, the default)
         = v[t-1] - k·v[t-1] + x[t]          (decay_input=False)
    s[t] = Θ(h[t] - V)
    v[t] = h[t]·(1 - s[t])                   (hard reset to 0)

`detach_reset` stops the gradient through s in the reset, as the paper's runs did (default
True; SpikingJelly's default is False).  Default spike, as in the paper's code: arctangent
with slope 2, firing at z ≥ 0 (SpikingJelly's default surrogate is the sigmoid, slope 4).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from arlif.neurons.base import SpikingNeuron, Trace
from arlif.spikes.surrogate import Surrogate


class PLIF(SpikingNeuron):
    """Parametric LIF with learnable decay σ(w) (`w`, a per-layer scalar, named as in SpikingJelly)."""

    def __init__(self, init_tau: float = 2.0, v_threshold: float = 1.0, decay_input: bool = True,
                 detach_reset: bool = True, surrogate: str = "arctangent", surrogate_width: float = 1.0,
                 surrogate_slope: Optional[float] = None, fire_at_threshold: bool = True, backend: str = "auto"):
        if not init_tau > 1.0:
            raise ValueError(f"PLIF needs init_tau > 1, got {init_tau}")
        super().__init__(Surrogate(surrogate, surrogate_width, surrogate_slope, fire_at_threshold), backend)
        self.v_threshold = float(v_threshold)
        self.decay_input = bool(decay_input)
        self.detach_reset = bool(detach_reset)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    @property
    def decay(self) -> Tensor:
        """k = σ(w) = 1/τ."""
        return torch.sigmoid(self.w)

    def parameter_values(self) -> dict[str, Tensor]:
        return {"decay": self.decay}

    def step_loop(self, x: Tensor, store_v: bool = False):
        k = self.decay
        v = torch.zeros_like(x[0])
        spikes, trace = [], Trace(store_v)
        for xt in x:
            h = v + k * (xt - v) if self.decay_input else v - k * v + xt
            s = self.surrogate(h - self.v_threshold)
            v = h * (1.0 - (s.detach() if self.detach_reset else s))
            spikes.append(s)
            trace.add(h=h)
        return torch.stack(spikes), trace.result()

    def extra_repr(self) -> str:
        return (f"v_threshold={self.v_threshold}, decay_input={self.decay_input}, detach_reset={self.detach_reset}, "
                f"{super().extra_repr()}")
