"""A fused backend proves itself against the reference loop before a process trusts it.

The first time a fused engine runs a *case* in this process, it computes spikes and the
gradients for x, α and the raw b of β = tanh(b) on a small fixed random input (T = 4, 1,100
neurons: two GPU blocks, the second ragged; 150 under Triton's CPU interpreter, two of its
blocks) and compares them with
`arlif.neurons.reference_multistep` on the same device, through both ways a network calls the
engine: the custom operators (what `torch.compile` traces; β given squashed) and the engine's
eager call (`arlif.kernels.function.eager_call`, what an eager forward runs: the C++ engine's own
autograd node or `EagerNeuron`, with β = tanh(b) computed inside as AR-LIF calls it, on steps laid
out channels_last and given a contiguous gradient, so its layout handling runs too).  A case
is what selects a compiled kernel variant: backend, device, neuron spec (reset mode and
constants), input dtype and which of α, β need gradients (without autograd, evaluation shares
the verdict of the case with both) and the engine's `variant()` where it has one (the Triton
engine's opt-in register-replay backward); it has one verdict for both ways.  An engine's
`check_steps()` gives the T of the check inputs where it has one (the Triton engine with the
register replay on: 4, and 9 for its scratch backward).  The verdict is cached, so later calls
cost one dict lookup.  The check runs in a thread of its own (`isolated`), so the caller's grad
mode, autocast, dispatch modes and saved-tensor hooks (activation checkpointing) do not reach it.

A mismatch, a compile error or a launch error makes the case fail.  With
`backend="auto"` the failure is reported once as a RuntimeWarning and the process uses
the neuron's step loop for that case from then on (compiled where available; correct,
slower); with an explicit backend it raises `KernelCheckError`, which the entry points
print as one line.  `judge` is that policy; the compiled step loop
(`arlif.kernels.compiled`) goes through it with its own check.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import torch
from torch import Tensor

from arlif.errors import ConfigError
from arlif.kernels.availability import triton_interpreting
from arlif.kernels.function import eager_call, fused_multistep, register
from arlif.spikes.dynamics import NeuronSpec, reference_multistep

CHECK_STEPS = 4
# The check's neurons per step as C, H, W (the eager call sees them channels_last): 1,100, two GPU blocks
# of 1,024, the second ragged; under Triton's CPU interpreter (tests), whose blocks are 128, 150: two of
# its blocks, the second ragged.  Neither is a multiple of a SIMD vector: the C++ kernel's last is ragged.
GPU_MAP, INTERPRETER_MAP = (11, 10, 10), (6, 5, 5)


def check_map() -> tuple[int, int, int]:
    return INTERPRETER_MAP if triton_interpreting() else GPU_MAP


def check_shape() -> tuple[int, int]:
    """[T, N] of the check input (T = 4 unless the engine's `check_steps()` says otherwise)."""
    return CHECK_STEPS, math.prod(check_map())


CHECK_ALPHA, CHECK_BETA_RAW = 1.3, 0.3  # off α's and β's initial values, so every term counts
SPIKE_TOLERANCE = 0  # spikes must be identical
FP32_TOLERANCE = 1e-4  # relative; the fused kernels agree to about 1e-7 (docs/kernels.md)

_verdicts: dict[tuple, Optional[str]] = {}  # case -> None (passed) or what went wrong


class KernelCheckError(ConfigError):
    """An explicitly chosen fast backend disagrees with the reference loop, or fails to run."""


def forget() -> None:
    """Drop every cached verdict (tests; a process that changed its kernels)."""
    _verdicts.clear()


def gradients_wanted(alpha: Optional[Tensor], beta: Optional[Tensor]) -> tuple[bool, bool]:
    """Which of α and β a call's backward will need: part of its case.  Without autograd no
    backward runs, so the call shares the verdict of the case with both."""
    if torch.is_grad_enabled():
        return (alpha is not None and alpha.requires_grad, beta is not None and beta.requires_grad)
    return alpha is not None, beta is not None


def passes(backend: str, engine, device: torch.device, spec: NeuronSpec, dtype: torch.dtype,
           grads: tuple[bool, bool], explicit: bool) -> bool:
    """True when `engine` may run this case; False (after one warning) when the caller
    should use the neuron's step loop.  Raises KernelCheckError for a failed explicit backend."""
    variant = getattr(engine, "variant", None)
    case = (backend, torch.device(device), spec, dtype, tuple(grads), variant() if variant else None)
    return judge(case, lambda: _describe(case), lambda: _check(engine, *case[1:5]), explicit,
                 "the neuron's step loop (compiled where available)")


def judge(case: tuple, describe: Callable[[], str], check: Callable[[], Optional[str]], explicit: bool,
          fallback: str) -> bool:
    """The policy every fast path shares: run `check` (None, or what went wrong) the first time
    `case` comes up and cache its verdict; on a failure warn once and return False (the caller
    runs `fallback`), or raise KernelCheckError when the backend was chosen explicitly."""
    if case not in _verdicts:
        _verdicts[case] = isolated(check)
        problem = _verdicts[case]
        if problem is not None and not explicit:
            warnings.warn(f"arlif: {describe()} {problem}; this process uses {fallback} for it instead "
                          "(correct, slower)", RuntimeWarning, stacklevel=4)
    problem = _verdicts[case]
    if problem is not None and explicit:
        raise KernelCheckError(f"{describe()} {problem}; set neuron.backend=auto (it falls back to "
                               "a slower path) or neuron.backend=reference")
    return problem is None


def isolated(check: Callable[[], Optional[str]]) -> Optional[str]:
    """`check()` run in a thread of its own, on the caller's current CUDA device: a new thread starts from
    PyTorch's defaults (grad mode on, no inference mode, autocast off, no saved-tensor hooks such as those of
    activation checkpointing or `save_on_cpu`, no Python dispatch modes), so a first call made inside any of
    them checks the kernels and not the caller's context.

    Without a CUDA device, a fake-tensor trace (torch.compile) first installs a no-op CUDA device guard; in
    torch 2.11 that guard lived in the installing thread's storage (pytorch/pytorch#178950; 2.14.1 is fixed),
    so installed by the check's short-lived thread it dangled once the thread ended, and the caller's next
    compile crashed the process (SIGSEGV).  So the caller's thread installs it first.
    """
    if not torch.cuda.is_available():
        torch._C._ensureCUDADeviceGuardSet()
    cuda_device = torch.cuda.current_device() if torch.cuda.is_initialized() else None

    def run():
        if cuda_device is not None:
            torch.cuda.set_device(cuda_device)
        return check()

    with ThreadPoolExecutor(1, thread_name_prefix="arlif-self-check") as pool:
        return pool.submit(run).result()


def _describe(case: tuple) -> str:
    backend, device, spec, dtype, (grad_alpha, grad_beta), variant = case
    wanted = [name for name, on in (("α", grad_alpha), ("β", grad_beta)) if on]
    grads = f", gradients for x{''.join(', ' + w for w in wanted)}"
    return (f"the fused {backend} neuron kernel failed its self-check against the reference loop "
            f"({spec.reset} reset, decay {spec.decay}, threshold {spec.v_threshold}, "
            f"{str(dtype).removeprefix('torch.')} on {device}{grads}{', ' + variant if variant else ''}):")


def _check(engine, device: torch.device, spec: NeuronSpec, dtype: torch.dtype,
           grads: tuple[bool, bool]) -> Optional[str]:
    """None when the engine matches the reference on the check inputs (T = 4, or the engine's
    `check_steps()`) through each of its ways (`_ways`), else what differs (the first difference)."""
    steps = getattr(engine, "check_steps", None)
    for T in steps() if steps else (CHECK_STEPS,):
        problem = _check_input(engine, device, spec, dtype, grads, (T, check_shape()[1]))
        if problem is not None:
            return problem if T == CHECK_STEPS else f"at T = {T}: {problem}"
    return None


def _check_input(engine, device: torch.device, spec: NeuronSpec, dtype: torch.dtype, grads: tuple[bool, bool],
                 shape: tuple[int, int]) -> Optional[str]:
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) * 0.9 + 0.6).to(device, dtype)
    grad = torch.randn(shape, generator=gen).to(device, dtype)
    adaptive = spec.reset == "adaptive"

    def leaves():  # x, α and the raw b (β = tanh(b)); the gradients are taken for these
        if not adaptive:
            return x.clone().requires_grad_(), None, None
        alpha = torch.tensor(CHECK_ALPHA, device=device, requires_grad=grads[0])
        beta_raw = torch.tensor(CHECK_BETA_RAW, device=device, requires_grad=grads[1])
        return x.clone().requires_grad_(), alpha, beta_raw

    ref = _spikes_and_grads(lambda xs, a, b: reference_multistep(xs.float(), spec, a, _squash(b))[0], leaves(),
                            grad)
    for prefix, run in _ways(engine, spec):
        try:
            got = _spikes_and_grads(run, leaves(), grad)
        except Exception as exc:  # a compile or launch error is a failed check, not a crash here
            return prefix + failure(exc)
        problem = difference(got, ref, dtype, ("x", "α", "β"))
        if problem is not None:
            return prefix + problem
    return None


