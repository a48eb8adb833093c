"""CLIF, the complementary LIF (Huang et al., ICML 2024; code HuuYuLong/Complementary-LIF,
`modules/neuron.py`; SpikingJelly 2.0 `ComplementaryLIFNode`).

Per step, with v[-1] = m[-1] = 0, time constant τ (2) and threshold V (1):

    h[t] = v[t-1] - v[t-1]/τ + x[t]          (charge: leak 1/τ, no input decay)
    s[t] = Θ(h[t] - V)                        (fire)
    m[t] = m[t-1]·σ(h[t]/τ) + s[t]            (complementary potential: decays, counts spikes)
    v[t] = h[t] - s[t]·(V + σ(m[t]))          (reset: soft, plus σ of the updated m)

No learnable parameters.  Default spike, as in the original code and SpikingJelly: the
rectangle of width 1, firing at z ≥ 0.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from arlif.neurons.base import SpikingNeuron, Trace
from arlif.spikes.surrogate import Surrogate


class CLIF(SpikingNeuron):
    """Complementary LIF; states "h" (charged potential) and "m" (complementary potential)."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, surrogate: str = "rectangle",
                 surrogate_width: float = 1.0, surrogate_slope: Optional[float] = None,
                 fire_at_threshold: bool = True, backend: str = "auto"):
        if not tau > 1.0:
            raise ValueError(f"CLIF needs tau > 1, got {tau}")
        super().__init__(Surrogate(surrogate, surrogate_width, surrogate_slope, fire_at_threshold), backend)
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)

    def step_loop(self, x: Tensor, store_v: bool = False):
        v = torch.zeros_like(x[0])
        m = torch.zeros_like(x[0])
        spikes, trace = [], Trace(store_v)
        for xt in x:
            h = v - v / self.tau + xt
            s = self.surrogate(h - self.v_threshold)
            m = m * torch.sigmoid(h / self.tau) + s
            v = h - s * (self.v_threshold + torch.sigmoid(m))
            spikes.append(s)
            trace.add(h=h, m=m)
        return torch.stack(spikes), trace.result()

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, {super().extra_repr()}"
