"""Spiking pre-activation ResNet-18, CIFAR style, as the published AR-LIF numbers used it.

Stem Conv3×3 (no bias) with nothing after it; blocks u = N(BN(x)),
out = Conv3×3(u) → BN → N → dropout → Conv3×3, out += shortcut(u) (the shortcut takes
the spikes u); head BN → N → global average pool → dropout → Linear.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from arlif.models.layers import DirectEncoder, SeqBatchNorm2d, SeqDropout, SeqToANN, init_weights


class PreActBlock(nn.Module):
    """Pre-activation basic block on [T, B, C, H, W]."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, neuron: Callable[[int], nn.Module],
                 dropout: float, bn_mode: str):
        super().__init__()
        self.bn1 = SeqBatchNorm2d(in_ch, bn_mode)
        self.act1 = neuron(in_ch)
        self.conv1 = SeqToANN(nn.Conv2d(in_ch, out_ch, 3, stride, 1))
        self.bn2 = SeqBatchNorm2d(out_ch, bn_mode)
        self.act2 = neuron(out_ch)
        self.dropout = SeqDropout(dropout)
        self.conv2 = SeqToANN(nn.Conv2d(out_ch, out_ch, 3, 1, 1))
        self.shortcut = (SeqToANN(nn.Conv2d(in_ch, out_ch, 1, stride)) if stride != 1 or in_ch != out_ch
                         else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        u = self.act1(self.bn1(x))
        out = self.conv2(self.dropout(self.act2(self.bn2(self.conv1(u)))))
        return out + self.shortcut(u)


class SpikingResNet18(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, neuron: Callable[[int], nn.Module],
                 dropout: float = 0.0, bn_mode: str = "per_step"):
        super().__init__()
        self.stem = DirectEncoder(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False))
        blocks, in_ch = [], 64
        for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for s in (stride, 1):
                blocks.append(PreActBlock(in_ch, out_ch, s, neuron, dropout, bn_mode))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.bn = SeqBatchNorm2d(512, bn_mode)
        self.act = neuron(512)
        self.pool = SeqToANN(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.dropout = SeqDropout(dropout)
        self.fc = nn.Linear(512, num_classes)
        init_weights(self)

    def forward(self, x: Tensor, T: int | None = None) -> Tensor:
        x = self.blocks(self.stem(x, T))
        return self.fc(self.dropout(self.pool(self.act(self.bn(x)))))
