"""`backend="compiled"`: a neuron's readable `step_loop`, compiled by `torch.compile` (Inductor).

This gives every neuron a fast path without a hand-written kernel: Inductor fuses the
loop's elementwise operations into a few loops over memory (C++/OpenMP on CPU, Triton on
CUDA) and keeps far fewer tensors for the backward than eager autograd does.

- One compiled function per step-loop function, `torch.compile(type(neuron).step_loop)`.
  Dynamo traces it once per neuron kind (class and constants), grad mode and number of
  steps T; every other dim is marked dynamic, so the layers of a network share one graph
  whatever their batch, channels and map size (where a neuron ties a dim to its parameters,
  such as per-channel ones, Dynamo specialises that dim).  Inductor adds a second graph
  for inputs of at most 4,096 elements per step when the backward sums over them (the
  gradient of a per-layer scalar: small sums use another accumulation scheme).
- Before the compiled loop serves a new *case* (step-loop function, neuron class and
  constants, device, dtype, T, input rank, grad mode and which tensors require grad) it
  must match the neuron's own eager loop on the call's input (its first samples, at least
  8,192 elements per step where the input has them): identical spikes, and gradients for the
  input and every trainable parameter within 1e-4 relative (`arlif.kernels.selfcheck`, the
  same policy as the fused kernels).  A compile error (no C++ compiler, an unsupported
  platform) or a mismatch makes `auto` warn once and run the eager loop; an explicit
  `compiled` backend raises `KernelCheckError`.
- Only those marked dims are dynamic (Dynamo's automatic dynamic shapes are off for these
  calls), so neurons of one class that differ in a constant get a graph each.
- `auto` compiles only inputs of at least AUTO_MIN_ELEMENTS = 65,536 elements per step (a layer of a real training
  batch); smaller ones, as in unit tests and quick probes, run the eager loop.
- Inside a model that is being compiled as a whole (`trainer.compile`), the neuron's loop is
  simply traced into the model's graph.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from arlif.kernels import selfcheck
from arlif.kernels.availability import constant_to_dynamo, triton_installed

RECOMPILE_LIMIT = 64  # graphs Dynamo may keep per step-loop function (its default, 8, is too few for all kinds)
CHECK_ELEMENTS = 8192  # elements per step of the check input, where the call's input has that many
AUTO_MIN_ELEMENTS = 1 << 16  # `auto` compiles inputs of at least this many elements per step

_functions: dict[Callable, Callable] = {}  # step-loop function -> its torch.compile wrapper


@constant_to_dynamo
def available(device: torch.device) -> bool:
    """Whether Inductor generates code for `device` here: C++ on CPU (the compiler itself is
    found, or found missing, at the first compile), Triton on CUDA.  A constant to Dynamo."""
    return device.type == "cpu" or (device.type == "cuda" and triton_installed())


def worth_compiling(x: Tensor) -> bool:
    """Whether `auto` compiles for x.  Below AUTO_MIN_ELEMENTS per step (a unit test, a notebook's probe)
    the eager loop takes a few milliseconds, and a compile (seconds) would pay off only over thousands of
    calls; every layer of a real training batch is at least as large (the quick start's smallest is the threshold)."""
    return x[0].numel() >= AUTO_MIN_ELEMENTS


def spikes(neuron, x: Tensor, explicit: bool) -> Tensor:
    """Spikes of `neuron` for x (already in its math dtype) from the compiled step loop, or from
    the eager loop where this case failed its check under `auto` (explicit: KernelCheckError)."""
    if torch.compiler.is_compiling() or x.numel() == 0:
        return neuron.step_loop(x)[0]  # an enclosing torch.compile traces the loop into its graph
    if selfcheck.judge(_case(neuron, x), lambda: _describe(neuron, x), lambda: _check(neuron, x), explicit,
                       "the eager step loop"):
        return run(neuron, x)
    return neuron.step_loop(x)[0]


def run(neuron, x: Tensor) -> Tensor:
    """The compiled step loop's spikes, without the check (tests and benchmarks call it directly)."""
    view = x.view(x.shape)  # mark a view of the caller's tensor, not the tensor itself
    for dim in range(1, x.dim()):
        torch._dynamo.maybe_mark_dynamic(view, dim)
    # Only the marked dims are dynamic: a neuron kind's constants (a surrogate's slope, say) that differ
    # from the last call's get a graph of their own instead of turning symbolic.
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT, automatic_dynamic_shapes=False):
        return compiled_loop(type(neuron).step_loop)(neuron, view)[0]


def compiled_loop(step_loop: Callable) -> Callable:
    """The torch.compile wrapper of one step-loop function (made once per process)."""
    if step_loop not in _functions:
        _functions[step_loop] = torch.compile(step_loop)
    return _functions[step_loop]


def _case(neuron, x: Tensor) -> tuple:
    grads = tuple(p.requires_grad for p in neuron.parameters())
    return ("compiled", type(neuron).step_loop, type(neuron), neuron.extra_repr(), x.device, x.dtype,
            x.shape[0], x.dim(), torch.is_grad_enabled(), x.requires_grad, grads)


def _describe(neuron, x: Tensor) -> str:
    mode = "with gradients" if torch.is_grad_enabled() else "without autograd"
    return (f"the compiled step loop of {type(neuron).__name__}({neuron.extra_repr()}) failed its self-check "
            f"against its eager loop ({str(x.dtype).removeprefix('torch.')} on {x.device}, T={x.shape[0]}, "
            f"{mode}):")


def check_input(x: Tensor) -> Tensor:
    """The call's input, cut to its first samples: at least CHECK_ELEMENTS per step where it has them."""
    if x.dim() < 3:
        return x.detach().clone()
    per_sample = max(1, x[0, 0].numel())
    return x.detach()[:, :max(2, -(-CHECK_ELEMENTS // per_sample))].clone()


def _check(neuron, x: Tensor) -> Optional[str]:
    """None when the compiled loop matches the eager loop on the check input, else what differs."""
    sample = check_input(x).requires_grad_(x.requires_grad and torch.is_grad_enabled())
    named = [(n, p) for n, p in neuron.named_parameters() if p.requires_grad and torch.is_grad_enabled()]
    gen = torch.Generator().manual_seed(0)
    grad = torch.randn(sample.shape, generator=gen).to(sample.device, sample.dtype)
    names = ("x", *(n for n, _ in named))
    ref = _spikes_and_grads(lambda xs: neuron.step_loop(xs)[0], sample, [p for _, p in named], grad)
    try:
        got = _spikes_and_grads(lambda xs: run(neuron, xs), sample, [p for _, p in named], grad)
    except Exception as exc:  # a compile error is a failed check, not a crash here
        return selfcheck.failure(exc)
    return selfcheck.difference(got, ref, x.dtype, names)


def _spikes_and_grads(loop: Callable, x: Tensor, params: list, grad: Tensor) -> tuple:
    """Spikes and the gradients of <spikes, grad> for x and `params` (None where not wanted)."""
    out = loop(x)
    leaves = ([x] if x.requires_grad else []) + params
    grads = (torch.autograd.grad(out, leaves, grad, allow_unused=True, materialize_grads=True)
             if leaves else [])
    found = iter(grads)
    return (out.detach(), next(found) if x.requires_grad else None, *found)
