"""Per-layer firing rates through forward hooks on the neuron layers.

The rate of a layer is the fraction of its neurons that spike per time step, averaged
over every element it has emitted while the monitor was attached (all steps, samples,
channels and positions).
"""

from __future__ import annotations

import torch
from torch import nn

from arlif.neurons import neuron_layers


class FiringRateMonitor:
    """`with FiringRateMonitor(model) as mon: model(x)` then `mon.rates()`."""

    def __init__(self, model: nn.Module):
        self.layers = neuron_layers(model)
        self._handles = []
        self.reset()

    def reset(self) -> None:
        self._spikes = {name: 0.0 for name, _ in self.layers}
        self._counts = {name: 0 for name, _ in self.layers}

    def _hook(self, name):
        def record(_module, _inputs, out):
            with torch.no_grad():  # stays on the device: no host sync per layer
                self._spikes[name] = self._spikes[name] + out.detach().sum(dtype=torch.float64)
                self._counts[name] += out.numel()
        return record

    def __enter__(self) -> "FiringRateMonitor":
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def rates(self) -> dict[str, float]:
        """{layer name: firing rate} for the layers that have seen input."""
        return {n: float(self._spikes[n]) / self._counts[n] for n, _ in self.layers if self._counts[n]}

    def mean_rate(self) -> float:
        """Unweighted mean of the per-layer rates (0.0 before any input)."""
        return mean_rate(self.rates())


def mean_rate(rates: dict[str, float]) -> float:
    """Unweighted mean over layers of a {layer: rate} dict (0.0 when empty)."""
    return sum(rates.values()) / len(rates) if rates else 0.0
