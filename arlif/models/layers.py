"""Multi-step building blocks: every layer maps [T, B, ...] to [T, B, ...].

Stateless layers (conv, pooling, linear) run once on the flattened [T·B, ...] batch,
which is what makes a multi-step network much faster than calling a single-step
network T times.  Batch norm and dropout need care over time and get their own classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BN_MODES = ("per_step", "shared")


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
    called T times does; this is the published setting.  `shared`: one normalisation
    over all T·B samples (one update), faster.  In eval both use the running statistics,
    so they run as one call.
    """

    def __init__(self, num_features: int, bn_mode: str = "per_step", **kwargs):
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
        super().__init__(num_features, **kwargs)
        self.bn_mode = bn_mode

    def forward(self, x: Tensor) -> Tensor:
        if self.bn_mode == "shared" or not self.training:
            return super().forward(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return torch.stack([super(SeqBatchNorm2d, self).forward(xt) for xt in x])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bn_mode={self.bn_mode}"


class SeqDropout(nn.Module):
    """Dropout whose mask is drawn once per sequence and shared by all T steps."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.empty_like(x[0]).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


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
    """Kaiming (fan-out) convs with zero bias, BN weight 1 / bias 0, linear bias 0.

    Linear weights are drawn from N(0, linear_std) when given, else left at torch's default.
    """
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
            nn.init.zeros_(m.bias)

