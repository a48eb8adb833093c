"""GLIF, the gated LIF, channel-wise (Yao et al., NeurIPS 2022; code CAS-CLab/Gated-LIF, `LIFSpike_CW`;
SpikingJelly 2.0 `GatedLIFNode`).

Every constant is learnable and squashed by a sigmoid, per channel (or per layer with
`channel_wise=False`); names as in SpikingJelly, each holding the logit:
gates α, β, γ (`alpha`, `beta`, `gamma`, logits drawn from U(-0.1, 0.1), GLIF's random-gate
start), decay τ (`tau`, 0.25), threshold V (`v_threshold`, 0.5), linear leak l
(`linear_decay`: conf/neuron/glif.yaml gives 0.0625 = V/(2·4) at every T, as GLIF's code; when
not given, V/(2T), SpikingJelly 2.0 `GatedLIFNode`'s default), soft-reset voltage V_r
(`v_subreset`, V) and a conductance c[t] per time step and channel (`conduct` [T, C],
0.5).  Per step, with u[-1] = s[-1] = 0:

    I[t] = x[t]·(1 - β·(1 - c[t]))                                   (gated input conductance)
    d    = 1 - α·(1 - τ)                                             (gated multiplicative decay)
    u[t] = d·u[t-1] - (1 - α)·l + I[t]                               (charge; subtractive leak)
           - d·u[t-1]·γ·s[t-1] - (1 - γ)·V_r·s[t-1]                  (hard and soft reset of the last spike)
    s[t] = Θ(u[t] - V)

The reset of a spike acts at the next step.  Default spike, as in the original code: the
rectangle of width 1 (|z| ≤ 0.5, the original uses |z| < 0.5: they differ only on the edge),
firing only strictly above the threshold; SpikingJelly's default is the sigmoid (slope 4)
firing at z ≥ 0.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from arlif.neurons.base import SpikingNeuron, Trace, check_channels, check_steps, per_channel
from arlif.spikes.surrogate import Surrogate

GATES = ("alpha", "beta", "gamma")


def _logit(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"GLIF's initial constants must lie in (0, 1), got {p}")
    return -math.log(1.0 / p - 1.0)


class GLIF(SpikingNeuron):
    """Gated LIF for T steps; per-channel parameters for `channels` channels unless `channel_wise=False`."""

    def __init__(self, T: int, channels: Optional[int] = None, channel_wise: bool = True, init_tau: float = 0.25,
                 init_v_threshold: float = 0.5, init_linear_decay: Optional[float] = None,
                 init_v_subreset: Optional[float] = None, init_conduct: float = 0.5, surrogate: str = "rectangle",
                 surrogate_width: float = 1.0, surrogate_slope: Optional[float] = None,
                 fire_at_threshold: bool = False, backend: str = "auto"):
        if channel_wise and channels is None:
            raise ValueError("channel-wise GLIF needs the number of channels (or set channel_wise=False)")
        super().__init__(Surrogate(surrogate, surrogate_width, surrogate_slope, fire_at_threshold), backend)
        self.T = T
        self.channels = channels if channel_wise else None
        shape = (channels,) if channel_wise else ()
        for name in GATES:
            setattr(self, name, nn.Parameter(torch.empty(shape).uniform_(-0.1, 0.1)))
        linear_decay = init_v_threshold / (2 * T) if init_linear_decay is None else init_linear_decay
        v_subreset = init_v_threshold if init_v_subreset is None else init_v_subreset
        for name, value in (("tau", init_tau), ("v_threshold", init_v_threshold), ("linear_decay", linear_decay),
                            ("v_subreset", v_subreset)):
            setattr(self, name, nn.Parameter(torch.full(shape, _logit(value))))
        self.conduct = nn.Parameter(torch.full((T, *shape), _logit(init_conduct)))

    def parameter_values(self) -> dict[str, Tensor]:
        """Every gate and constant after its sigmoid (the values in the equations)."""
        return {name: torch.sigmoid(p) for name, p in self.named_parameters(recurse=False)}

    def step_loop(self, x: Tensor, store_v: bool = False):
        check_steps("GLIF", self.T, x)
        if self.channels is not None:
            check_channels("GLIF", self.channels, x)
        alpha, beta, gamma, tau, v_threshold, linear_decay, v_subreset = (
            per_channel(torch.sigmoid(getattr(self, name)), x[0])
            for name in (*GATES, "tau", "v_threshold", "linear_decay", "v_subreset"))
        decay = 1.0 - alpha * (1.0 - tau)
        u = torch.zeros_like(x[0])
        s = torch.zeros_like(x[0])
        spikes, trace = [], Trace(store_v)
        for t, xt in enumerate(x):
            current = xt * (1.0 - beta * (1.0 - per_channel(torch.sigmoid(self.conduct[t]), xt)))
            charged = (decay * u - (1.0 - alpha) * linear_decay) + current
            u = charged - decay * u * gamma * s - (1.0 - gamma) * v_subreset * s
            s = self.surrogate(u - v_threshold)
            spikes.append(s)
            trace.add(h=u)
        return torch.stack(spikes), trace.result()

    def extra_repr(self) -> str:
        wise = f"channels={self.channels}" if self.channels is not None else "layer-wise"
        return f"T={self.T}, {wise}, {super().extra_repr()}"
