"""Multi-step building blocks: every layer maps [T, B, ...] to [T, B, ...].

Stateless layers (conv, pooling, linear) run once on the flattened [T·B, ...] batch,
which is what makes a multi-step network much faster than calling a single-step
network T times.  Batch norm and dropout need care over time and get their own classes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_MODES = ("per_step", "shared", "tdbn", "tebn")
DROPOUT_MASKS = ("sequence", "step")


class SeqToANN(nn.Module):
    """Apply a stateless module to [T, B, ...] as one [T·B, ...] batch."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])


class SeqBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over [T, B, C, H, W] with one set of affine parameters and running stats.

    `per_step`: in training each time step is normalised over its own batch and updates
    the running statistics once (T updates per call), exactly as a single-step network
    called T times does; this is the published AR-LIF setting.  `shared`: one normalisation
    over all T·B samples (one update), faster.  `tdbn` (threshold-dependent BN, Zheng et
    al. 2021): statistics over T·B as `shared`, the normalised value scaled by α·V_th before
    the affine map, y = γ·α·V_th·x̂ + β; α is 1, or 1/√2 for the two branches a residual
    block adds, and V_th the threshold of the neurons that follow.  `tebn` (temporal
    effective BN, Duan et al. 2022): statistics over T·B, then a learnable scale per time
    step, y_t = p_t·(γ·x̂ + β), p ∈ R^T initialised to 1 and named `scale` as in SpikingJelly,
    so the module needs T.  In eval every mode uses the running statistics, in one call.

    `per_step` training runs as one batch-norm call over T·C channels (`batched`, the default; set it
    False for the loop over steps): x [T, B, C, ...] is laid out as [B, T·C, ...], each (step, channel)
    normalised over its own batch, and the running statistics get the T momentum updates of the loop
    in closed form, r ← (1-m)^T·r + Σ_t m(1-m)^(T-1-t)·stat_t (same numbers to fp32 rounding; same
    state dict).  An input whose steps are channels_last [T, B, C, H, W] takes the same one call on a
    channels_last [B, T·C, H, W] copy and gets its output back channels_last per step (`_Relayout`); on
    a CPU that is no faster than the loop (docs/benchmarks.md), it saves T - 1 calls for a GPU.
    SyncBatchNorm and the cumulative average (momentum None) keep the loop.
    """

    batched = True

    def __init__(self, num_features: int, bn_mode: str = "per_step", *, T: int | None = None, alpha: float = 1.0,
                 v_threshold: float = 1.0, **kwargs):
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
        if bn_mode == "tebn" and (T is None or T < 1):
            raise ValueError("bn_mode='tebn' has one scale per time step and needs the number of time steps T >= 1")
        super().__init__(num_features, **kwargs)
        self.bn_mode = bn_mode
        self.T = T
        self.alpha = alpha
        self.v_threshold = v_threshold
        if bn_mode == "tebn":
            self.scale = nn.Parameter(torch.ones(T))

    def forward(self, x: Tensor) -> Tensor:
        if self.bn_mode == "per_step" and self.training:
            if self.batched and self.momentum is not None and not isinstance(self, nn.SyncBatchNorm):
                return self._per_step_batched(x)
            return torch.stack([super(SeqBatchNorm2d, self).forward(xt) for xt in x])
        if self.bn_mode == "tebn" and x.shape[0] != self.T:
            raise ValueError(f"bn_mode='tebn' was built for T={self.T} time steps but got {x.shape[0]}")
        y = super().forward(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if self.bn_mode == "tdbn":
            # γ·αV·x̂ + β written as αV·(γ·x̂ + β) + (1 − αV)·β: the parent's call (and SyncBatchNorm's) is reused.
            gain = self.alpha * self.v_threshold
            y = gain * y if self.bias is None else gain * y + (1.0 - gain) * self.bias.view(-1, 1, 1)
        elif self.bn_mode == "tebn":
            y = y * self.scale.view(-1, 1, 1, 1, 1)
        return y

    def _per_step_batched(self, x: Tensor) -> Tensor:
        """Per-step training batch norm of x [T, B, C, ...] in one call (see the class doc)."""
        T, B, C = x.shape[:3]
        channels_last = x.dim() == 5 and x.stride(2) == 1 and C > 1 and (T == 1 or x.stride(0) == x[0].numel()) \
            and x[0].is_contiguous(memory_format=torch.channels_last)  # steps outermost, each channels_last
        layout = x.stride()
        if channels_last:
            # No view of x's memory (T, B, H, W, C) has the channel (t, c) as one dim, so the call gets a
            # copy in memory order (B, H, W, T, C), which is [B, T·C, H, W] channels_last; its output is
            # copied back into x's layout.  Two copies forward, two of the gradient backward (`_Relayout`:
            # each gradient in its input's layout, so the neuron after and the convolution before get theirs
            # in their own); the loop has one each way (the stack, the unbind's backward) and T calls.
            H, W = x.shape[3:]
            x = _Relayout.apply(x, (C, H * W * T * C, 1, W * T * C, T * C))
        steps = x.transpose(0, 1).reshape(B, T * C, *x.shape[3:])  # channel t·C + c: step t, channel c
        track = self.running_mean is not None
        stats = [torch.zeros(T * C, dtype=self.running_mean.dtype, device=x.device) for _ in range(2)] if track \
            else [None, None]
        weight = None if self.weight is None else self.weight.repeat(T)
        bias = None if self.bias is None else self.bias.repeat(T)
        # From zero buffers one update leaves m·stat_t (unbiased variance) in slot t.
        y = F.batch_norm(steps, *stats, weight, bias, True, self.momentum, self.eps)
        if track:
            m = self.momentum
            weights = _decays if torch.compiler.is_compiling() else _cached_decays  # no cache inside a graph
            decay = weights(T, m, stats[0].dtype, x.device)
            with torch.no_grad():
                for running, stat in zip((self.running_mean, self.running_var), stats):
                    running.addmv_(stat.view(T, C).t(), decay, beta=(1 - m) ** T)
                self.num_batches_tracked.add_(T)
        y = y.view(B, T, *x.shape[2:]).transpose(0, 1)  # a view for either layout of `steps`
        if channels_last:  # back into x's layout: channels_last per step, steps outermost (memory T, B, H, W, C)
            y = _Relayout.apply(y, layout)
        return y

    def extra_repr(self) -> str:
        extra = {"tdbn": f", alpha={self.alpha:g}, v_threshold={self.v_threshold:g}", "tebn": f", T={self.T}"}
        return f"{super().extra_repr()}, bn_mode={self.bn_mode}{extra.get(self.bn_mode, '')}"


class _Relayout(torch.autograd.Function):
    """apply(x, strides): a copy of x with `strides` (one copy); backward: the gradient copied into x's strides
    (one copy), so each side of the copy gets its gradient in its own layout."""

    @staticmethod
    def forward(ctx, x: Tensor, strides: tuple[int, ...]) -> Tensor:
        ctx.strides = x.stride()
        return x.new_empty_strided(x.shape, strides).copy_(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if grad.stride() == ctx.strides:
            return grad, None
        return grad.new_empty_strided(grad.shape, ctx.strides).copy_(grad), None


def _decays(T: int, momentum: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(1-m)^(T-1-t) for t < T: the weight of step t's statistics in the running statistics."""
    return torch.tensor([(1 - momentum) ** (T - 1 - t) for t in range(T)], dtype=dtype, device=device)


