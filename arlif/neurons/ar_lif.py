"""AR-LIF (paper eq. 9) and its Table 2 ablations."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from arlif.spikes.dynamics import NeuronSpec
from arlif.neurons.family import FamilyNeuron


class ARLIF(FamilyNeuron):
    """AR-LIF: adaptive reset (memory r) and input-dependent threshold 1 + β·tanh(i).

    α (init 1) and beta_raw (init 0, β = tanh(beta_raw) ∈ (-1, 1)) are per-layer
    scalars; `learn_alpha=False` / `adaptive_threshold=False` freeze them as buffers at
    their initial values (the Table 2 ablations).
    """

    def __init__(self, decay: float = 0.5, v_threshold: float = 1.0, learn_alpha: bool = True,
                 adaptive_threshold: bool = True, surrogate_width: float = 1.0, backend: str = "auto",
                 surrogate: str = "rectangle", surrogate_slope: Optional[float] = None, fire_at_threshold: bool = True):
        super().__init__(NeuronSpec("adaptive", decay, v_threshold, surrogate_width, surrogate, surrogate_slope,
                                    fire_at_threshold), backend)
        alpha, beta_raw = torch.tensor(1.0), torch.tensor(0.0)
        if learn_alpha:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)
        if adaptive_threshold:
            self.beta_raw = nn.Parameter(beta_raw)
        else:
            self.register_buffer("beta_raw", beta_raw)

    @property
    def beta(self) -> Tensor:
        return torch.tanh(self.beta_raw)

    def scalars(self) -> tuple[Tensor, Tensor]:
        return self.alpha, self.beta

    def raw_scalars(self) -> tuple[Tensor, Tensor, bool]:
        return self.alpha, self.beta_raw, True

    def parameter_values(self) -> dict[str, Tensor]:
        return {"alpha": self.alpha, "beta": self.beta}  # also when frozen (the Table 2 ablations)
