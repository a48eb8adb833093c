"""Spiking post-activation ResNets of the competitor code bases: TET's ResNet-19 and GLIF's ResNet-18.

Both are built from one block, h = N(BN1(Conv1(x))), out = N(BN2(Conv2(h)) + shortcut(x)), with
bias-free Conv3×3 convolutions and a shortcut Conv1×1 → BN where the shape changes.  The stem is
Conv3×3(→ 64, no bias) → BN → N; the head global average pooling → [Linear → (N) →] Linear.
Under `bn_mode=tdbn` the two BNs whose outputs the block adds (BN2 and the shortcut's) use
α = 1/√2, as tdBN prescribes.

- `resnet19` (TET, brain-intelligence-lab/temporal_efficient_training, models/resnet_models.py):
  stages of 3, 3, 2 blocks with 128, 256, 512 channels and strides 1, 2, 2; identity shortcut
  where the shape is kept; head Linear(512, 256) → N → Linear(256, K) with biases; torch's
  default initialisation.  12,630,858 parameters for 10 classes.
- `resnet18_glif` (GLIF, CAS-CLab/Gated-LIF, networks_for_CIFAR.py `ResNet_18_stand_CW` with
  blocks.py `BasicBlock_CW`): stages of 2, 2, 2, 2 blocks with 64, 128, 256, 512 channels and
  strides 1, 1, 2, 2 (final map 8×8 on CIFAR); the identity shortcut also goes through a BN;
  head Linear(512, 256) → Linear(256, K) without a neuron in between or biases, or a single
  Linear(512, K) for more than 50 classes; Kaiming fan-out convolutions, linear N(0, 0.01).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from torch import Tensor, nn

from arlif.models.layers import DirectEncoder, Parts, SeqToANN, init_weights

RESIDUAL_ALPHA = 1 / math.sqrt(2)  # tdBN's α for each of the two branches a block adds


@dataclass(frozen=True)
class PostActLayout:
    """What differs between the post-activation ResNets (see the module docstring)."""

    stages: tuple[tuple[int, int, int], ...]  # (channels, blocks, stride of the first block)
    norm_identity: bool                       # the identity shortcut goes through a BN too (GLIF)
    hidden: int                               # width of the Linear before the classifier
    hidden_neuron: bool                       # a neuron between the two Linears (TET) or none (GLIF)
    hidden_max_classes: Optional[int]         # the hidden Linear only up to this many classes (GLIF: 50)
    fc_bias: bool
    kaiming_init: bool                        # init_weights(linear N(0, 0.01)) (GLIF) or torch's defaults (TET)


POSTACT_LAYOUTS = {
    "resnet19": PostActLayout(((128, 3, 1), (256, 3, 2), (512, 2, 2)), norm_identity=False, hidden=256,
                              hidden_neuron=True, hidden_max_classes=None, fc_bias=True, kaiming_init=False),
    "resnet18_glif": PostActLayout(((64, 2, 1), (128, 2, 1), (256, 2, 2), (512, 2, 2)), norm_identity=True,
                                   hidden=256, hidden_neuron=False, hidden_max_classes=50, fc_bias=False,
                                   kaiming_init=True),
}


class PostActBlock(nn.Module):
    """h = N(BN1(Conv1(x))); out = N(BN2(Conv2(dropout(h))) + shortcut(x)) on [T, B, C, H, W]."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm_identity: bool, parts: Parts):
        super().__init__()
        self.conv1 = SeqToANN(nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False))
        self.bn1 = parts.norm(out_ch)
        self.act1 = parts.neuron(out_ch)
        self.dropout = parts.dropout()
        self.conv2 = SeqToANN(nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False))
        self.bn2 = parts.norm(out_ch, alpha=RESIDUAL_ALPHA)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(SeqToANN(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)),
                                          parts.norm(out_ch, alpha=RESIDUAL_ALPHA))
        else:
            self.shortcut = parts.norm(out_ch, alpha=RESIDUAL_ALPHA) if norm_identity else nn.Identity()
        self.act2 = parts.neuron(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(self.dropout(h))) + self.shortcut(x))


class SpikingPostActResNet(nn.Module):
    def __init__(self, layout: PostActLayout, num_classes: int, in_channels: int, parts: Parts):
        super().__init__()
        self.stem = DirectEncoder(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False))
        self.stem_bn = parts.norm(64)
        self.stem_act = parts.neuron(64)
        blocks, in_ch = [], 64
        for out_ch, count, stride in layout.stages:
            for i in range(count):
                blocks.append(PostActBlock(in_ch, out_ch, stride if i == 0 else 1, layout.norm_identity, parts))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.pool = SeqToANN(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        head: list[nn.Module] = []
        if layout.hidden_max_classes is None or num_classes <= layout.hidden_max_classes:
            head.append(SeqToANN(nn.Linear(in_ch, layout.hidden, bias=layout.fc_bias)))
            if layout.hidden_neuron:
                head.append(parts.neuron(layout.hidden))
            in_ch = layout.hidden
        self.hidden = nn.Sequential(*head)
        self.dropout = parts.classifier_dropout()
        self.fc = nn.Linear(in_ch, num_classes, bias=layout.fc_bias)
        if layout.kaiming_init:
            init_weights(self, linear_std=0.01)

    def forward(self, x: Tensor, T: int | None = None) -> Tensor:
        x = self.blocks(self.stem_act(self.stem_bn(self.stem(x, T))))
        return self.fc(self.dropout(self.hidden(self.pool(x))))