_cached_decays = functools.lru_cache(maxsize=None)(_decays)  # on the device once: no host-to-device copy per call


class SeqDropout(nn.Module):
    """Dropout on [T, B, ...]: one mask per sequence shared by all T steps (`mask="sequence"`, the
    published AR-LIF neuron dropout) or a new mask at every step (`mask="step"`, ordinary dropout
    applied to the flattened T·B batch, as the PSN-based CIFAR10-DVS code's classifier dropout)."""

    def __init__(self, p: float = 0.0, mask: str = "sequence"):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {p}")
        if mask not in DROPOUT_MASKS:
            raise ValueError(f"dropout mask must be one of {DROPOUT_MASKS}, got {mask!r}")
        self.p = p
        self.mask = mask

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = x.shape[1:] if self.mask == "sequence" else x.shape
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}, mask={self.mask}"


@dataclass(frozen=True)
class Parts:
    """The layer factories a network is built from; `arlif.models.create_model` fills them from its arguments."""

    neuron: Callable[[int], nn.Module]           # a spiking layer for that many channels
    norm: Callable[..., nn.Module]               # norm(channels, alpha=1.0): a SeqBatchNorm2d
    dropout: Callable[[], nn.Module]             # the dropout after a block's neurons
    classifier_dropout: Callable[[], nn.Module]  # the dropout before the last Linear


class DirectEncoder(nn.Module):
    """First layer of a network: runs a static image [B, C, H, W] once, repeats it T times.

    Event input [T, B, C, H, W] goes through the same module step-wise.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, T: int | None) -> Tensor:
        if x.dim() == 5:
            if T is not None and T != x.shape[0]:
                raise ValueError(f"input has {x.shape[0]} time steps but T={T} was given")
            return self.module(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if x.dim() != 4:
            raise ValueError(f"expected [T, B, C, H, W] or [B, C, H, W] input, got shape {tuple(x.shape)}")
        if T is None or T < 1:
            raise ValueError("a static [B, C, H, W] input needs the number of time steps T >= 1")
        y = self.module(x)
        return y.unsqueeze(0).expand(T, *y.shape)


def init_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """Kaiming (fan-out) convs with zero bias, BN weight 1 / bias 0, linear bias 0 (where there are biases).

    Linear weights are drawn from N(0, linear_std) when given, else left at torch's default.  A model built on
    the meta device (a shape check) has no values to draw, so nothing is drawn: torch's meta `normal_` would
    load Dynamo (about 2 s) for nothing.
    """
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

