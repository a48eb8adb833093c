"""Backend dispatch for the multi-step neuron: `multistep(x, spec, alpha, beta, backend)`."""

from __future__ import annotations

from arlif.neurons import reference_multistep


def multistep(x, spec, alpha=None, beta=None, backend="auto"):
    """Spikes [T, ...] (fp32) for x [T, ...] with the chosen backend."""
    return reference_multistep(x, spec, alpha, beta)[0]
