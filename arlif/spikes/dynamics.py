"""The dynamics of the AR-LIF neuron family (paper eq. 9) and its LIF baselines, as multi-step modules.

One mechanism serves all six variants: a neuron is a `NeuronSpec` (reset mode and
constants) plus, for AR-LIF, two per-layer scalars α and β = tanh(beta_raw).  Per time
step t, with input current i[t] and state u[-1] = r[-1] = 0:

    h[t]    = k·u[t-1] + i[t]                                  (charge)
    Vth[t]  = V + β·tanh(i[t])          (AR-LIF; V for LIF)    (threshold)
    s[t]    = Θ(h[t] - Vth[t]),  Θ(z) = 1 for z ≥ 0              (fire)
    g       = σ(α·i[t]);  R = g·r[t-1] if r[t-1] ≥ 0 else (1-g)·r[t-1]
    r[t]    = R + (2s[t] - 1)·σ(i[t])                            (memory)
    u[t]    = h[t] - s[t]·(Vth[t] + σ(r[t]))   (AR-LIF)          (reset)
            = h[t]·(1 - s[t])                  (hard LIF)
            = h[t] - s[t]·V                    (soft LIF)

Θ is trained with a surrogate on the whole argument z = h - Vth; by default the rectangle
of eq. 12, ∂s/∂z = 1/a for |z| ≤ a/2, else 0, and firing at z = 0 (`arlif.spikes.surrogate`
has the other choices).  Nothing is detached.

`reference_multistep` is the readable oracle that every fast path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

import torch
from torch import Tensor

from arlif.spikes.surrogate import Surrogate

RESETS = ("hard", "soft", "adaptive")
RESET_CODES = {reset: code for code, reset in enumerate(RESETS)}  # as the fused kernels number them
BACKENDS = ("auto", "reference", "cpu", "triton", "compiled")


@dataclass(frozen=True)
class NeuronSpec:
    """Constants of one neuron layer; `reset="adaptive"` is AR-LIF.

    The last four fields choose the spike function (`arlif.spikes.surrogate.Surrogate`),
    built once as `spec.spike`.  `spec.constants` holds the fields as a tuple of plain values
    (`NeuronSpec(*spec.constants) == spec`): what a function that Dynamo calls eagerly while it
    traces (`arlif.kernels.choose_engine`) can be given, since torch 2.11's Dynamo cannot pass it a
    frozen dataclass.
    """

    reset: str = "adaptive"
    decay: float = 0.5
    v_threshold: float = 1.0
    surrogate_width: float = 1.0
    surrogate: str = "rectangle"
    surrogate_slope: Optional[float] = None
    fire_at_threshold: bool = True
    spike: Surrogate = field(init=False, repr=False, compare=False)
    constants: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {self.decay}")
        object.__setattr__(self, "spike", Surrogate(self.surrogate, self.surrogate_width, self.surrogate_slope,
                                                    self.fire_at_threshold))
        object.__setattr__(self, "constants", tuple(getattr(self, f.name) for f in fields(self) if f.init))


def reference_multistep(
    x: Tensor,
    spec: NeuronSpec,
    alpha: Optional[Tensor] = None,
    beta: Optional[Tensor] = None,
    store_v: bool = False,
) -> tuple[Tensor, Optional[dict[str, Tensor]]]:
    """Run the neuron over x [T, ...] step by step with plain autograd ops.

    `alpha` and `beta` (0-d tensors; β already tanh-squashed) are used by the adaptive
    reset only.  Returns spikes [T, ...] and, if `store_v`, the state
    sequences {"h": charged potential, "u": potential after reset, "r": memory} [T, ...]
    for analysis ("r" for AR-LIF only).
    """
    adaptive = spec.reset == "adaptive"
    u = torch.zeros_like(x[0])
    r = torch.zeros_like(x[0])
    spikes, states = [], {"h": [], "u": [], "r": []}
    for i in x:
        h = spec.decay * u + i
        vth = spec.v_threshold + beta * torch.tanh(i) if adaptive else spec.v_threshold
        s = spec.spike(h - vth)
        if spec.reset == "hard":
            u = h * (1.0 - s)
        elif spec.reset == "soft":
            u = h - s * vth
        else:
            g = torch.sigmoid(alpha * i)
            r = torch.where(r >= 0, g * r, (1.0 - g) * r) + (2.0 * s - 1.0) * torch.sigmoid(i)
            u = h - s * (vth + torch.sigmoid(r))
        spikes.append(s)
        if store_v:
            for key, value in (("h", h), ("u", u), ("r", r)):
                states[key].append(value)
    if not store_v:
        return torch.stack(spikes), None
    if not adaptive:
        del states["r"]
    return torch.stack(spikes), {k: torch.stack(v) for k, v in states.items()}
