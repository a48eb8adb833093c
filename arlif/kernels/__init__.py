"""Fast multi-step neuron backends behind one call: `multistep(x, spec, alpha, beta, backend)`.

Backends (the `backend` option of every neuron and of conf/neuron/*):

- ``reference``: `arlif.neurons.reference_multistep`, the readable plain-autograd loop.
- ``cpu``: fused C++/OpenMP kernel (`arlif.kernels.cpu`), CPU tensors.
- ``triton``: fused Triton kernel (`arlif.kernels.triton_neuron`), CUDA tensors; CPU
  tensors too under ``TRITON_INTERPRET=1`` (slow; for tests).
- ``compiled``: the neuron's own `step_loop` compiled by `torch.compile`
  (`arlif.kernels.compiled`), for every neuron; CPU, or CUDA with Triton.
- ``auto``: the fastest available for the neuron and the input's device: its hand-fused
  kernel where it has one (``triton`` on CUDA when Triton is installed, ``cpu`` on CPU
  when the C++ kernel builds), else ``compiled`` where it is available, else ``reference``.

The fused kernels implement the AR-LIF family with the rectangle surrogate firing at z ≥ 0
(`fusable`); other neurons and spike functions run their step loop, compiled or not.

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
from arlif.kernels import compiled, selfcheck
from arlif.kernels.availability import constant_to_dynamo, triton_installed, triton_interpreting
from arlif.kernels.function import fused_multistep, register
from arlif.spikes.dynamics import BACKENDS, NeuronSpec, reference_multistep

FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # math is fp32 inside


def resolve_backend(backend: str, device: torch.device, fused_kernel: bool = True) -> str:
    """The concrete backend (`reference`, `cpu`, `triton` or `compiled`) that runs a neuron on `device`;
    `fused_kernel`: whether the neuron has a hand-fused kernel (AR-LIF and LIF with the rectangle spike)."""
    if backend not in BACKENDS:
        raise ConfigError(f"neuron backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if fused_kernel and device.type == "cuda" and triton_installed():
            return "triton"
        if fused_kernel and device.type == "cpu" and _cpu_engine() is not None:
            return "cpu"
        return "compiled" if compiled.available(device) else "reference"
    if backend == "compiled" and not compiled.available(device):
        raise ConfigError(f"neuron backend 'compiled' needs a CPU, or CUDA with triton installed, got {device.type}; "
                          "set neuron.backend=auto or reference")
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
    reset and ignored otherwise; gradients flow to those that require grad.  A fused engine
    runs where one serves the call (`fused_spikes`), else the reference loop.
    """
    spikes = fused_spikes(x, spec, alpha, beta, backend)
    if spikes is not None:
        return spikes
    # fp64 (and any other dtype) keeps the reference's promoted precision.
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    return reference_multistep(xf, spec, *_scalars(spec, alpha, beta))[0].to(x.dtype)


def fused_spikes(x: Tensor, spec: NeuronSpec, alpha: Optional[Tensor], beta: Optional[Tensor],
                 backend: str) -> Optional[Tensor]:
    """Spikes [T, ...] in x's dtype from a fused engine, or None where none serves this call
    (the backend resolves to no engine, the dtype is fp64, the input is empty, or the engine
    failed its self-check under `auto`).  A fused engine runs only once it has passed its
    self-check for the call's case (`arlif.kernels.selfcheck`).  `torch.compile` traces this
    function without a graph break: the choice of engine is made eagerly (`choose_engine`),
    the engine runs as a custom operator (`arlif.kernels.function`).
    """
    alpha, beta = _scalars(spec, alpha, beta)
    if backend in ("cpu", "triton") and not fusable(spec):
        raise ConfigError(f"neuron backend {backend!r} has no kernel for the {spec.spike.describe()} spike; "
                          "set neuron.backend=auto or reference")
    if not fusable(spec) or x.numel() == 0:
        return None
    engine = choose_engine(backend, x.device, x.dtype, spec.constants, selfcheck.gradients_wanted(alpha, beta))
    return None if engine is None else fused_multistep(x, spec, alpha, beta, engine)


def _scalars(spec: NeuronSpec, alpha: Optional[Tensor], beta: Optional[Tensor]):
    """(α, β) for the adaptive reset (both required), (None, None) for the others."""
    if spec.reset != "adaptive":
        return None, None
    if alpha is None or beta is None:
        raise ValueError("the adaptive reset needs both alpha and beta")
    return alpha, beta


@constant_to_dynamo
def choose_engine(backend: str, device: torch.device, dtype: torch.dtype, constants: tuple,
                  grads: tuple[bool, bool]) -> Optional[str]:
    """The registered name of the fused engine that runs this case, or None for the reference loop;
    `constants` is the neuron's `NeuronSpec.constants` (plain values: torch 2.11's Dynamo cannot pass
    this function a frozen dataclass).

    While `torch.compile` traces a caller, Dynamo calls this function eagerly and puts its
    answer into the graph as a constant: backend resolution, the first-use self-check (real
    tensors, real kernels, its one warning) all happen before the graph runs, exactly as in
    eager mode.  The case's tensors properties (device, dtype, requires_grad, grad mode) are
    guarded by the graph anyway, so a case change retraces and asks again.
    """
    chosen = resolve_backend(backend, device)
    if chosen not in ("cpu", "triton") or dtype not in FUSED_DTYPES:
        return None
    engine = _cpu_engine() if chosen == "cpu" else _triton_engine()
    spec = NeuronSpec(*constants)
    if not selfcheck.passes(chosen, engine, device, spec, dtype, grads, explicit=backend != "auto"):
        return None
    return register(engine)


__all__ = ["multistep", "fused_spikes", "choose_engine", "fusable", "resolve_backend", "triton_installed"]
