"""Build every Triton neuron kernel ahead of time for chosen GPUs, on a machine without one.

    python -m arlif.kernels.aot [--arch 80 90] [--dtype fp32 fp16 bf16] [--jobs N] [--code-paths-only]
                                [--register-steps 1 2 ... 8]

compiles, for each architecture (sm_XX) and input dtype, the forward kernel of each reset
mode (AR-LIF's with β given and with β = tanh(b) computed inside, SQUASH) and the backward
kernel of each reset mode, α/β-gradient combination and SQUASH, both the scratch backward
(STEPS = 0, any T) and the opt-in register-replay backward (STEPS = T, unrolled; by default
at T = 8 only, the largest unroll, whose code contains every line of the smaller ones) to
cubin (Triton front end, LLVM, then ptxas from the triton wheel).  Each build uses the engine's
own arguments, specialisations and launch options: `triton_neuron.plan_forward` and
`plan_backward` plan the launch on meta tensors, Triton's launch binder derives the
signature and the alignment attributes from it exactly as a real launch would, and
`triton.compile` builds it for an explicit `GPUTarget`.  A kernel that would not build on
such a GPU therefore fails here, in CI, rather than in a user's first run.  Prints one line
per kernel and exits 1 if any failed.  Run it with TRITON_INTERPRET unset: the
interpreter replaces the kernels' compiled form.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Optional

import torch

from arlif.cpus import cpus_per_process
from arlif.kernels.availability import triton_interpreting
from arlif.spikes.dynamics import RESETS, NeuronSpec

ARCHS = (80, 90)  # Ampere (A100), Hopper (H100/H200)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SHAPE = (4, 4096)  # T, N of the planned launches; N a multiple of 16, as in most layers
REGISTER_STEPS = (8,)  # T of the register-replay backwards built by default


@dataclass(frozen=True)
class Case:
    """One compiled kernel variant."""

    arch: int
    dtype: str
    kernel: str  # "forward" or "backward"
    reset: str
    grads: tuple[bool, bool] = (False, False)  # backward: dL/dα, dL/dβ
    squash: bool = False  # AR-LIF: β = tanh(b) inside the kernel (the eager call's variant)
    steps: int = 0  # backward: 0 for the scratch backward, T for the register replay

    def __str__(self) -> str:
        grads = "".join(name for name, on in zip(("α", "β"), self.grads) if on)
        return (f"sm_{self.arch} {self.dtype} {self.kernel} {self.reset}"
                + (f" grad {grads}" if self.kernel == "backward" and grads else "")
                + (" tanh" if self.squash else "") + (f" registers T={self.steps}" if self.steps else ""))


def cases(archs=ARCHS, dtypes=tuple(DTYPES), every_grad_subset: bool = True,
          register_steps=REGISTER_STEPS) -> list[Case]:
    """The kernel variants the engine launches, for each architecture and dtype (the register-replay
    backward at each of `register_steps`).  Without `every_grad_subset`, AR-LIF is built with β = tanh(b)
    inside and its backward with both α and β gradients only: every line of kernel code is still compiled
    (the other variants only leave code out)."""
    if every_grad_subset:
        adaptive = [(grads, squash) for grads in [(True, True), (True, False), (False, True), (False, False)]
                    for squash in (False, True)]
    else:
        adaptive = [((True, True), True)]
    out = []
    for arch in archs:
        for dtype in dtypes:
            for reset in RESETS:
                combos = adaptive if reset == "adaptive" else [((False, False), False)]
                out += [Case(arch, dtype, "forward", reset, squash=squash)
                        for squash in dict.fromkeys(squash for _, squash in combos)]
                for steps in (0, *register_steps):
                    out += [Case(arch, dtype, "backward", reset, grads, squash, steps) for grads, squash in combos]
    return out


def plan(case: Case):
    """The engine's launch for `case`, planned on meta tensors (no memory, no device)."""
    from arlif.kernels import triton_neuron

    spec = NeuronSpec(case.reset)
    x = torch.empty((case.steps or SHAPE[0], SHAPE[1]), dtype=DTYPES[case.dtype], device="meta")
    alpha = beta = torch.empty((), device="meta") if case.reset == "adaptive" else None
    launch, _, flags = triton_neuron.plan_forward(x, spec, alpha, beta, case.squash)
    if case.kernel == "backward":
        launch, *_ = triton_neuron.plan_backward(None if case.reset == "soft" else x, flags,
                                                 torch.empty_like(x), spec, alpha, beta, *case.grads,
                                                 squash=case.squash, register=case.steps > 0)
    return launch


def build(case: Case) -> bytes:
    """The cubin of `case` for its architecture (raises on a compile error)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    launch = plan(case)
    target = GPUTarget("cuda", case.arch, 32)
    backend = make_backend(target)
    kernel = launch.kernel
    # What JITFunction.run does before it compiles, with this target instead of the current device's.
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch.args, **launch.kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, options, bound, specialization, options)
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                              options=options.__dict__)
    return compiled.asm["cubin"]


def _build_one(case: Case) -> tuple[Case, float, Optional[int], Optional[str]]:
    start = time.perf_counter()
    try:
        size, error = len(build(case)), None
    except Exception as exc:  # report every failing kernel, not just the first
        lines = str(exc).strip().splitlines()
        size, error = None, f"{type(exc).__name__}: {lines[-1] if lines else ''}"
    return case, time.perf_counter() - start, size, error


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(ARCHS), help="compute capabilities, e.g. 80 90")
    parser.add_argument("--dtype", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--jobs", type=int, default=cpus_per_process(), help="parallel builds")
    parser.add_argument("--code-paths-only", action="store_true",
                        help="build AR-LIF only with β = tanh(b) inside and its backward only with both α and "
                             "β gradients (every code path, fewer variants)")
    parser.add_argument("--register-steps", type=int, nargs="*", default=list(REGISTER_STEPS),
                        choices=range(1, 9), metavar="T",
                        help="T of the register-replay backwards to build (default: 8; none: only the scratch one)")
    args = parser.parse_args(argv)
    if triton_interpreting():
        print("error: unset TRITON_INTERPRET (the interpreter does not compile kernels)", file=sys.stderr)
        return 2
    todo = cases(args.arch, args.dtype, every_grad_subset=not args.code_paths_only,
                 register_steps=tuple(args.register_steps))
    failed = 0
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for case, seconds, size, error in pool.map(_build_one, todo):
            failed += error is not None
            result = f"cubin {size / 1024:.0f} KiB" if error is None else f"FAILED {error}"
            print(f"{'ok' if error is None else 'FAIL':4} {str(case):62} {seconds:5.1f} s  {result}", flush=True)
    print(f"{len(todo) - failed} of {len(todo)} kernels built in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
