"""`SpikingNeuron`: the multi-step module every neuron is, and how its forward picks a backend.

Input currents are x [T, B, C, ...] (channels in dim 2, e.g. a convolution's output) or
x [T, N]; spikes come back in x's shape and dtype.  State starts at zero on every call, so
there is nothing to reset between batches.  A neuron that needs the number of channels
(per-channel parameters) or of time steps (per-step parameters, a T×T weight) takes
`channels` and `T` at construction; the model factories pass both.

The step-loop contract.  Every neuron writes its dynamics once, readably, as

    step_loop(x, store_v=False) -> (spikes, states or None)

- x is [T, ...] as above, already in the math dtype (fp32 or fp64; `forward` casts);
- it is a pure function of x and the module's parameters and buffers: it reads attributes
  and sets none, starts every state at zero, and branches in Python only on shapes and on
  constants fixed at construction (so `torch.compile` can trace it once per shape);
- it returns spikes in x's dtype and, when `store_v`, {name: sequence [T, ...]} with at
  least "h", the potential the spike is fired from; else None.

`forward` casts x to at least fp32 and dispatches: a neuron built with a hand-fused kernel
(`fused_kernel=True`: AR-LIF and LIF through `arlif.kernels.fused_spikes`) runs `fused(x)`
unless backend="reference" or "compiled" or `store_v` is set, or no fused engine serves the
call; everything else runs `step_loop`, compiled by torch.compile for backend="compiled" and
for "auto" where Inductor generates code for the device and the input has at least
`arlif.kernels.compiled.AUTO_MIN_ELEMENTS` elements per step.  With
`store_v` the eager loop runs and the detached states of the call are kept in `self.states`.

A neuron whose constants follow a training schedule (masked PSN's λ) keeps them in buffers
and updates them in `on_epoch`, never in `step_loop`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from arlif.kernels import compiled
from arlif.spikes.dynamics import BACKENDS
from arlif.spikes.surrogate import Surrogate

FUSED_BACKENDS = ("cpu", "triton")


class SpikingNeuron(nn.Module):
    """A multi-step neuron layer: x [T, ...] -> spikes [T, ...] (same dtype as x); see the module doc.

    Math runs in at least fp32 whatever the input dtype (fp16/bf16 under autocast only
    change the storage of inputs and outputs; fp64 stays fp64).  Set `store_v = True` to
    keep the last call's state sequences for analysis in `self.states` (`self.v_seq` is
    states["h"]); this runs `step_loop`.
    """

    def __init__(self, surrogate: Surrogate, backend: str = "auto", fused_kernel: bool = False):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend in FUSED_BACKENDS and not fused_kernel:
            raise ValueError(f"{type(self).__name__} with the {surrogate.describe()} spike has no fused "
                             f"kernel, so backend={backend!r} cannot run it; use auto or reference")
        self.surrogate = surrogate
        self.backend = backend
        self.fused_kernel = fused_kernel
        self.store_v = False
        self.states: Optional[dict[str, Tensor]] = None

    @property
    def v_seq(self) -> Optional[Tensor]:
        """Potential h [T, ...] that the spikes of the last call made with `store_v` were fired from."""
        return None if self.states is None else self.states["h"]

    def step_loop(self, x: Tensor, store_v: bool = False) -> tuple[Tensor, Optional[dict[str, Tensor]]]:
        """The readable dynamics (see the module doc for the contract)."""
        raise NotImplementedError

    def fused(self, x: Tensor) -> Optional[Tensor]:
        """Spikes from the hand-fused kernel, for x in any dtype (neurons built with `fused_kernel=True`),
        or None where no fused engine serves the call (then `forward` runs the step loop)."""
        raise NotImplementedError

    def parameter_values(self) -> dict[str, Tensor]:
        """The learnable values worth logging, by name, as the dynamics use them (default: every parameter
        as stored).  Scalars are per layer; vectors per channel or per step."""
        return dict(self.named_parameters(recurse=False))

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the training loop before epoch `epoch` (0-based) of `epochs`: a neuron with a
        training schedule (masked PSN's λ) sets its buffers here.  Default: nothing."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise ValueError(f"expected input [T, ...] with at least 2 dims, got shape {tuple(x.shape)}")
        if self.fused_kernel and not self.store_v and self.backend not in ("reference", "compiled"):
            spikes = self.fused(x)
            if spikes is not None:
                return spikes
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # fp16/bf16 -> fp32 math
        with torch.autocast(xf.device.type, enabled=False):  # also for the PSNs' matrix product
            if self.store_v or not self._compiles(xf):
                spikes, states = self.step_loop(xf, store_v=self.store_v)
            else:
                spikes, states = compiled.spikes(self, xf, explicit=self.backend == "compiled"), None
        self.states = {k: v.detach() for k, v in states.items()} if states else None
        return spikes.to(x.dtype)

    def _compiles(self, x: Tensor) -> bool:
        """Whether the step loop runs compiled: backend `compiled`, or `auto` where no fused kernel
        served the call, torch.compile generates code for the device and the input is no toy."""
        if self.backend == "compiled":
            return True
        return self.backend == "auto" and compiled.available(x.device) and compiled.worth_compiling(x)

    def extra_repr(self) -> str:
        return f"surrogate={self.surrogate.describe()}, backend={self.backend}"


def per_channel(p: Tensor, step: Tensor) -> Tensor:
    """Parameter p of shape () or (C,) shaped to broadcast against one step x[t].

    x[t] is [B, C, ...] (channels in dim 1) or [N] (then N = C).
    """
    if p.dim() == 0 or step.dim() == 1:
        return p
    return p.view(1, -1, *([1] * (step.dim() - 2)))


def check_steps(name: str, T: int, x: Tensor) -> None:
    """A neuron built for T steps refuses an input with another number of steps."""
    if x.shape[0] != T:
        raise ValueError(f"{name} was built for T={T} time steps but got an input with {x.shape[0]}")


def check_channels(name: str, channels: int, x: Tensor) -> None:
    """A neuron with per-channel parameters refuses an input with another number of channels."""
    found = x.shape[1] if x.dim() == 2 else x.shape[2]
    if found != channels:
        raise ValueError(f"{name} was built for {channels} channels but got an input of shape {tuple(x.shape)} "
                         f"({found} in the channel dim: dim 2 of [T, B, C, ...], dim 1 of [T, N])")


class Trace:
    """The per-step states a step loop records when `store_v` is set: `add(h=..., ...)` each step,
    `result()` at the end ({name: [T, ...]} or None)."""

    def __init__(self, on: bool):
        self.on = on
        self.steps: dict[str, list[Tensor]] = {}

    def add(self, **states: Tensor) -> None:
        if self.on:
            for name, value in states.items():
                self.steps.setdefault(name, []).append(value)

    def result(self) -> Optional[dict[str, Tensor]]:
        return {name: torch.stack(values) for name, values in self.steps.items()} if self.on else None
