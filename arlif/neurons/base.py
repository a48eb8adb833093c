"""`SpikingNeuron`: the multi-step module every neuron is, and its choice of backend."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from arlif import kernels
from arlif.neurons.dynamics import BACKENDS, NeuronSpec, reference_multistep


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
        # Same dtype rules; the Triton kernel reads and writes fp16/bf16 without a cast.
        return kernels.multistep(x, self.spec, alpha, beta, backend=self.backend)

    def extra_repr(self) -> str:
        s = self.spec
        return f"reset={s.reset}, decay={s.decay}, v_threshold={s.v_threshold}, surrogate_width={s.surrogate_width}, backend={self.backend}"
