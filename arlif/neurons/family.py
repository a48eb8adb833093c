"""`FamilyNeuron`: a neuron of the AR-LIF family, fully described by a `NeuronSpec` (plus α, β).

Its readable step loop is `reference_multistep`; its fast path the hand-fused kernels of
`arlif.kernels`, used where they implement the spec's spike function (`kernels.fusable`).
The engine for a call is chosen (and self-checked) once per module, backend, device, dtype and
wanted gradients and cached; eager calls then run it directly (`kernels.function.eager_call`: the
C++ engine's own autograd node, or `EagerNeuron`), while `torch.compile` traces the custom
operators (`kernels.fused_spikes`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from arlif import kernels
from arlif.neurons.base import SpikingNeuron
from arlif.spikes.dynamics import NeuronSpec, reference_multistep


class FamilyNeuron(SpikingNeuron):
    """AR-LIF or LIF by `spec`; `scalars()` gives (α, β) for the adaptive reset.

    `eager_fast_path = False` makes eager calls go through the custom operators too, as before
    issue 27 (scripts/bench_step.py --neuron-path custom-op; tests)."""

    eager_fast_path = True

    def __init__(self, spec: NeuronSpec, backend: str = "auto"):
        super().__init__(spec.spike, backend, fused_kernel=kernels.fusable(spec))
        self.spec = spec
        self._engines: dict[tuple, object] = {}  # call case -> the engine's eager call (None: the step loop)

    def __getstate__(self):
        return {**super().__getstate__(), "_engines": {}}  # cached calls are per process: not pickled

    def scalars(self) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """(α, β) as used by the dynamics; (None, None) for LIF."""
        return None, None

    def raw_scalars(self) -> tuple[Optional[Tensor], Optional[Tensor], bool]:
        """(α, b, squash): the fused kernels' scalars, β = tanh(b) when `squash` else β = b."""
        return *self.scalars(), False

    def step_loop(self, x: Tensor, store_v: bool = False):
        return reference_multistep(x, self.spec, *self.scalars(), store_v=store_v)

    def fused(self, x: Tensor) -> Optional[Tensor]:
        # Same dtype rules as the loop; the Triton kernel reads and writes fp16/bf16 without a cast.
        if torch.compiler.is_compiling() or not self.eager_fast_path or x.numel() == 0:
            return kernels.fused_spikes(x, self.spec, *self.scalars(), backend=self.backend)
        alpha, beta, squash = self.raw_scalars()
        case = (self.backend, x.device, x.dtype, kernels.selfcheck.gradients_wanted(alpha, beta))
        if case not in self._engines:
            name = kernels.choose_engine(self.backend, x.device, x.dtype, self.spec.constants, case[3])
            self._engines[case] = None if name is None else kernels.function.eager_call(kernels.function.ENGINES[name])
        call = self._engines[case]
        return None if call is None else call(x, alpha, beta, self.spec, squash)

    def extra_repr(self) -> str:
        s = self.spec
        return f"reset={s.reset}, decay={s.decay}, v_threshold={s.v_threshold}, {super().extra_repr()}"
