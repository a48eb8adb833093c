"""The neuron that produced the paper's CIFAR10-DVS numbers: `aLIFSpike` of the authors' PSN-based
code base (2ephyrus/AR-LIF, `AR-LIF-PSN/cifar10dvs/models.py`), exactly as published.

It is not the AR-LIF of the paper (arlif.neurons.ar_lif).  Per step, with u[-1] = 0,
β = tanh(beta_raw) (the code's a, init 0), α (the code's c, init 1) and threshold V = 1:

    h[t]   = k·u[t-1] + x[t]                       k = `decay`, the code's tau (see below)
    Vth[t] = V + β·tanh(x[t])
    s[t]   = Θ(h[t] - Vth[t])                      fires only strictly above (ZIF)
    r[t]   = leak(0) + (2s[t] - 1)·σ(x[t])         the memory never carries over: the code
                                                   reads a fresh zero slice at every step
    u[t]   = h[t] - s[t]·(Vth[t] + σ(r[t]))        on a spike that is Vth + σ(σ(x)), σ(σ(x)) ∈ (0.5, 0.73)

leak(0) is AR-LIF's gated leak g·0 (g = σ(α·x)) applied to that zero memory: it is 0, so α
gets a zero gradient, as in the published code (it stays a parameter, so weight decay still
shrinks it and the parameter count matches).  Surrogate: the triangle of width 1,
max(0, 1 - |z|).  Decay: `train_vgg.py` always passes its `-tau` flag, default 0.2, which the
README command does not set (the model class's own default, 0.5, is never reached), so 0.2 is
our default; only a command line other than the README's could have changed it, hence `decay` an option.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from arlif.neurons.base import SpikingNeuron, Trace
from arlif.spikes.surrogate import Surrogate


class ARLIFPSNCode(SpikingNeuron):
    """The authors' CIFAR10-DVS neuron; `alpha` and `beta_raw` named as in `ARLIF`."""

    def __init__(self, decay: float = 0.2, v_threshold: float = 1.0, surrogate: str = "triangle",
                 surrogate_width: float = 1.0, surrogate_slope: Optional[float] = None,
                 fire_at_threshold: bool = False, backend: str = "auto"):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        super().__init__(Surrogate(surrogate, surrogate_width, surrogate_slope, fire_at_threshold), backend)
        self.decay = float(decay)
        self.v_threshold = float(v_threshold)
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.beta_raw = nn.Parameter(torch.tensor(0.0))

    @property
    def beta(self) -> Tensor:
        return torch.tanh(self.beta_raw)

    def parameter_values(self) -> dict[str, Tensor]:
        return {"alpha": self.alpha, "beta": self.beta}

    def step_loop(self, x: Tensor, store_v: bool = False):
        beta = self.beta
        u = torch.zeros_like(x[0])
        spikes, trace = [], Trace(store_v)
        for i in x:
            h = self.decay * u + i
            vth = self.v_threshold + beta * torch.tanh(i)
            s = self.surrogate(h - vth)
            fresh = torch.zeros_like(i)  # the memory slice the code reads at every step
            g = torch.sigmoid(self.alpha * i)
            r = torch.where(fresh >= 0, g * fresh, (1.0 - g) * fresh) + (2.0 * s - 1.0) * torch.sigmoid(i)
            u = h - s * (vth + torch.sigmoid(r))
            spikes.append(s)
            trace.add(h=h, u=u, r=r)
        return torch.stack(spikes), trace.result()

    def extra_repr(self) -> str:
        return f"decay={self.decay}, v_threshold={self.v_threshold}, {super().extra_repr()}"
