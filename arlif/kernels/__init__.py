"""Fast multi-step neuron backends behind one call: `multistep(x, spec, alpha, beta, backend)`.

Backends (the `backend` option of every neuron and of conf/neuron/*):

- ``reference``: `arlif.neurons.reference_multistep`, the readable plain-autograd loop.
- ``cpu``: fused C++/OpenMP kernel (`arlif.kernels.cpu`), CPU tensors.
- ``triton``: fused Triton kernel (`arlif.kernels.triton_neuron`), CUDA tensors; CPU
  tensors too under ``TRITON_INTERPRET=1`` (slow; for tests).
- ``auto``: the fastest available for the input's device: ``triton`` on CUDA when Triton
  is installed, ``cpu`` on CPU, else ``reference``.

The fused kernels implement the rectangle surrogate with firing at z ≥ 0 (`fusable`); a
spec with another spike function runs the reference loop.

The fused backends are engines of two custom operators with a hand-derived backward
through time (`arlif.kernels.function`, docs/kernels.md): same spikes as the reference,
same gradients for x, α and β, a fraction of the memory, and traceable by `torch.compile`
without a graph break.  Each process checks
that on a small input before it uses a fused backend for a new case (`arlif.kernels.selfcheck`):
`auto` falls back to the reference loop with one warning, an explicit backend stops with a
`KernelCheckError`.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from arlif.errors import ConfigError
from arlif.kernels import selfcheck
from arlif.kernels.availability import triton_installed, triton_interpreting
from arlif.kernels.function import fused_multistep, register
from arlif.neurons.dynamics import BACKENDS, NeuronSpec, reference_multistep

FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # math is fp32 inside


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend (`reference`, `cpu` or `triton`) that runs on `device`."""
    if backend not in BACKENDS:
        raise ConfigError(f"neuron backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda" and triton_installed():
            return "triton"
        if device.type == "cpu":
            return "cpu" if _cpu_engine() is not None else "reference"
        return "reference"
    if backend == "cpu" and device.type != "cpu":
        raise ConfigError(f"neuron backend 'cpu' needs CPU tensors, got {device.type}; "
                          "set neuron.backend=auto (or triton on CUDA)")
    if backend == "triton":
        if not triton_installed():
            raise ConfigError("neuron backend 'triton' needs the triton package (pip install triton); "
                              "or set neuron.backend=auto")
        if device.type != "cuda" and not (device.type == "cpu" and triton_interpreting()):
            raise ConfigError(f"neuron backend 'triton' runs on CUDA tensors, got {device.type}; "
                              "set neuron.backend=auto (TRITON_INTERPRET=1 runs it on CPU for tests)")
    if backend == "cpu" and _cpu_engine() is None:
        raise selfcheck.KernelCheckError("neuron backend 'cpu': the fused CPU kernel could not be built (see the "
                                         "warning above); install g++ and ninja, or set neuron.backend=auto")
    return backend


def fusable(spec: NeuronSpec) -> bool:
    """Whether the fused kernels implement `spec`'s spike function (rectangle surrogate, firing at z ≥ 0)."""
    return spec.surrogate == "rectangle" and spec.fire_at_threshold


@functools.cache
def _cpu_engine():
    from arlif.kernels import cpu

    return cpu if cpu.load() is not None else None


def _triton_engine():
    from arlif.kernels import triton_neuron

    return triton_neuron


def multistep(
    x: Tensor,
    spec: NeuronSpec,
    alpha: Optional[Tensor] = None,
    beta: Optional[Tensor] = None,
    backend: str = "auto",
) -> Tensor:
    """Spikes [T, ...] in x's dtype for input currents x [T, ...]; math in fp32 (fp64 in fp64).

    `alpha`, `beta` (0-d tensors, β already tanh-squashed) are required for the adaptive
    reset and ignored otherwise; gradients flow to those that require grad.  A fused
    backend runs only once it has passed its self-check for the call's case
    (`arlif.kernels.selfcheck`).  `torch.compile` traces this function without a graph
    break: the choice of engine is made eagerly (`choose_engine`), the engine runs as a
    custom operator (`arlif.kernels.function`).
    """
    if spec.reset == "adaptive" and (alpha is None or beta is None):
        raise ValueError("the adaptive reset needs both alpha and beta")
    if spec.reset != "adaptive":
        alpha = beta = None
    if backend in ("cpu", "triton") and not fusable(spec):
        raise ConfigError(f"neuron backend {backend!r} has no kernel for the {spec.spike.describe()} spike; "
                          "set neuron.backend=auto or reference")
    if fusable(spec) and x.numel() > 0:
        engine = choose_engine(backend, x.device, x.dtype, spec, selfcheck.gradients_wanted(alpha, beta))
        if engine is not None:
            return fused_multistep(x, spec, alpha, beta, engine)
    # fp64 (and any other dtype) keeps the reference's promoted precision.
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    return reference_multistep(xf, spec, alpha, beta)[0].to(x.dtype)


@torch.compiler.assume_constant_result
def choose_engine(backend: str, device: torch.device, dtype: torch.dtype, spec: NeuronSpec,
                  grads: tuple[bool, bool]) -> Optional[str]:
    """The registered name of the fused engine that runs this case, or None for the reference loop.

    While `torch.compile` traces a caller, Dynamo calls this function eagerly and puts its
    answer into the graph as a constant: backend resolution, the first-use self-check (real
    tensors, real kernels, its one warning) all happen before the graph runs, exactly as in
    eager mode.  The case's tensors properties (device, dtype, requires_grad, grad mode) are
    guarded by the graph anyway, so a case change retraces and asks again.
    """
    chosen = resolve_backend(backend, device)
    if chosen == "reference" or dtype not in FUSED_DTYPES:
        return None
    engine = _cpu_engine() if chosen == "cpu" else _triton_engine()
    if not selfcheck.passes(chosen, engine, device, spec, dtype, grads, explicit=backend != "auto"):
        return None
    return register(engine)


__all__ = ["multistep", "choose_engine", "fusable", "resolve_backend", "triton_installed"]
