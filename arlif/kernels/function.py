"""The fused neuron backends as two PyTorch custom operators, with their autograd.

`torch.ops.arlif.neuron_forward` and `torch.ops.arlif.neuron_backward` run a registered
*engine* (the C++ kernel `arlif.kernels.cpu`, the Triton kernel
`arlif.kernels.triton_neuron`) on a flat layout x [T, N].  As `torch.library` custom
operators they have shape functions (`register_fake`) and a registered backward, so
`torch.compile` traces a network through them as single opaque nodes (no graph break, and
the Triton launch is never traced by Dynamo), while eager mode runs them as before.

An engine is a module or object with

    NAME                    the name the operators find it under (`register`)
    IO_DTYPES               input dtypes it reads as they are (others are converted to fp32)
    forward(x, spec, alpha, beta) -> (spikes [T, N], flags [T, N] uint8)
    backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta)
        -> (grad_x [T, N], dL/dα or None, dL/dβ or None)

where the backward gets x = None for the soft reset, which does not need it; `flags` holds
one byte per neuron-step (bit 0 spike, bit 1 surrogate window), all the engines keep for the
backward through time (docs/kernels.md derives it).  α and β are 0-d fp32 tensors (None for
LIF); gradients are computed only for those that require them.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from arlif.spikes.dynamics import NeuronSpec

ENGINES: dict[str, object] = {}  # NAME -> engine, filled by `register`


def register(engine) -> str:
    """Make `engine` reachable by the operators under its NAME (replacing an older one); returns the name."""
    ENGINES[engine.NAME] = engine
    return engine.NAME


def _spec(reset: str, decay: float, v_threshold: float, surrogate_width: float) -> NeuronSpec:
    return NeuronSpec(reset, decay, v_threshold, surrogate_width)


@torch.library.custom_op("arlif::neuron_forward", mutates_args=())
def neuron_forward(x: Tensor, alpha: Optional[Tensor], beta: Optional[Tensor], engine: str, reset: str,
                   decay: float, v_threshold: float, surrogate_width: float) -> tuple[Tensor, Tensor]:
    """Spikes [T, N] in x's dtype and the flag bytes [T, N] for a contiguous x [T, N]."""
    impl = ENGINES[engine]
    xin = x if x.dtype in impl.IO_DTYPES else x.float()
    spikes, flags = impl.forward(xin, _spec(reset, decay, v_threshold, surrogate_width), alpha, beta)
    return spikes.to(x.dtype), flags


@neuron_forward.register_fake
def _(x, alpha, beta, engine, reset, decay, v_threshold, surrogate_width):
    return torch.empty_like(x), torch.empty_like(x, dtype=torch.uint8)


@torch.library.custom_op("arlif::neuron_backward", mutates_args=())
def neuron_backward(x: Optional[Tensor], flags: Tensor, grad_spikes: Tensor, alpha: Optional[Tensor],
                    beta: Optional[Tensor], engine: str, reset: str, decay: float, v_threshold: float,
                    surrogate_width: float, grad_alpha: bool, grad_beta: bool) -> tuple[Tensor, Tensor, Tensor]:
    """grad_x [T, N] in grad_spikes' dtype, dL/dα and dL/dβ (fp32 0-d; zero unless asked for)."""
    impl = ENGINES[engine]
    if x is not None and x.dtype not in impl.IO_DTYPES:
        x = x.float()
    grad_in = grad_spikes if grad_spikes.dtype in impl.IO_DTYPES else grad_spikes.float()
    grad_x, g_alpha, g_beta = impl.backward(x, flags, grad_in.contiguous(),
                                            _spec(reset, decay, v_threshold, surrogate_width),
                                            alpha, beta, grad_alpha, grad_beta)
    zero = torch.zeros((), dtype=torch.float32, device=grad_spikes.device)
    return (grad_x.to(grad_spikes.dtype), zero if g_alpha is None else g_alpha.float().reshape(()),
            zero.clone() if g_beta is None else g_beta.float().reshape(()))


@neuron_backward.register_fake
def _(x, flags, grad_spikes, alpha, beta, engine, reset, decay, v_threshold, surrogate_width, grad_alpha, grad_beta):
    scalar = grad_spikes.new_empty((), dtype=torch.float32)
    return torch.empty_like(grad_spikes), scalar, torch.empty_like(scalar)


def _setup_context(ctx, inputs, output):
    x, alpha, beta, engine, reset, decay, v_threshold, surrogate_width = inputs
    _, flags = output
    ctx.constants = (engine, reset, decay, v_threshold, surrogate_width)
    # The soft reset's backward needs only the flags: don't keep x alive for it.
    ctx.save_for_backward(None if reset == "soft" else x, alpha, beta, flags)
    ctx.mark_non_differentiable(flags)


def _backward(ctx, grad_spikes, _grad_flags):
    x, alpha, beta, flags = ctx.saved_tensors
    want_alpha, want_beta = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
    grad_x, grad_alpha, grad_beta = neuron_backward(x, flags, grad_spikes, alpha, beta, *ctx.constants,
                                                    want_alpha, want_beta)
    return (grad_x, grad_alpha if want_alpha else None, grad_beta if want_beta else None,
            None, None, None, None, None)


neuron_forward.register_autograd(_backward, setup_context=_setup_context)


def fused_multistep(x: Tensor, spec: NeuronSpec, alpha: Optional[Tensor], beta: Optional[Tensor],
                    engine: str) -> Tensor:
    """Spikes [T, ...] in x's dtype from the registered engine named `engine` for x [T, ...]."""
    if alpha is not None:
        alpha, beta = alpha.float(), beta.float()
    flat = x.reshape(x.shape[0], -1).contiguous()
    spikes, _ = neuron_forward(flat, alpha, beta, engine, spec.reset, spec.decay, spec.v_threshold,
                               spec.surrogate_width)
    return spikes.view(x.shape)
