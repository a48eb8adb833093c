"""The one autograd Function behind every fused neuron backend.

A backend ("engine") supplies two functions over a flat layout x [T, N]:

    forward(x, spec, alpha, beta) -> (spikes [T, N], saved: tuple of tensors)
    backward(x, saved, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta)
        -> (grad_x [T, N], dL/dα or None, dL/dβ or None)

where the backward gets x = None for the soft reset, which does not need it, and
`IO_DTYPES`, the input dtypes it reads as they are (others are converted to fp32).
`saved` is whatever else the engine keeps for the backward through time (for both
engines: one flag byte per neuron-step); docs/kernels.md derives the backward.  α and β
are 0-d tensors (None for LIF); gradients are computed only for those that require them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class FusedNeuron(torch.autograd.Function):
    """Spikes of a multi-step neuron with a hand-derived backward through time."""

    @staticmethod
    def forward(ctx, x, alpha, beta, spec, engine):
        spikes, saved = engine.forward(x, spec, alpha, beta)
        ctx.spec, ctx.engine = spec, engine
        # The soft reset's backward needs only the flags: don't keep x alive for it.
        ctx.save_for_backward(None if spec.reset == "soft" else x, alpha, beta, *saved)
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes):
        x, alpha, beta, *saved = ctx.saved_tensors
        grad_x, grad_alpha, grad_beta = ctx.engine.backward(
            x, saved, grad_spikes.contiguous(), ctx.spec, alpha, beta,
            ctx.needs_input_grad[1], ctx.needs_input_grad[2],
        )
        return grad_x, grad_alpha, grad_beta, None, None


def fused_multistep(x: Tensor, spec, alpha, beta, engine) -> Tensor:
    """Spikes [T, ...] in x's dtype from `engine` for x [T, ...] (fp32, fp16 or bf16)."""
    xin = x if x.dtype in engine.IO_DTYPES else x.float()
    if alpha is not None:
        alpha, beta = alpha.float(), beta.float()
    flat = xin.reshape(x.shape[0], -1).contiguous()
    return FusedNeuron.apply(flat, alpha, beta, spec, engine).view(x.shape).to(x.dtype)
