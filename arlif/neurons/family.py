"""`FamilyNeuron`: a neuron of the AR-LIF family, fully described by a `NeuronSpec` (plus α, β).

Its readable step loop is `reference_multistep`; its fast path the hand-fused kernels of
`arlif.kernels`, used where they implement the spec's spike function (`kernels.fusable`).
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from arlif import kernels
from arlif.neurons.base import SpikingNeuron
from arlif.spikes.dynamics import NeuronSpec, reference_multistep


class FamilyNeuron(SpikingNeuron):
    """AR-LIF or LIF by `spec`; `scalars()` gives (α, β) for the adaptive reset."""

    def __init__(self, spec: NeuronSpec, backend: str = "auto"):
        super().__init__(spec.spike, backend, fused_kernel=kernels.fusable(spec))
        self.spec = spec

    def scalars(self) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """(α, β) as used by the dynamics; (None, None) for LIF."""
        return None, None

    def step_loop(self, x: Tensor, store_v: bool = False):
        return reference_multistep(x, self.spec, *self.scalars(), store_v=store_v)

    def fused(self, x: Tensor) -> Optional[Tensor]:
        # Same dtype rules as the loop; the Triton kernel reads and writes fp16/bf16 without a cast.
        return kernels.fused_spikes(x, self.spec, *self.scalars(), backend=self.backend)

    def extra_repr(self) -> str:
        s = self.spec
        return f"reset={s.reset}, decay={s.decay}, v_threshold={s.v_threshold}, {super().extra_repr()}"
