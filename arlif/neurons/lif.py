"""The LIF baselines (hard and soft reset)."""

from __future__ import annotations

from arlif.neurons.base import SpikingNeuron
from arlif.neurons.dynamics import NeuronSpec


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire with hard (u = h·(1-s)) or soft (u = h - s·V) reset."""

    def __init__(self, reset: str = "hard", decay: float = 0.5, v_threshold: float = 1.0,
                 surrogate_width: float = 1.0, backend: str = "auto"):
        if reset not in ("hard", "soft"):
            raise ValueError(f"LIF reset must be 'hard' or 'soft', got {reset!r}")
        super().__init__(NeuronSpec(reset, decay, v_threshold, surrogate_width), backend)
