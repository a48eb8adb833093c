"""The AR-LIF neuron family (paper eq. 9) and its LIF baselines, as multi-step modules.

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

Θ is trained with the rectangle surrogate of eq. 12 on the whole argument z = h - Vth:
∂s/∂z = 1/a for |z| ≤ a/2, else 0.  Nothing is detached.

`reference_multistep` is the readable oracle that every fast path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

RESETS = ("hard", "soft", "adaptive")
BACKENDS = ("auto", "reference", "cpu", "triton")


@dataclass(frozen=True)
class NeuronSpec:
    """Constants of one neuron layer; `reset="adaptive"` is AR-LIF."""

    reset: str = "adaptive"
    decay: float = 0.5
    v_threshold: float = 1.0
    surrogate_width: float = 1.0

    def __post_init__(self):
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {self.decay}")
        if self.surrogate_width <= 0:
            raise ValueError(f"surrogate_width must be > 0, got {self.surrogate_width}")


class RectangleSpike(torch.autograd.Function):
    """Heaviside Θ(z) (1 at z ≥ 0) forward; rectangle surrogate 1/a·[|z| ≤ a/2] backward."""

    @staticmethod
    def forward(ctx, z: Tensor, width: float) -> Tensor:
        ctx.save_for_backward(z)
        ctx.width = width
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (z,) = ctx.saved_tensors
        window = (z.abs() <= ctx.width / 2).to(grad.dtype)
        return grad * window / ctx.width, None


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
        s = RectangleSpike.apply(h - vth, spec.surrogate_width)
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


class SpikingNeuron(nn.Module):
    """A multi-step neuron layer: x [T, ...] -> spikes [T, ...] (same dtype as x).

    Math runs in at least fp32 whatever the input dtype (so fp16/bf16 under autocast
    only changes the storage of inputs and outputs; fp64 stays fp64).  Set `store_v = True` to keep the last
    call's state sequences for analysis: `self.v_seq` (charged potential h) and
    `self.states` ({"h", "u", "r"}, see `reference_multistep`); this runs the reference.
    """

    def __init__(self, spec: NeuronSpec, backend: str = "auto"):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.spec = spec
        self.backend = backend
        self.store_v = False
        self.states: Optional[dict[str, Tensor]] = None

    @property
    def v_seq(self) -> Optional[Tensor]:
        """Charged potential h [T, ...] of the last call made with `store_v`."""
        return None if self.states is None else self.states["h"]

    def scalars(self) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """(α, β) as used by the dynamics; (None, None) for LIF."""
        return None, None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise ValueError(f"expected input [T, ...] with at least 2 dims, got shape {tuple(x.shape)}")
        alpha, beta = self.scalars()
        if self.store_v or self.backend == "reference":
            xf = x.to(torch.promote_types(x.dtype, torch.float32))  # fp16/bf16 -> fp32 math
            spikes, states = reference_multistep(xf, self.spec, alpha, beta, store_v=self.store_v)
            self.states = {k: v.detach() for k, v in states.items()} if states else None
            return spikes.to(x.dtype)
        from arlif.kernels import multistep

        # Same dtype rules; the Triton kernel reads and writes fp16/bf16 without a cast.
        return multistep(x, self.spec, alpha, beta, backend=self.backend)

    def extra_repr(self) -> str:
        s = self.spec
        return f"reset={s.reset}, decay={s.decay}, v_threshold={s.v_threshold}, surrogate_width={s.surrogate_width}, backend={self.backend}"


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire with hard (u = h·(1-s)) or soft (u = h - s·V) reset."""

    def __init__(self, reset: str = "hard", decay: float = 0.5, v_threshold: float = 1.0,
                 surrogate_width: float = 1.0, backend: str = "auto"):
        if reset not in ("hard", "soft"):
            raise ValueError(f"LIF reset must be 'hard' or 'soft', got {reset!r}")
        super().__init__(NeuronSpec(reset, decay, v_threshold, surrogate_width), backend)


class ARLIF(SpikingNeuron):
    """AR-LIF: adaptive reset (memory r) and input-dependent threshold 1 + β·tanh(i).

    α (init 1) and beta_raw (init 0, β = tanh(beta_raw) ∈ (-1, 1)) are per-layer
    scalars; `learn_alpha=False` / `adaptive_threshold=False` freeze them as buffers at
    their initial values (the Table 2 ablations).
    """

    def __init__(self, decay: float = 0.5, v_threshold: float = 1.0, learn_alpha: bool = True,
                 adaptive_threshold: bool = True, surrogate_width: float = 1.0, backend: str = "auto"):
        super().__init__(NeuronSpec("adaptive", decay, v_threshold, surrogate_width), backend)
        alpha, beta_raw = torch.tensor(1.0), torch.tensor(0.0)
        if learn_alpha:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)
        if adaptive_threshold:
            self.beta_raw = nn.Parameter(beta_raw)
        else:
            self.register_buffer("beta_raw", beta_raw)

    @property
    def beta(self) -> Tensor:
        return torch.tanh(self.beta_raw)

    def scalars(self) -> tuple[Tensor, Tensor]:
        return self.alpha, self.beta


NEURONS = {
    "arlif": lambda **kw: ARLIF(**kw),
    "arlif_fixed_alpha": lambda **kw: ARLIF(learn_alpha=False, **kw),
    "arlif_fixed_threshold": lambda **kw: ARLIF(adaptive_threshold=False, **kw),
    "arlif_fixed_both": lambda **kw: ARLIF(learn_alpha=False, adaptive_threshold=False, **kw),
    "lif_hard": lambda **kw: LIF(reset="hard", **kw),
    "lif_soft": lambda **kw: LIF(reset="soft", **kw),
}


def build_neuron(name: str, **kwargs) -> SpikingNeuron:
    """Build a neuron by config name; kwargs: decay, v_threshold, surrogate_width, backend."""
    if name not in NEURONS:
        raise ValueError(f"unknown neuron {name!r}; choose one of {sorted(NEURONS)}")
    return NEURONS[name](**kwargs)


def neuron_layers(model: nn.Module) -> list[tuple[str, SpikingNeuron]]:
    """All neuron layers of a model, in registration order, with qualified names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SpikingNeuron)]
