"""The AR-LIF neuron family and its LIF baselines, as multi-step modules: the registry and `build_neuron`.

The package is layered: `dynamics` (the spec, surrogate and readable reference loop that the
kernels also use; it imports no kernel) at the bottom, `base` (`SpikingNeuron`, which picks
a backend from `arlif.kernels`) above it, one module per neuron above that, and this face.
The equations are in `arlif.neurons.dynamics` and docs/neurons.md.
"""

from __future__ import annotations

from torch import nn

from arlif.neurons.ar_lif import ARLIF
from arlif.neurons.base import SpikingNeuron
from arlif.neurons.dynamics import BACKENDS, RESETS, NeuronSpec, RectangleSpike, reference_multistep
from arlif.neurons.lif import LIF

NEURONS = {
    "arlif": lambda **kw: ARLIF(**kw),
    "arlif_fixed_alpha": lambda **kw: ARLIF(learn_alpha=False, **kw),
    "arlif_fixed_threshold": lambda **kw: ARLIF(adaptive_threshold=False, **kw),
    "arlif_fixed_both": lambda **kw: ARLIF(learn_alpha=False, adaptive_threshold=False, **kw),
    "lif_hard": lambda **kw: LIF(reset="hard", **kw),
    "lif_soft": lambda **kw: LIF(reset="soft", **kw),
}


def build_neuron(name: str, **kwargs) -> SpikingNeuron:
    """Build a neuron by config name; kwargs: decay, v_threshold, surrogate_width, backend."""
    if name not in NEURONS:
        raise ValueError(f"unknown neuron {name!r}; choose one of {sorted(NEURONS)}")
    return NEURONS[name](**kwargs)


def neuron_layers(model: nn.Module) -> list[tuple[str, SpikingNeuron]]:
    """All neuron layers of a model, in registration order, with qualified names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SpikingNeuron)]


__all__ = ["ARLIF", "LIF", "SpikingNeuron", "NeuronSpec", "RectangleSpike", "reference_multistep", "BACKENDS", "RESETS",
           "NEURONS", "build_neuron", "neuron_layers"]
