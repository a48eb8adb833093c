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
    forward(x, spec, alpha, beta, squash) -> (spikes [T, N], flags [T, N] uint8)
    backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta, squash)
        -> (grad_x [T, N], dL/dα or None, dL/dβ or None)
    eager(x, alpha, beta, spec, squash) -> spikes   (optional: the engine's own eager call with
                                                     autograd; else `EagerNeuron` runs it)

where the backward gets x = None for the soft reset, which does not need it; `flags` holds
one byte per neuron-step (bit 0 spike, bit 1 surrogate window), all the engines keep for the
backward through time (docs/kernels.md derives it).  α and β are 0-d fp32 tensors (None for
LIF); gradients are computed only for those that require them.  With `squash` (default False, as the
custom operators call them) `beta` is AR-LIF's raw parameter b: the engine uses β = tanh(b) and returns
dL/db, so the eager call needs no tanh of its own.
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


def rows_layout(x: Tensor) -> Optional[tuple]:
    """x's strides when x [T, ...] is dense (its elements fill one block of memory, in any order of
    the dims) with its steps outermost (contiguous, channels_last per step, ...), else None."""
    expected = 1
    for size, stride in sorted(((n, s) for n, s in zip(x.shape[1:], x.stride()[1:]) if n != 1), key=lambda p: p[1]):
        if stride != expected:
            return None
        expected *= size
    return x.stride() if x.shape[0] == 1 or x.stride(0) == expected else None


def flat(x: Tensor, strides: Optional[tuple]) -> Tensor:
    """x [T, ...] as the [T, N] rows an engine reads: a view of x's memory where x has the dense
    `strides` of `rows_layout(x)`, else (None) a contiguous copy.  Neurons are elementwise, so the
    order of the N neurons in a row is free."""
    T = x.shape[0]
    n = x.numel() // T if T else 0
    return x.reshape(T, n).contiguous() if strides is None else x.as_strided((T, n), (n, 1))


def unflat(rows: Tensor, shape: tuple, strides: Optional[tuple]) -> Tensor:
    """Rows [T, N] (contiguous) as a tensor of `shape` with `strides` (None: contiguous): outputs
    keep the layout of an input that `flat` viewed."""
    return rows.view(shape) if strides is None else rows.as_strided(shape, strides)


def run_forward(impl, x: Tensor, spec: NeuronSpec, alpha: Optional[Tensor], beta: Optional[Tensor],
                squash: bool = False):
    """Spikes [T, N] in x's dtype and the flag bytes, from engine `impl` on rows x [T, N]."""
    xin = x if x.dtype in impl.IO_DTYPES else x.float()
    spikes, flags = impl.forward(xin.contiguous(), spec, alpha, beta, squash)
    return spikes.to(x.dtype), flags


def run_backward(impl, x: Optional[Tensor], flags: Tensor, grad_spikes: Tensor, spec: NeuronSpec,
                 alpha: Optional[Tensor], beta: Optional[Tensor], grad_alpha: bool, grad_beta: bool,
                 squash: bool = False):
    """grad_x [T, N] (contiguous, in grad_spikes' dtype), dL/dα and dL/dβ (dL/db with `squash`; fp32 0-d,
    None unless asked)."""
    if x is not None and x.dtype not in impl.IO_DTYPES:
        x = x.float()
    grad_in = grad_spikes if grad_spikes.dtype in impl.IO_DTYPES else grad_spikes.float()
    grad_x, g_alpha, g_beta = impl.backward(x, flags, grad_in.contiguous(), spec, alpha, beta, grad_alpha,
                                            grad_beta, squash)
    return (grad_x.to(grad_spikes.dtype), None if g_alpha is None else g_alpha.float().reshape(()),
            None if g_beta is None else g_beta.float().reshape(()))


@torch.library.custom_op("arlif::neuron_forward", mutates_args=())
def neuron_forward(x: Tensor, alpha: Optional[Tensor], beta: Optional[Tensor], engine: str, reset: str,
                   decay: float, v_threshold: float, surrogate_width: float) -> tuple[Tensor, Tensor]:
    """Spikes [T, N] in x's dtype and the flag bytes [T, N] (both contiguous) for x [T, N]."""
    return run_forward(ENGINES[engine], x, _spec(reset, decay, v_threshold, surrogate_width), alpha, beta)