def _ways(engine, spec: NeuronSpec):
    """(prefix of a problem's description, run(x, α, b) -> spikes) for each way a network calls `engine`:
    the custom operators, with β = tanh(b) squashed outside as `arlif.kernels.multistep` gets it, and the
    eager call as `FamilyNeuron.fused` makes it (squash for the adaptive reset: AR-LIF passes its raw b)."""
    def operators(xs, a, b):
        return fused_multistep(xs, spec, a, _squash(b), register(engine))

    def eager(xs, a, b):
        # The check's neurons per step as [T, 1, C, H, W], each step channels_last (a copy; its
        # backward returns x's gradient in x's order); `.contiguous()` hands the call a contiguous gradient,
        # not in its input's strides, so the call's own re-layout of the gradient runs as well.
        T = xs.shape[0]
        steps = xs.view(T, 1, *check_map()).permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        spikes = eager_call(engine)(steps, a, b, spec, spec.reset == "adaptive")
        return spikes.contiguous().view(T, -1)

    return ("", operators), ("in its eager call, ", eager)


def _squash(beta_raw: Optional[Tensor]) -> Optional[Tensor]:
    return None if beta_raw is None else torch.tanh(beta_raw)


def failure(exc: Exception) -> str:
    """A check's verdict on an engine that raised instead of computing."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"it failed to run ({type(exc).__name__}: {first})"


def difference(got: tuple, ref: tuple, dtype: torch.dtype, names: tuple[str, ...]) -> Optional[str]:
    """None when spikes (got[0], ref[0]) are identical and every gradient (named `names`; None where
    not computed) is within tolerance, else what differs."""
    wrong = int((got[0].float() != ref[0]).sum())
    if wrong > SPIKE_TOLERANCE:
        return f"{wrong} of {ref[0].numel()} spikes differ"
    tolerance = max(FP32_TOLERANCE, torch.finfo(dtype).eps)  # fp16/bf16 gradients: one rounding apart
    for name, mine, theirs in zip(names, got[1:], ref[1:]):
        if theirs is None:
            continue
        error = _relative_error(mine, theirs)
        if not error <= tolerance:  # also catches nan
            return f"the gradient for {name} is off by {error:.2g} relative (tolerance {tolerance:.0g})"
    return None


def _spikes_and_grads(run: Callable, leaves: tuple, grad: Tensor) -> tuple:
    """Spikes and the gradients of <spikes, grad> for the leaves x, α and b (None where not wanted)."""
    spikes = run(*leaves)
    spikes.backward(grad.to(spikes.dtype))
    return (spikes.detach(), *(None if t is None or not t.requires_grad
                               else t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves))


def _relative_error(got: Tensor, ref: Tensor) -> float:
    """max |got - ref| over max |ref| (nan when got has a nan)."""
    ref = ref.double()
    scale = max(ref.abs().max().item(), 1e-6)
    return (got.double() - ref).abs().max().item() / scale
