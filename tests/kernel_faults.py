"""Real engines with one deliberate fault, for the fused-kernel self-check tests.

`Faulty(engine, fault)` runs the real CPU or Triton engine and then breaks one thing:
"spike" flips the last spike of the forward, "grad_x" / "grad_beta" scale that gradient by
1.01 ("squashed_grad_beta": only in a call with β = tanh(b) inside, the eager call's), "launch"
launches the real Triton forward kernel with an argument missing.  The "eager_*" faults leave
the operators' forward and backward alone and break only the engine's eager call
(`arlif.kernels.function.eager_call`, the C++ engine's own autograd node): "eager_beta" scales
the gradient of the raw b (β = tanh(b)) by 1.01, as a wrong tanh derivative would, and
"eager_layout" returns the spikes' memory read as contiguous, as a call that ignored its input's
strides would.
`install(fault)` puts such a CPU engine behind `arlif.kernels` (for subprocesses).
"""

from __future__ import annotations

import torch

import arlif.kernels
from arlif.kernels.function import eager_call


class Faulty:
    def __init__(self, engine, fault: str):
        self.engine, self.fault = engine, fault
        self.NAME = f"{engine.NAME} with fault {fault}"
        self.IO_DTYPES = engine.IO_DTYPES
        self.shapes = []  # shape of every forward input it was given
        if fault.startswith("eager_"):
            self.eager = self._faulty_eager  # else `eager_call` runs `EagerNeuron` on the faulty forward/backward

    def _faulty_eager(self, x, alpha, beta, spec, squash):
        if self.fault == "eager_beta" and beta is not None:
            beta = _ScaleGradient.apply(beta)
        spikes = eager_call(self.engine)(x, alpha, beta, spec, squash)
        if self.fault == "eager_layout":
            spikes = spikes.as_strided(spikes.shape, torch.empty(spikes.shape).stride())
        return spikes

    def forward(self, x, spec, alpha, beta, squash=False):
        self.shapes.append(tuple(x.shape))
        if self.fault == "launch":
            from arlif.kernels import triton_neuron

            launch, spikes, flags = triton_neuron.plan_forward(x, spec, alpha, beta, squash)
            launch.kernel[launch.grid](*launch.args[:-1], **launch.kwargs)
            return spikes, flags
        spikes, flags = self.engine.forward(x, spec, alpha, beta, squash)
        if self.fault == "spike":
            spikes[-1, -1] = 1 - spikes[-1, -1]
        return spikes, flags

    def backward(self, x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta, squash=False):
        grad_x, g_alpha, g_beta = self.engine.backward(x, flags, grad_spikes, spec, alpha, beta,
                                                       grad_alpha, grad_beta, squash)
        if self.fault == "grad_x":
            grad_x = grad_x * 1.01
        if self.fault == "grad_beta" or (self.fault == "squashed_grad_beta" and squash):
            g_beta = g_beta * 1.01
        return grad_x, g_alpha, g_beta


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient times 1.01 backward."""

    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.01


def install(fault: str) -> Faulty:
    """Make the fused `cpu` backend of this process a faulty CPU engine."""
    from arlif.kernels import cpu

    assert cpu.load() is not None, "the fused CPU kernel failed to build"
    engine = Faulty(cpu, fault)
    arlif.kernels._cpu_engine = lambda: engine
    return engine
