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


class FiringRateMonitor:
    """`with FiringRateMonitor(model) as mon: model(x)` then `mon.rates()`.

    A caller that evaluates often can instead `attach()` it once and set `recording` around
    each evaluation: hooks that stay registered do not make a compiled model (trainer.compile)
    retrace, as hooks registered anew for each evaluation would.  The sums are 0-d tensors on
    the model's device, added to in place: no host sync per layer, and nothing a compiled graph
    would have to specialise on.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = neuron_layers(model)
        self._handles = []
        self.recording = True  # attached hooks count only while this is set
        self.reset()

    def reset(self) -> None:
        """Zero the sums, on the device the model is on now."""
        device = next(itertools.chain(self.model.parameters(), self.model.buffers()), torch.empty(0)).device
        self._spikes = {name: torch.zeros((), dtype=torch.float64, device=device) for name, _ in self.layers}
        self._counts = {name: torch.zeros((), dtype=torch.int64, device=device) for name, _ in self.layers}

    def _hook(self, name):
        def record(_module, _inputs, out):
            if not self.recording:
                return
            with torch.no_grad():
                self._spikes[name] += out.detach().sum(dtype=torch.float64)
                self._counts[name] += out.numel()
        return record

    def attach(self) -> "FiringRateMonitor":
        """Register the hooks (until `detach`)."""
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers]
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
        counts = {n: int(self._counts[n]) for n, _ in self.layers}
        return {n: float(self._spikes[n]) / counts[n] for n, _ in self.layers if counts[n]}

    def mean_rate(self) -> float:
        """Unweighted mean of the per-layer rates (0.0 before any input)."""
        return mean_rate(self.rates())


def mean_rate(rates: dict[str, float]) -> float:
    """Unweighted mean over layers of a {layer: rate} dict (0.0 when empty)."""
    return sum(rates.values()) / len(rates) if rates else 0.0
