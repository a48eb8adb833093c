"""Multi-step spiking networks: `create_model(name, ...)` for every architecture.

Networks take [T, B, C, H, W] (event frames) or a static [B, C, H, W] image plus T
(direct encoding: the first convolution runs once and is repeated) and return logits
[T, B, K].  The same models are registered in timm as `arlif_<name>` (arlif.timm_models).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

from torch import nn

from arlif.models.layers import BN_MODES, DROPOUT_MASKS, Parts, SeqBatchNorm2d, SeqDropout
from arlif.models.resnet import SpikingResNet18
from arlif.models.resnet_postact import POSTACT_LAYOUTS, SpikingPostActResNet
from arlif.models.vgg import HEADS, LAYOUTS, SpikingVGG
from arlif.neurons import NEURONS, build_neuron

MODELS = ("resnet18", *POSTACT_LAYOUTS, *LAYOUTS)
# Architectures whose published form drops out before the classifier with the neuron dropout's rate.
CLASSIFIER_DROPOUT_IS_DROPOUT = ("resnet18",)


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: int, neuron: str = "arlif",
                 neuron_kwargs: Optional[dict] = None, dropout: float = 0.0, bn_mode: str = "per_step",
                 T: Optional[int] = None, tdbn_threshold: float = 1.0, dropout_mask: str = "sequence",
                 classifier_dropout: Optional[float] = None) -> nn.Module:
    """Build architecture `name` with every spiking layer a fresh `neuron` (see arlif.neurons).

    `bn_mode` is every batch norm's mode (arlif.models.layers.SeqBatchNorm2d; `tebn` needs T,
    `tdbn` scales by α·`tdbn_threshold`).  `dropout` is the rate after the neurons of each block,
    `classifier_dropout` the rate before the last Linear (None: the architecture's published
    choice, `dropout` for resnet18 and none elsewhere); `dropout_mask` says whether every
    dropout draws one mask per sequence or a new one per time step.  Each spiking layer gets its
    number of channels and `T`, the time steps the network will run (needed by neurons with
    per-step parameters, such as PSN and GLIF).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list(MODELS)}")
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron {neuron!r}; choose one of {sorted(NEURONS)}")
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    if dropout_mask not in DROPOUT_MASKS:
        raise ValueError(f"dropout_mask must be one of {DROPOUT_MASKS}, got {dropout_mask!r}")
    if classifier_dropout is None:
        classifier_dropout = dropout if name in CLASSIFIER_DROPOUT_IS_DROPOUT else 0.0
    kwargs = neuron_kwargs or {}
    parts = Parts(neuron=lambda channels: build_neuron(neuron, channels=channels, T=T, **kwargs),
                  norm=partial(SeqBatchNorm2d, bn_mode=bn_mode, T=T, v_threshold=tdbn_threshold),
                  dropout=partial(SeqDropout, dropout, dropout_mask),
                  classifier_dropout=partial(SeqDropout, classifier_dropout, dropout_mask))
    if name == "resnet18":
        return SpikingResNet18(num_classes, in_channels, parts)
    if name in POSTACT_LAYOUTS:
        return SpikingPostActResNet(POSTACT_LAYOUTS[name], num_classes, in_channels, parts)
    return SpikingVGG(LAYOUTS[name], HEADS[name], num_classes, in_channels, image_size, parts)


def count_parameters(model: nn.Module) -> int:
    """Learnable and frozen parameters of `model` (buffers such as BN statistics not counted)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["create_model", "count_parameters", "MODELS"]
