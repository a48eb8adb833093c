"""The LIF baselines (hard and soft reset) and TET's LIF."""

from __future__ import annotations

from typing import Optional

from arlif.spikes.dynamics import NeuronSpec
from arlif.neurons.family import FamilyNeuron


class LIF(FamilyNeuron):
    """Leaky integrate-and-fire with hard (u = h·(1-s)) or soft (u = h - s·V) reset.

    TET's LIF (`tet_lif`) is the hard reset with the triangle surrogate (width 1) firing
    only strictly above the threshold.
    """

    def __init__(self, reset: str = "hard", decay: float = 0.5, v_threshold: float = 1.0,
                 surrogate_width: float = 1.0, backend: str = "auto", surrogate: str = "rectangle",
                 surrogate_slope: Optional[float] = None, fire_at_threshold: bool = True):
        if reset not in ("hard", "soft"):
            raise ValueError(f"LIF reset must be 'hard' or 'soft', got {reset!r}")
        super().__init__(NeuronSpec(reset, decay, v_threshold, surrogate_width, surrogate, surrogate_slope,
                                    fire_at_threshold), backend)
