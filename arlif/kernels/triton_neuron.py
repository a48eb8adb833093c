"""CUDA engine: Triton kernels, one program per block of neurons looping over T inside.

Inputs and spikes keep the caller's dtype (fp32, fp16 or bf16); all math is fp32.  The
forward saves one flag byte per neuron-step (bit 0 spike, bit 1 surrogate window).  The
backward first replays the recurrence forward in time, writing h[t] (hard reset) or r[t]
(AR-LIF) to an fp32 scratch (the gradient buffer itself for fp32 input), then runs the
reverse pass.  dL/dα and dL/dβ are reduced per program in registers and written to one
slot per program, then summed by torch: no atomics.

Bit-exactness with the reference on CUDA: tanh and exp are libdevice's (the same CUDA
math library functions PyTorch's kernels call), the sigmoid's division is IEEE
round-to-nearest as in PyTorch, and fp-contraction is off so a·b + c is rounded twice
as in the reference's separate kernels.  Under TRITON_INTERPRET=1 (CPU, for tests)
libdevice does not exist and NumPy's exp stands in, so results there may differ from
the reference in the last bit of a transcendental.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from arlif.kernels.availability import triton_interpreting
from arlif.spikes.dynamics import RESET_CODES

NAME = "triton"  # the engine's name for the custom operators (arlif.kernels.function)
IO_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # read and written as they are


@triton.jit
def _exp(x, EXACT: tl.constexpr):
    if EXACT:
        return libdevice.exp(x)
    else:
        return tl.exp(x)


@triton.jit
def _sigmoid(x, EXACT: tl.constexpr):
    # PyTorch: 1 / (1 + exp(-x)) with IEEE division.
    return tl.math.div_rn(1.0, 1.0 + _exp(-x, EXACT))


@triton.jit
def _tanh(x, EXACT: tl.constexpr):
    if EXACT:
        return libdevice.tanh(x)
    else:
        e = _exp(-2.0 * tl.abs(x), EXACT)
        t = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0, -t, t)


@triton.jit
def _forward_kernel(
    x_ptr, spikes_ptr, flags_ptr, alpha_ptr, beta_ptr,
    T, N, decay, v_threshold, half_width,
    RESET: tl.constexpr, BLOCK: tl.constexpr, EXACT: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    row = tl.zeros([BLOCK], tl.int64) + N  # int64, so that t * row cannot overflow
    u = tl.zeros([BLOCK], tl.float32)
    r = tl.zeros([BLOCK], tl.float32)
    if RESET == 2:
        alpha = tl.load(alpha_ptr)
        beta = tl.load(beta_ptr)
    for t in range(T):
        o = t * row + offs
        i = tl.load(x_ptr + o, mask=mask, other=0.0).to(tl.float32)
        h = decay * u + i
        if RESET == 2:
            vth = beta * _tanh(i, EXACT) + v_threshold
        else:
            vth = v_threshold
        z = h - vth
        s = (z >= 0).to(tl.float32)
        win = (tl.abs(z) <= half_width).to(tl.float32)
        if RESET == 0:
            u = h * (1.0 - s)
        elif RESET == 1:
            u = h - s * vth
        else:
            g = _sigmoid(alpha * i, EXACT)
            r = tl.where(r >= 0, g * r, (1.0 - g) * r) + (2.0 * s - 1.0) * _sigmoid(i, EXACT)
            u = h - s * (vth + _sigmoid(r, EXACT))
        tl.store(spikes_ptr + o, s.to(spikes_ptr.dtype.element_ty), mask=mask)
        tl.store(flags_ptr + o, (s + 2.0 * win).to(tl.uint8), mask=mask)


@triton.jit
def _backward_kernel(
    x_ptr, flags_ptr, grad_s_ptr, grad_x_ptr, scratch_ptr, alpha_ptr, beta_ptr,
    part_alpha_ptr, part_beta_ptr,
    T, N, decay, v_threshold, width,
    RESET: tl.constexpr, GRAD_ALPHA: tl.constexpr, GRAD_BETA: tl.constexpr,
    BLOCK: tl.constexpr, EXACT: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    row = tl.zeros([BLOCK], tl.int64) + N  # int64, so that t * row cannot overflow
    if RESET == 2:
        alpha = tl.load(alpha_ptr)
        beta = tl.load(beta_ptr)
    # Pass 1, forward in time: rebuild h[t] (hard reset) or r[t] (AR-LIF) into scratch,
    # which may be grad_x itself: pass 2 reads step t's slot before it overwrites it.
    u = tl.zeros([BLOCK], tl.float32)
    r = tl.zeros([BLOCK], tl.float32)
    if RESET != 1:
        for t in range(T):
            o = t * row + offs
            i = tl.load(x_ptr + o, mask=mask, other=0.0).to(tl.float32)
            s = (tl.load(flags_ptr + o, mask=mask, other=0) & 1).to(tl.float32)
            if RESET == 0:
                h = decay * u + i
                tl.store(scratch_ptr + o, h, mask=mask)
                u = h * (1.0 - s)
            else:
                g = _sigmoid(alpha * i, EXACT)
                r = tl.where(r >= 0, g * r, (1.0 - g) * r) + (2.0 * s - 1.0) * _sigmoid(i, EXACT)
                tl.store(scratch_ptr + o, r, mask=mask)
        tl.debug_barrier()
    # Pass 2, backward in time.  gu = dL/du[t], gr = dL/dr[t] from step t + 1.
    gu = tl.zeros([BLOCK], tl.float32)
    gr = tl.zeros([BLOCK], tl.float32)
    acc_alpha = tl.zeros([BLOCK], tl.float32)
    acc_beta = tl.zeros([BLOCK], tl.float32)
    r_now = r
    for k in range(T):
        t = T - 1 - k
        o = t * row + offs
        flag = tl.load(flags_ptr + o, mask=mask, other=0)
        s = (flag & 1).to(tl.float32)
        win = ((flag >> 1) & 1).to(tl.float32)
        grad_s = tl.load(grad_s_ptr + o, mask=mask, other=0.0).to(tl.float32)
        gi = tl.zeros([BLOCK], tl.float32)
        gvth = tl.zeros([BLOCK], tl.float32)
        if RESET == 0:
            gh = gu * (1.0 - s)
            grad_s = grad_s - gu * tl.load(scratch_ptr + o, mask=mask, other=0.0)
        elif RESET == 1:
            gh = gu
            grad_s = grad_s - gu * v_threshold
        else:
            i = tl.load(x_ptr + o, mask=mask, other=0.0).to(tl.float32)
            a = _tanh(i, EXACT)
            vth = beta * a + v_threshold
            r_prev = tl.load(scratch_ptr + o - row, mask=mask & (t > 0), other=0.0)
            q = _sigmoid(i, EXACT)
            g = _sigmoid(alpha * i, EXACT)
            p = _sigmoid(r_now, EXACT)
            su = s * gu
            gr_t = gr - su * p * (1.0 - p)  # dL/dr[t], all paths
            grad_s = grad_s - gu * (vth + p) + 2.0 * q * gr_t
            gvth = -su
            gi = (2.0 * s - 1.0) * gr_t * q * (1.0 - q)
            nonneg = r_prev >= 0
            dc = r_prev * gr_t  # dL/dc with R[t] = c·r[t-1]
            dpre = tl.where(nonneg, dc, -dc) * g * (1.0 - g)  # dL/d(α·i)
            gi += dpre * alpha
            if GRAD_ALPHA:
                acc_alpha += tl.where(mask, dpre * i, 0.0)
            gr = tl.where(nonneg, g * gr_t, (1.0 - g) * gr_t)
            gh = gu
            r_now = r_prev
        gz = grad_s * win / width
        gh += gz
        gvth -= gz
        if RESET == 2:
            gi += gvth * beta * (1.0 - a * a)
            if GRAD_BETA:
                acc_beta += tl.where(mask, gvth * a, 0.0)
        tl.store(grad_x_ptr + o, (gi + gh).to(grad_x_ptr.dtype.element_ty), mask=mask)
        gu = decay * gh
    if GRAD_ALPHA:
        tl.store(part_alpha_ptr + pid, tl.sum(acc_alpha, axis=0))
    if GRAD_BETA:
        tl.store(part_beta_ptr + pid, tl.sum(acc_beta, axis=0))


# Specialisations and compile options of every launch on a GPU; the ahead-of-time build
# (arlif.kernels.aot) compiles with the same.  The interpreter runs smaller blocks, and
# without libdevice.
GPU_OPTIONS = {"BLOCK": 1024, "EXACT": True, "num_warps": 4, "enable_fp_fusion": False}
INTERPRETER_OPTIONS = {"BLOCK": 128, "EXACT": False}


def launch_options() -> dict:
    return dict(INTERPRETER_OPTIONS if triton_interpreting() else GPU_OPTIONS)


@dataclass(frozen=True)
class Launch:
    """One planned kernel launch: `kernel[grid](*args, **kwargs)` (kwargs: constexprs and options)."""

    kernel: Any
    grid: tuple
    args: tuple
    kwargs: dict

    def __call__(self) -> None:
        self.kernel[self.grid](*self.args, **self.kwargs)


def _scalar_ptr(value, like):
    return value.detach().reshape(()) if value is not None else like.new_zeros((), dtype=torch.float32)


def plan_forward(x, spec, alpha, beta):
    """The forward launch for a contiguous x [T, N] and its outputs: (launch, spikes, flags)."""
    T, N = x.shape
    opts = launch_options()
    spikes = torch.empty_like(x)
    flags = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    args = (x, spikes, flags, _scalar_ptr(alpha, x), _scalar_ptr(beta, x),
            T, N, spec.decay, spec.v_threshold, spec.surrogate_width / 2)
    launch = Launch(_forward_kernel, (triton.cdiv(N, opts["BLOCK"]),), args,
                    {"RESET": RESET_CODES[spec.reset], **opts})
    return launch, spikes, flags


def plan_backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta):
    """The backward launch and its outputs: (launch, grad_x, per-program [dL/dα, dL/dβ] as one [2, programs])."""
    T, N = grad_spikes.shape
    opts = launch_options()
    grid = (triton.cdiv(N, opts["BLOCK"]),)
    grad_x = torch.empty_like(grad_spikes)  # spikes, hence their gradient, have x's dtype
    # fp32 scratch for the rebuilt state: grad_x itself when it is fp32.
    if spec.reset == "soft" or grad_x.dtype == torch.float32:
        scratch = grad_x
    else:
        scratch = torch.empty(grad_x.shape, dtype=torch.float32, device=grad_x.device)
    # One partials buffer, [dL/dα, dL/dβ] per program: every program writes its slots (no zero-fill).
    partials = torch.empty(2, grid[0] if grad_alpha or grad_beta else 1, dtype=torch.float32, device=grad_x.device)
    args = (flags if x is None else x, flags, grad_spikes, grad_x, scratch,
            _scalar_ptr(alpha, grad_x), _scalar_ptr(beta, grad_x),
            partials[0], partials[1], T, N, spec.decay, spec.v_threshold, spec.surrogate_width)
    launch = Launch(_backward_kernel, grid, args,
                    {"RESET": RESET_CODES[spec.reset], "GRAD_ALPHA": bool(grad_alpha),
                     "GRAD_BETA": bool(grad_beta), **opts})
    return launch, grad_x, partials


def forward(x, spec, alpha, beta):
    """Spikes [T, N] in x's dtype and the saved flag bytes for a contiguous x [T, N]."""
    launch, spikes, flags = plan_forward(x, spec, alpha, beta)
    launch()
    return spikes, flags


def backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta):
    """grad_x [T, N] in x's dtype and dL/dα, dL/dβ (fp32 0-d, None unless requested).

    x is None for the soft reset (its backward reads only the flags)."""
    launch, grad_x, partials = plan_backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta)
    launch()
    return (grad_x, partials[0].sum() if grad_alpha else None, partials[1].sum() if grad_beta else None)
