"""PSN, the parallel spiking neuron (Fang et al., NeurIPS 2023; code fangwei123456/Parallel-Spiking-Neuron;
SpikingJelly 2.0 `PSN`), and the parallel firing that the masked and sliding PSN share.

No reset and no recurrence: the potential of every step is a learnable mix of all inputs,

    H = W·X + b,   W ∈ ℝ^{T×T} (`weight`, Kaiming-uniform as nn.Linear),  b ∈ ℝ^{T×1} (`bias`, -1)
    S = Θ(H)

with X the input flattened to [T, N].  One matrix product, so `step_loop` has no loop
over time.  Default spike, as in the paper's code and SpikingJelly: arctangent with slope 2,
firing at z ≥ 0.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from arlif.neurons.base import SpikingNeuron, check_steps
from arlif.spikes.surrogate import Surrogate


def parallel_fire(weight: Tensor, bias: Tensor, x: Tensor, spike: Surrogate, store_v: bool):
    """Spikes Θ(W·X + b) for x [T, ...] (W [T, T], b broadcasting to [T, N]) and, if `store_v`, {"h": W·X + b}."""
    h = torch.addmm(bias.to(x.dtype), weight.to(x.dtype), x.flatten(1)).view(x.shape)
    return spike(h), ({"h": h} if store_v else None)


def kaiming_weight(*shape: int) -> Tensor:
    """A weight drawn as nn.Linear draws its own (Kaiming-uniform, a = √5)."""
    weight = torch.empty(shape)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return weight


class PSN(SpikingNeuron):
    """Parallel spiking neuron for exactly T steps."""

    def __init__(self, T: int, surrogate: str = "arctangent", surrogate_width: float = 1.0,
                 surrogate_slope: Optional[float] = None, fire_at_threshold: bool = True, backend: str = "auto"):
        super().__init__(Surrogate(surrogate, surrogate_width, surrogate_slope, fire_at_threshold), backend)
        self.T = T
        self.weight = nn.Parameter(kaiming_weight(T, T))
        self.bias = nn.Parameter(torch.full((T, 1), -1.0))

    def step_loop(self, x: Tensor, store_v: bool = False):
        check_steps("PSN", self.T, x)
        return parallel_fire(self.weight, self.bias, x, self.surrogate, store_v)

    def extra_repr(self) -> str:
        return f"T={self.T}, {super().extra_repr()}"