@neuron_forward.register_fake
def _(x, alpha, beta, engine, reset, decay, v_threshold, surrogate_width):
    return x.new_empty(x.shape), x.new_empty(x.shape, dtype=torch.uint8)  # contiguous, as the real op's


@torch.library.custom_op("arlif::neuron_backward", mutates_args=())
def neuron_backward(x: Optional[Tensor], flags: Tensor, grad_spikes: Tensor, alpha: Optional[Tensor],
                    beta: Optional[Tensor], engine: str, reset: str, decay: float, v_threshold: float,
                    surrogate_width: float, grad_alpha: bool, grad_beta: bool) -> tuple[Tensor, Tensor, Tensor]:
    """grad_x [T, N] (contiguous) in grad_spikes' dtype, dL/dα and dL/dβ (fp32 0-d; zero unless asked for)."""
    grad_x, g_alpha, g_beta = run_backward(ENGINES[engine], x, flags, grad_spikes,
                                           _spec(reset, decay, v_threshold, surrogate_width),
                                           alpha, beta, grad_alpha, grad_beta)
    zero = lambda: torch.zeros((), dtype=torch.float32, device=grad_spikes.device)  # noqa: E731
    return grad_x, zero() if g_alpha is None else g_alpha, zero() if g_beta is None else g_beta


@neuron_backward.register_fake
def _(x, flags, grad_spikes, alpha, beta, engine, reset, decay, v_threshold, surrogate_width, grad_alpha, grad_beta):
    scalar = grad_spikes.new_empty((), dtype=torch.float32)
    return grad_spikes.new_empty(grad_spikes.shape), scalar, torch.empty_like(scalar)


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
    """Spikes [T, ...] in x's dtype and layout from the registered engine named `engine` for x [T, ...],
    through the custom operators (the path `torch.compile` traces)."""
    if alpha is not None:
        alpha, beta = alpha.float(), beta.float()
    strides = rows_layout(x)
    spikes, _ = neuron_forward(flat(x, strides), alpha, beta, engine, spec.reset, spec.decay, spec.v_threshold,
                               spec.surrogate_width)
    return unflat(spikes, x.shape, strides)


class EagerNeuron(torch.autograd.Function):
    """The eager fast path: the same engine calls as the custom operators without their dispatch.

    apply(x, alpha, beta, impl, spec, squash) -> spikes in x's dtype and layout.  With `squash`,
    `beta` is the raw parameter b and the engine computes β = tanh(b) and dL/db itself (the Triton
    kernels inside, without a launch or an autograd node of their own).
    """

    @staticmethod
    def forward(ctx, x, alpha, beta, impl, spec, squash):
        if alpha is not None and alpha.dtype != torch.float32:
            alpha, beta = alpha.float(), beta.float()
        strides = rows_layout(x)
        rows = flat(x, strides)
        spikes, flags = run_forward(impl, rows, spec, alpha, beta, squash)
        ctx.impl, ctx.spec, ctx.squash, ctx.layout = impl, spec, squash, (x.shape, strides)
        ctx.save_for_backward(None if spec.reset == "soft" else rows, alpha, beta, flags)
        return unflat(spikes, x.shape, strides)

    @staticmethod
    def backward(ctx, grad_spikes):
        rows, alpha, beta, flags = ctx.saved_tensors
        shape, strides = ctx.layout
        if strides is not None and grad_spikes.stride() != strides:  # the gradient's rows in x's order
            grad_spikes = grad_spikes.new_empty_strided(shape, strides).copy_(grad_spikes)
        want_alpha, want_beta = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_x, g_alpha, g_beta = run_backward(ctx.impl, rows, flags, flat(grad_spikes, strides), ctx.spec,
                                               alpha, beta, want_alpha, want_beta, ctx.squash)
        return unflat(grad_x, shape, strides), g_alpha, g_beta, None, None, None


def eager_call(impl):
    """The eager call of engine `impl`: call(x, alpha, beta, spec, squash) -> spikes in x's dtype and layout
    (β = tanh(beta) when `squash`), with autograd: the engine's own `eager` (the C++ engine's is one C++
    autograd node), else `EagerNeuron` on it."""
    own = getattr(impl, "eager", None)
    if own is not None:
        return own
    return lambda x, alpha, beta, spec, squash: EagerNeuron.apply(x, alpha, beta, impl, spec, squash)
