"""Multi-step spiking neurons under one API: the registry and `build_neuron`.

The package is layered: `surrogate` (spike functions) and `dynamics` (the AR-LIF family's
spec and readable reference loop, which the kernels also use; neither imports a kernel) at
the bottom, `base` (`SpikingNeuron`: input layout, the `step_loop` contract, backend
dispatch) above them, one module per neuron above that, and this face.  The equations are
in each neuron's module and in docs/neurons.md.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Optional

from torch import nn

from arlif.neurons.ar_lif import ARLIF
from arlif.neurons.arlif_psn_code import ARLIFPSNCode
from arlif.neurons.base import SpikingNeuron
from arlif.neurons.clif import CLIF
from arlif.spikes.dynamics import BACKENDS, RESETS, NeuronSpec, reference_multistep
from arlif.neurons.glif import GLIF
from arlif.neurons.lif import LIF
from arlif.neurons.masked_psn import MaskedPSN
from arlif.neurons.plif import PLIF
from arlif.neurons.psn import PSN
from arlif.neurons.sliding_psn import SlidingPSN
from arlif.spikes.surrogate import SURROGATES, RectangleSpike, Surrogate

# Config name -> constructor with the options that make the variant (a caller's kwargs override them).
NEURONS = {
    "arlif": partial(ARLIF),
    "arlif_fixed_alpha": partial(ARLIF, learn_alpha=False),
    "arlif_fixed_threshold": partial(ARLIF, adaptive_threshold=False),
    "arlif_fixed_both": partial(ARLIF, learn_alpha=False, adaptive_threshold=False),
    "lif_hard": partial(LIF, reset="hard"),
    "lif_soft": partial(LIF, reset="soft"),
    "tet_lif": partial(LIF, reset="hard", surrogate="triangle", fire_at_threshold=False),
    "clif": partial(CLIF),
    "plif": partial(PLIF),
    "glif": partial(GLIF),
    "psn": partial(PSN),
    "masked_psn": partial(MaskedPSN),
    "sliding_psn": partial(SlidingPSN),
    "arlif_psn_code": partial(ARLIFPSNCode),
}


def neuron_options(name: str) -> list[str]:
    """The keyword options of neuron `name` (besides `channels` and `T`, which models pass)."""
    return [p for p in inspect.signature(NEURONS[name]).parameters if p not in ("channels", "T")]


def build_neuron(name: str, channels: Optional[int] = None, T: Optional[int] = None, **kwargs) -> SpikingNeuron:
    """Build neuron `name` with its options (`neuron_options(name)`, e.g. decay, surrogate, backend).

    `channels` (dim 2 of the input [T, B, C, ...]) and `T` (time steps) are passed on to the
    neurons that take them and ignored by the others.
    """
    if name not in NEURONS:
        raise ValueError(f"unknown neuron {name!r}; choose one of {sorted(NEURONS)}")
    unknown = sorted(set(kwargs) - set(neuron_options(name)))
    if unknown:
        raise ValueError(f"neuron {name!r} has no option {', '.join(unknown)}; its options: "
                         f"{', '.join(neuron_options(name))}")
    takes = inspect.signature(NEURONS[name]).parameters
    if "T" in takes and takes["T"].default is inspect.Parameter.empty and T is None:
        raise ValueError(f"neuron {name!r} needs the number of time steps T")
    sizes = {key: value for key, value in (("channels", channels), ("T", T)) if key in takes and value is not None}
    return NEURONS[name](**sizes, **kwargs)


def neuron_layers(model: nn.Module) -> list[tuple[str, SpikingNeuron]]:
    """All neuron layers of a model, in registration order, with qualified names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SpikingNeuron)]


__all__ = ["ARLIF", "LIF", "CLIF", "PLIF", "GLIF", "PSN", "MaskedPSN", "SlidingPSN", "ARLIFPSNCode",
           "SpikingNeuron", "NeuronSpec", "Surrogate", "RectangleSpike", "reference_multistep",
           "BACKENDS", "RESETS", "SURROGATES", "NEURONS", "build_neuron", "neuron_options", "neuron_layers"]
