"""Multi-step spiking networks: `create_model(name, ...)` for every architecture.

Networks take [T, B, C, H, W] (event frames) or a static [B, C, H, W] image plus T
(direct encoding: the first convolution runs once and is repeated) and return logits
[T, B, K].  The same models are registered in timm as `arlif_<name>` (arlif.timm_models).
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from arlif.models.layers import BN_MODES
from arlif.models.resnet import SpikingResNet18
from arlif.models.vgg import HEADS, LAYOUTS, SpikingVGG
from arlif.neurons import NEURONS, build_neuron

MODELS = ("resnet18", *LAYOUTS)


def create_model(name: str, *, num_classes: int, in_channels: int, image_size: int, neuron: str = "arlif",
                 neuron_kwargs: Optional[dict] = None, dropout: float = 0.0, bn_mode: str = "per_step",
                 T: Optional[int] = None) -> nn.Module:
    """Build architecture `name` with every spiking layer a fresh `neuron` (see arlif.neurons).

    Each layer gets its number of channels and `T`, the time steps the network will run
    (needed by neurons with per-step parameters, such as PSN and GLIF).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list(MODELS)}")
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron {neuron!r}; choose one of {sorted(NEURONS)}")
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    def make_neuron(channels: int) -> nn.Module:
        return build_neuron(neuron, channels=channels, T=T, **(neuron_kwargs or {}))

    if name == "resnet18":
        return SpikingResNet18(num_classes, in_channels, make_neuron, dropout, bn_mode)
    return SpikingVGG(LAYOUTS[name], HEADS[name], num_classes, in_channels, image_size, make_neuron, dropout, bn_mode)


def count_parameters(model: nn.Module) -> int:
    """Learnable and frozen parameters of `model` (buffers such as BN statistics not counted)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["create_model", "count_parameters", "MODELS"]
