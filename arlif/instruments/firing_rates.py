"""Per-layer firing rates through forward hooks on the neuron layers.

The rate of a layer is the fraction of its neurons that spike per time step, averaged
over every element it has emitted while the monitor was attached (all steps, samples,
channels and positions).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from arlif.neurons import neuron_layers

# Non-persistent buffers each neuron layer gets while monitored: spikes emitted and elements seen.
SUMS = (("firing_spike_sum", torch.float64), ("firing_element_count", torch.int64))


class FiringRateMonitor:
    """`with FiringRateMonitor(model) as mon: model(x)` then `mon.rates()`.

    A caller that evaluates often can instead `attach()` it once and set `recording` around
    each evaluation: hooks that stay registered do not make a compiled model (trainer.compile)
    retrace, as hooks registered anew for each evaluation would.  The sums are one-element tensors
    on the model's device, added to in place: no host sync per layer, and nothing a compiled graph
    would have to specialise on.  They are buffers of the neuron layers (`SUMS`, not in the state
    dict), so a compiled graph updates them as module state, which CUDA graphs replay in place.
    They have one dim, not none: torch 2.11's Dynamo (the GPU machines' torch) drops an in-place
    add to a 0-d fp64 CPU buffer from the graph it traces.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = neuron_layers(model)
        self._handles = []
        self.recording = True  # attached hooks count only while this is set
        self.reset()

    def reset(self) -> None:
        """Zero the sums in place (a compiled graph keeps them), on the device the model is on now."""
        device = next(itertools.chain(self.model.parameters(), self.model.buffers()), torch.empty(0)).device
        for _, module in self.layers:
            for name, dtype in SUMS:
                buffer = getattr(module, name, None)
                if buffer is None or buffer.device != device:
                    module.register_buffer(name, torch.zeros(1, dtype=dtype, device=device), persistent=False)
                else:
                    buffer.zero_()

    def _record(self, module, _inputs, out) -> None:
        if not self.recording:
            return
        with torch.no_grad():
            module.firing_spike_sum.add_(out.detach().sum(dtype=torch.float64))
            module.firing_element_count.add_(out.numel())

    def attach(self) -> "FiringRateMonitor":
        """Register the hooks (until `detach`)."""
        self._handles = [m.register_forward_hook(self._record) for _, m in self.layers]
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "FiringRateMonitor":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def rates(self) -> dict[str, float]:
        """{layer name: firing rate} for the layers that have seen input."""
        counts = {n: int(m.firing_element_count) for n, m in self.layers}
        return {n: float(m.firing_spike_sum) / counts[n] for n, m in self.layers if counts[n]}

    def mean_rate(self) -> float:
        """Unweighted mean of the per-layer rates (0.0 before any input)."""
        return mean_rate(self.rates())


def mean_rate(rates: dict[str, float]) -> float:
    """Unweighted mean over layers of a {layer: rate} dict (0.0 when empty)."""
    return sum(rates.values()) / len(rates) if rates else 0.0
