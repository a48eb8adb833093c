"""CPU engine: the fused C++ kernel in cpu_neuron.cpp, compiled on first use.

torch's JIT extension loader builds it (about a minute with gcc) into the extension cache
(TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions) and later processes load the
built library.  The build's name is keyed by everything that changes the binary or the
commands that build it: the source text, the compiler and its flags, the torch version, the
Python ABI and the header and library folders the commands name (torch's and Python's, which
locate the torch installation in use).  So every checkout and environment on a machine finds
its own build and rebuilds only when one of those changes: environments that share one torch
installation share one build, and an environment with a torch of its own gets a build of its
own instead of recompiling another's (ninja would rebuild on the changed command line).  The
source is compiled from a copy inside the build folder, so that a build does not depend on
where the checkout lies.  The build targets the SIMD level PyTorch itself dispatches to, so
the kernel's exp and sigmoid are PyTorch's to the bit.
If the build fails, `load()` warns once and returns None (see arlif.kernels.resolve_backend).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sysconfig
import time
import warnings
from pathlib import Path

import torch

from arlif.spikes.dynamics import RESET_CODES

SOURCE = Path(__file__).with_name("cpu_neuron.cpp")
NAME = "cpu"  # the engine's name for the custom operators (arlif.kernels.function)
IO_DTYPES = (torch.float32,)  # fp16 and bf16 inputs are converted to fp32 around the kernel
# Same ISA flags as PyTorch's own build of each CPU capability (ATen/cpu/vec).
CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
               "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}
LDFLAGS = ("-fopenmp",)
BUILD_TIME = "a minute, longer on a busy machine"  # gcc 12, 2 cores: 43 s and 47 s measured, 145 s under load

log = logging.getLogger(__name__)


def compile_flags() -> list[str]:
    """-ffp-contract=off: no fused multiply-add, so every rounding matches the reference."""
    capability = torch.backends.cpu.get_cpu_capability()
    return ["-O3", "-fopenmp", "-ffp-contract=off", *CAPABILITY_FLAGS.get(capability, [])]


def toolchain_paths() -> list[str]:
    """The folders torch's build commands name: torch's headers and libraries, Python's headers
    (as torch.utils.cpp_extension passes them, unresolved: they are what ninja compares)."""
    ext = _cpp_extension()
    return [*ext.include_paths("cpu"), *ext.library_paths("cpu"), sysconfig.get_path("include", scheme="posix_prefix")]


def build_name() -> str:
    """The extension's name: its SIMD level and a hash of what the binary and its build commands depend on."""
    key = hashlib.sha256(SOURCE.read_bytes())
    for part in (*compile_flags(), *LDFLAGS, os.environ.get("CXX", "c++"), torch.__version__,
                 sysconfig.get_config_var("EXT_SUFFIX"), *toolchain_paths()):
        key.update(b"\0" + str(part).encode())
    return f"arlif_neuron_cpu_{torch.backends.cpu.get_cpu_capability().lower()}_{key.hexdigest()[:16]}"


def build_dir() -> Path:
    """This build's folder in torch's extension cache."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or _cpp_extension().get_default_build_root()
    return Path(root) / build_name()


def _cpp_extension():
    """torch.utils.cpp_extension, imported without its CUDA_HOME notice on CPU-only machines."""
    ext_logger = logging.getLogger("torch.utils.cpp_extension")
    level = ext_logger.level
    ext_logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        ext_logger.setLevel(level)
    return cpp_extension


def _stage_source(folder: Path) -> Path:
    """The kernel source copied into the build folder (rewritten only when missing or different,
    so that ninja sees an unchanged input and does not rebuild)."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / SOURCE.name
    text = SOURCE.read_bytes()
    if not staged.exists() or staged.read_bytes() != text:
        partial = folder / f".{SOURCE.name}.{os.getpid()}"
        partial.write_bytes(text)
        os.replace(partial, staged)
    return staged


@functools.cache
def load():
    """The compiled extension module, or None (after one warning) if it cannot be built."""
    name, folder = build_name(), build_dir()
    fresh = not (folder / f"{name}.so").exists()
    if fresh:
        log.info("arlif: building the fused CPU neuron kernel %s (C++, once per machine and environment; "
                 "takes about %s)", folder, BUILD_TIME)
    start = time.perf_counter()
    try:
        module = _cpp_extension().load(
            name=name, sources=[str(_stage_source(folder))], build_directory=str(folder),
            extra_cflags=compile_flags(), extra_ldflags=list(LDFLAGS), verbose=False,
        )
    except Exception as exc:  # any compiler/toolchain failure: degrade, don't crash training
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(
            f"arlif: could not build the fused CPU neuron kernel ({first_line}); falling back "
            "to the slower reference loop. Install a C++ compiler (g++) and ninja to enable it.",
            RuntimeWarning, stacklevel=2,
        )
        return None
    if fresh:
        log.info("arlif: built the fused CPU neuron kernel in %.0f s", time.perf_counter() - start)
    return module


def _scalars(alpha, beta) -> tuple[float, float]:
    return (float(alpha) if alpha is not None else 1.0, float(beta) if beta is not None else 0.0)


def forward(x, spec, alpha, beta, squash=False):
    """Spikes [T, N] fp32 and the flag bytes kept for backward, for a contiguous fp32 x [T, N]; β = tanh(beta)
    when `squash` (the eager node `eager` does this in C++; here for callers of the engine interface)."""
    if squash and beta is not None:
        beta = torch.tanh(beta)
    spikes, flags, _exact_reruns = load().forward(
        x, RESET_CODES[spec.reset], spec.decay, spec.v_threshold, spec.surrogate_width,
        *_scalars(alpha, beta),
    )
    return spikes, flags


def eager(x, alpha, beta, spec, squash):
    """Spikes for x [T, ...] (any float dtype and dense layout, kept) through one C++ autograd node: the
    eager call, with no Python in its backward; β = tanh(beta) when `squash`."""
    return load().eager(x, alpha, beta, RESET_CODES[spec.reset], spec.decay, spec.v_threshold,
                        spec.surrogate_width, squash)


def backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta, squash=False):
    """grad_x [T, N] and dL/dα, dL/dβ (fp32 0-d, None unless requested; dL/db when `squash`)."""
    if squash and beta is not None:
        beta = torch.tanh(beta)
    grad_x, g_alpha, g_beta = load().backward(
        x, flags, grad_spikes, RESET_CODES[spec.reset], spec.decay, spec.v_threshold,
        spec.surrogate_width, *_scalars(alpha, beta), grad_alpha, grad_beta,
    )
    if squash and grad_beta:
        g_beta = g_beta.float() * (1 - beta * beta)  # tanh's derivative, as autograd's tanh backward
    return (grad_x, g_alpha.float() if grad_alpha else None, g_beta.float() if grad_beta else None)
