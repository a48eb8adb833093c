"""CUDA engine: Triton kernels, one program per block of neurons looping over T inside.

Inputs and spikes keep the caller's dtype (fp32, fp16 or bf16); all math is fp32.  The
forward saves one flag byte per neuron-step (bit 0 spike, bit 1 surrogate window).  The
backward first replays the recurrence forward in time, writing h[t] (hard reset) or r[t]
(AR-LIF) to an fp32 scratch (the gradient buffer itself for fp32 input), then runs the
reverse pass; with the opt-in register replay (ARLIF_TRITON_REGISTER_REPLAY=1, T ≤ 8) the
replayed state stays in registers instead, with x and the flags read once.  dL/dα and dL/dβ
are reduced per program in registers and written to one slot per program, then summed by
torch: no atomics.  With SQUASH (the eager call) the kernels get AR-LIF's raw parameter b,
compute β = tanh(b) and return dL/db.

Bit-exactness with the reference on CUDA: tanh and exp are libdevice's (the same CUDA
math library functions PyTorch's kernels call), the sigmoid's division is IEEE
round-to-nearest as in PyTorch, and fp-contraction is off so a·b + c is rounded twice
as in the reference's separate kernels.  Only the register replay's reverse pass, which
decides nothing, uses fast math (docs/kernels.md).  Under TRITON_INTERPRET=1 (CPU, for tests)
libdevice does not exist and NumPy's exp stands in, so results there may differ from
the reference in the last bit of a transcendental.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from arlif.kernels.availability import triton_interpreting
from arlif.kernels.function import EagerNeuron
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
    if EXACT:  # PyTorch: 1 / (1 + exp(-x)) with IEEE division
        return tl.math.div_rn(1.0, 1.0 + _exp(-x, EXACT))
    else:  # fast: approximate exp and division (the interpreter computes both exactly in NumPy)
        return tl.math.fdiv(1.0, 1.0 + _exp(-x, EXACT))


@triton.jit
def _tanh(x, EXACT: tl.constexpr):
    if EXACT:
        return libdevice.tanh(x)
    else:
        e = _exp(-2.0 * tl.abs(x), EXACT)
        t = tl.math.fdiv(1.0 - e, 1.0 + e)
        return tl.where(x < 0, -t, t)


@triton.jit
def _scalars(alpha_ptr, beta_ptr, SQUASH: tl.constexpr, EXACT: tl.constexpr):
    """α and β; with SQUASH the pointer holds the raw parameter b and β = tanh(b) (libdevice's on a GPU:
    torch.tanh's value on CUDA to the bit)."""
    alpha = tl.load(alpha_ptr)
    beta = tl.load(beta_ptr)
    if SQUASH:
        beta = _tanh(beta, EXACT)
    return alpha, beta


@triton.jit
def _memory_step(r, i, s, alpha, EXACT: tl.constexpr):
    """AR-LIF's memory r[t] from r[t-1]: the forward's operations, which the backward's replay repeats
    with the same EXACT, so that the replayed r (and its sign, the leak branch) is the forward's to the bit."""
    g = _sigmoid(alpha * i, EXACT)
    return tl.where(r >= 0, g * r, (1.0 - g) * r) + (2.0 * s - 1.0) * _sigmoid(i, EXACT)


@triton.jit
def _forward_kernel(
    x_ptr, spikes_ptr, flags_ptr, alpha_ptr, beta_ptr,
    T, N, decay, v_threshold, half_width,
    RESET: tl.constexpr, SQUASH: tl.constexpr, BLOCK: tl.constexpr, EXACT: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    row = tl.zeros([BLOCK], tl.int64) + N  # int64, so that t * row cannot overflow
    u = tl.zeros([BLOCK], tl.float32)
    r = tl.zeros([BLOCK], tl.float32)
    if RESET == 2:
        alpha, beta = _scalars(alpha_ptr, beta_ptr, SQUASH, EXACT)
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
            r = _memory_step(r, i, s, alpha, EXACT)
            u = h - s * (vth + _sigmoid(r, EXACT))
        tl.store(spikes_ptr + o, s.to(spikes_ptr.dtype.element_ty), mask=mask)
        tl.store(flags_ptr + o, (s + 2.0 * win).to(tl.uint8), mask=mask)


@triton.jit
def _replay_step(u, r, i, s, alpha, decay, RESET: tl.constexpr, EXACT: tl.constexpr):
    """One step of the backward's replay, forward in time: (u, r, kept), where kept is what the reverse
    pass needs of step t: h[t] (hard reset) or r[t] (AR-LIF)."""
    if RESET == 0:
        kept = decay * u + i
        u = kept * (1.0 - s)
    else:
        r = _memory_step(r, i, s, alpha, EXACT)
        kept = r
    return u, r, kept


@triton.jit
def _reverse_step(gu, gr, acc_alpha, acc_beta, flag, grad_s, i, kept, r_prev, alpha, beta, v_threshold, width,
                  mask, RESET: tl.constexpr, GRAD_ALPHA: tl.constexpr, GRAD_BETA: tl.constexpr,
                  EXACT: tl.constexpr):
    """One step t of the reverse pass.  gu = dL/du[t], gr = dL/dr[t] from step t + 1; kept: h[t] (hard
    reset) or r[t] (AR-LIF) from the replay, r_prev = r[t-1] (0 at t = 0); i = x[t] (AR-LIF only).
    Returns (dL/dx[t], dL/dh[t], dL/dr[t-1], acc_alpha, acc_beta).  No spike decision is made here
    (s and the window come from the forward's flags), so EXACT may be False (fast math) on a GPU."""
    s = (flag & 1).to(tl.float32)
    win = ((flag >> 1) & 1).to(tl.float32)
    if RESET == 0:
        gh = gu * (1.0 - s)
        grad_s = grad_s - gu * kept
    elif RESET == 1:
        gh = gu
        grad_s = grad_s - gu * v_threshold
    else:
        a = _tanh(i, EXACT)
        vth = beta * a + v_threshold
        q = _sigmoid(i, EXACT)
        g = _sigmoid(alpha * i, EXACT)
        p = _sigmoid(kept, EXACT)
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
    gz = grad_s * win / width
    gh += gz
    gx = gh
    if RESET == 2:
        gvth -= gz
        gi += gvth * beta * (1.0 - a * a)
        if GRAD_BETA:
            acc_beta += tl.where(mask, gvth * a, 0.0)
        gx = gi + gh
    return gx, gh, gr, acc_alpha, acc_beta


@triton.jit
def _backward_kernel(
    x_ptr, flags_ptr, grad_s_ptr, grad_x_ptr, scratch_ptr, alpha_ptr, beta_ptr,
    part_alpha_ptr, part_beta_ptr,
    T, N, decay, v_threshold, width,
    RESET: tl.constexpr, GRAD_ALPHA: tl.constexpr, GRAD_BETA: tl.constexpr, SQUASH: tl.constexpr,
    STEPS: tl.constexpr, BLOCK: tl.constexpr, EXACT: tl.constexpr,
):
    """STEPS = 0: any T; the replay goes through an fp32 scratch in memory.  STEPS = T (1 to 8): the
    register replay, T unrolled at compile time: x and the flags are read once, the replayed state stays
    in registers, and the reverse pass computes with fast math (EXACT False; docs/kernels.md)."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    row = tl.zeros([BLOCK], tl.int64) + N  # int64, so that t * row cannot overflow
    alpha = 0.0
    beta = 0.0
    if RESET == 2:
        alpha, beta = _scalars(alpha_ptr, beta_ptr, SQUASH, EXACT)
    u = tl.zeros([BLOCK], tl.float32)
    r = tl.zeros([BLOCK], tl.float32)
    gu = tl.zeros([BLOCK], tl.float32)  # dL/du[t] from step t + 1
    gr = tl.zeros([BLOCK], tl.float32)  # dL/dr[t] from step t + 1
    acc_alpha = tl.zeros([BLOCK], tl.float32)
    acc_beta = tl.zeros([BLOCK], tl.float32)
    if STEPS == 0:
        # Pass 1, forward in time: rebuild h[t] (hard reset) or r[t] (AR-LIF) into scratch,
        # which may be grad_x itself: pass 2 reads step t's slot before it overwrites it.
        if RESET != 1:
            for t in range(T):
                o = t * row + offs
                i = tl.load(x_ptr + o, mask=mask, other=0.0).to(tl.float32)
                s = (tl.load(flags_ptr + o, mask=mask, other=0) & 1).to(tl.float32)
                u, r, kept = _replay_step(u, r, i, s, alpha, decay, RESET, EXACT)
                tl.store(scratch_ptr + o, kept, mask=mask)
            tl.debug_barrier()
        # Pass 2, backward in time.
        r_now = r
        for k in range(T):
            t = T - 1 - k
            o = t * row + offs
            flag = tl.load(flags_ptr + o, mask=mask, other=0)
            grad_s = tl.load(grad_s_ptr + o, mask=mask, other=0.0).to(tl.float32)
            kept = r_now
            i = r_now
            r_prev = r_now
            if RESET == 0:
                kept = tl.load(scratch_ptr + o, mask=mask, other=0.0)
            elif RESET == 2:
                i = tl.load(x_ptr + o, mask=mask, other=0.0).to(tl.float32)
                r_prev = tl.load(scratch_ptr + o - row, mask=mask & (t > 0), other=0.0)
            gx, gh, gr, acc_alpha, acc_beta = _reverse_step(
                gu, gr, acc_alpha, acc_beta, flag, grad_s, i, kept, r_prev, alpha, beta, v_threshold, width, mask,
                RESET, GRAD_ALPHA, GRAD_BETA, EXACT)
            tl.store(grad_x_ptr + o, gx.to(grad_x_ptr.dtype.element_ty), mask=mask)
            gu = decay * gh
            r_now = r_prev
    else:
        # Register replay.  Each step's values are separate values of a tuple, indexed by a compile-time
        # step number: static_range unrolls both loops, so the compiler keeps them in registers with no
        # select or reduction to pick step t (a [T, BLOCK] block with a masked sum over T per step would
        # cost T operations per extraction, and the layout Triton chooses for it may spread the T rows
        # over warps, so that the sum goes through shared memory).
        xs = ()
        fs = ()
        kepts = ()
        for t in tl.static_range(STEPS):
            o = t * row + offs
            flag = tl.load(flags_ptr + o, mask=mask, other=0)
            fs = fs + (flag,)
            if RESET != 1:
                i = tl.load(x_ptr + o, mask=mask, other=0.0).to(tl.float32)
                xs = xs + (i,)
                u, r, kept = _replay_step(u, r, i, (flag & 1).to(tl.float32), alpha, decay, RESET, EXACT)
                kepts = kepts + (kept,)
        for t in tl.static_range(STEPS - 1, -1, -1):
            o = t * row + offs
            grad_s = tl.load(grad_s_ptr + o, mask=mask, other=0.0).to(tl.float32)
            kept = gu
            i = gu
            r_prev = tl.zeros([BLOCK], tl.float32)
            if RESET != 1:
                kept = kepts[t]
                i = xs[t]
            if RESET == 2:
                if t > 0:
                    r_prev = kepts[t - 1]
            gx, gh, gr, acc_alpha, acc_beta = _reverse_step(
                gu, gr, acc_alpha, acc_beta, fs[t], grad_s, i, kept, r_prev, alpha, beta, v_threshold, width, mask,
                RESET, GRAD_ALPHA, GRAD_BETA, False)
            tl.store(grad_x_ptr + o, gx.to(grad_x_ptr.dtype.element_ty), mask=mask)
            gu = decay * gh
    if GRAD_ALPHA:
        tl.store(part_alpha_ptr + pid, tl.sum(acc_alpha, axis=0))
    if GRAD_BETA:
        part_beta = tl.sum(acc_beta, axis=0)
        if SQUASH:  # dL/db = dL/dβ·(1 − β²), as autograd's tanh backward
            part_beta = part_beta * (1.0 - beta * beta)
        tl.store(part_beta_ptr + pid, part_beta)


# Specialisations and compile options of every launch on a GPU; the ahead-of-time build
# (arlif.kernels.aot) compiles with the same.  The interpreter runs smaller blocks, and
# without libdevice.
GPU_OPTIONS = {"BLOCK": 1024, "EXACT": True, "num_warps": 4, "enable_fp_fusion": False}
INTERPRETER_OPTIONS = {"BLOCK": 128, "EXACT": False}
# The register-replay backward keeps x, the flags and the replayed state of every step per neuron in
# registers (3T values), so a GPU program takes one neuron per thread (128 with 4 warps): ptxas (sm_90)
# gives it 128-140 registers at T = 8 (48-55 at T = 4) and no spills; with 256 it took 234 at T = 8.
REGISTER_GPU_OPTIONS = {**GPU_OPTIONS, "BLOCK": 128}

# The register-replay backward (STEPS = T) for T ≤ REGISTER_MAX_T: opt-in until a GPU has measured it faster
# than the scratch backward (scripts/gpu_check.sh).  ARLIF_TRITON_REGISTER_REPLAY=1 turns it on; read once,
# at import (tests set this attribute).  The self-check covers whichever backward is on (`variant`).
REGISTER_MAX_T = 8
REGISTER_REPLAY = os.environ.get("ARLIF_TRITON_REGISTER_REPLAY", "0") == "1"


def launch_options() -> dict:
    return dict(INTERPRETER_OPTIONS if triton_interpreting() else GPU_OPTIONS)


def register_replay(T: int) -> bool:
    """Whether the backward of T steps takes the register replay (the option is on and T ≤ REGISTER_MAX_T)."""
    return REGISTER_REPLAY and 1 <= T <= REGISTER_MAX_T


def variant() -> str:
    """The backward this process launches, part of the self-check's case (arlif.kernels.selfcheck)."""
    return f"register-replay backward for T <= {REGISTER_MAX_T}" if REGISTER_REPLAY else "scratch backward"


def check_steps() -> tuple[int, ...]:
    """The T of the self-check's inputs: with the register replay on, also one T past it (the scratch backward)."""
    return (4, REGISTER_MAX_T + 1) if REGISTER_REPLAY else (4,)


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


def plan_forward(x, spec, alpha, beta, squash=False):
    """The forward launch for a contiguous x [T, N] and its outputs: (launch, spikes, flags).
    With `squash`, beta is the raw parameter b and the kernel uses β = tanh(b)."""
    T, N = x.shape
    opts = launch_options()
    spikes = torch.empty_like(x)
    flags = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    args = (x, spikes, flags, _scalar_ptr(alpha, x), _scalar_ptr(beta, x),
            T, N, spec.decay, spec.v_threshold, spec.surrogate_width / 2)
    launch = Launch(_forward_kernel, (triton.cdiv(N, opts["BLOCK"]),), args,
                    {"RESET": RESET_CODES[spec.reset], "SQUASH": _squashes(spec, squash), **opts})
    return launch, spikes, flags


def _squashes(spec, squash) -> bool:
    return bool(squash) and spec.reset == "adaptive"  # LIF has no β


def plan_backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta, squash=False, register=None):
    """The backward launch and its outputs: (launch, grad_x, per-program [dL/dα, dL/dβ] as one [2, programs]).

    `register` (default: `register_replay(T)`) picks the register-replay backward (STEPS = T, no scratch)
    over the scratch backward (STEPS = 0).  With `squash`, beta is the raw parameter b and the β partials
    are dL/db."""
    T, N = grad_spikes.shape
    register = register_replay(T) if register is None else register
    opts = launch_options()
    if register and not triton_interpreting():
        opts = dict(REGISTER_GPU_OPTIONS)
    grid = (triton.cdiv(N, opts["BLOCK"]),)
    grad_x = torch.empty_like(grad_spikes)  # spikes, hence their gradient, have x's dtype
    # fp32 scratch for the rebuilt state: grad_x itself when it is fp32; none for the register replay.
    if register:
        scratch = None
    elif spec.reset == "soft" or grad_x.dtype == torch.float32:
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
                     "GRAD_BETA": bool(grad_beta), "SQUASH": _squashes(spec, squash),
                     "STEPS": T if register else 0, **opts})
    return launch, grad_x, partials


def forward(x, spec, alpha, beta, squash=False):
    """Spikes [T, N] in x's dtype and the saved flag bytes for a contiguous x [T, N] (β = tanh(beta) when
    `squash`)."""
    launch, spikes, flags = plan_forward(x, spec, alpha, beta, squash)
    launch()
    return spikes, flags


def backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta, squash=False):
    """grad_x [T, N] in x's dtype and dL/dα, dL/dβ (fp32 0-d, None unless requested; dL/db for the raw
    beta when `squash`).

    x is None for the soft reset (its backward reads only the flags)."""
    launch, grad_x, partials = plan_backward(x, flags, grad_spikes, spec, alpha, beta, grad_alpha, grad_beta,
                                             squash)
    launch()
    return (grad_x, partials[0].sum() if grad_alpha else None, partials[1].sum() if grad_beta else None)


def eager(x, alpha, beta, spec, squash):
    """Spikes for x [T, ...] with autograd, for eager calls: `EagerNeuron` on this engine, β = tanh(beta)
    and its derivative computed inside the kernels when `squash`."""
    return EagerNeuron.apply(x, alpha, beta, sys.modules[__name__], spec, squash)
