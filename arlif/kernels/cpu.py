"""CPU engine: the fused C++ kernel in cpu_neuron.cpp, compiled on first use.

torch's JIT extension loader builds it once (10-30 s with gcc) into its cache
(TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions) and later processes load the
cached library.  The build targets the SIMD level PyTorch itself dispatches to,
so the kernel's exp and sigmoid are PyTorch's to the bit.  If the build fails, `load()`
warns once and returns None and the dispatcher falls back to the reference loop.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_neuron.cpp")
RESET_CODES = {"hard": 0, "soft": 1, "adaptive": 2}
# Same ISA flags as PyTorch's own build of each CPU capability (ATen/cpu/vec).
CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
               "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}


@functools.cache
def load():
    """The compiled extension module, or None (after one warning) if it cannot be built."""
    capability = torch.backends.cpu.get_cpu_capability()
    # -ffp-contract=off: no fused multiply-add, so every rounding matches the reference.
    flags = ["-O3", "-fopenmp", "-ffp-contract=off", *CAPABILITY_FLAGS.get(capability, [])]
    try:
        # cpp_extension logs a CUDA_HOME notice at import on CPU-only machines; not ours.
        ext_logger = logging.getLogger("torch.utils.cpp_extension")
        level = ext_logger.level
        ext_logger.setLevel(logging.ERROR)
        try:
            from torch.utils import cpp_extension
        finally:
            ext_logger.setLevel(level)
        return cpp_extension.load(
            name=f"arlif_neuron_cpu_{capability.lower()}", sources=[str(SOURCE)],
            extra_cflags=flags, extra_ldflags=["-fopenmp"], verbose=False,
        )
    except Exception as exc:  # any compiler/toolchain failure: degrade, don't crash training
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(
            f"arlif: could not build the fused CPU neuron kernel ({first_line}); falling back "
            "to the slower reference loop. Install a C++ compiler (g++) and ninja to enable it.",
            RuntimeWarning, stacklevel=2,
        )
        return None


def _scalars(alpha, beta) -> tuple[float, float]:
    return (float(alpha) if alpha is not None else 1.0, float(beta) if beta is not None else 0.0)


def forward(x, spec, alpha, beta):
    """Spikes [T, N] fp32 and the saved flag bytes for a contiguous fp32 x [T, N]."""
    spikes, flags, _exact_reruns = load().forward(
        x, RESET_CODES[spec.reset], spec.decay, spec.v_threshold, spec.surrogate_width,
        *_scalars(alpha, beta),
    )
    return spikes, (flags,)


def backward(x, saved, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta):
    """grad_x [T, N] and dL/dα, dL/dβ (fp32 0-d, None unless requested)."""
    (flags,) = saved
    grad_x, g_alpha, g_beta = load().backward(
        x, flags, grad_spikes, RESET_CODES[spec.reset], spec.decay, spec.v_threshold,
        spec.surrogate_width, *_scalars(alpha, beta), grad_alpha, grad_beta,
    )
    return (grad_x, g_alpha.float() if grad_alpha else None, g_beta.float() if grad_beta else None)
