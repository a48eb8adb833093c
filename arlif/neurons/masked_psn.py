"""The masked PSN of order k (Fang et al., NeurIPS 2023; SpikingJelly 2.0 `MaskedPSN`).

A PSN whose T×T weight only reaches back k steps: H = (W ⊙ M(λ))·X + b, S = Θ(H), with
M_k[i][j] = 1 for j ≤ i ≤ j + k - 1 (else 0), J the all-ones matrix and
M(λ) = λ·M_k + (1 - λ)·J.  λ anneals the mask in during training: before each epoch e of E,

    λ = min(1, lambda_init + lambda_rate · e / (E - 1))

lambda_rate = 8 (λ reaches 1 an eighth of the way through training) and lambda_init = 0 are
the schedule of the paper's sequential-CIFAR script; lambda_rate = 0 keeps λ = lambda_init
(SpikingJelly leaves λ to the user).  `weight` [T, T], `bias` [T, 1] and the buffers
`_lambda_`, `mask0` (M_k), `mask1` (J) are named as in SpikingJelly.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from arlif.neurons.base import SpikingNeuron, check_steps
from arlif.neurons.psn import kaiming_weight, parallel_fire
from arlif.spikes.surrogate import Surrogate


class MaskedPSN(SpikingNeuron):
    """Masked PSN of order `order` (SpikingJelly's k) for exactly T steps."""

    def __init__(self, T: int, order: int = 2, lambda_init: float = 0.0, lambda_rate: float = 8.0,
                 surrogate: str = "arctangent", surrogate_width: float = 1.0, surrogate_slope: Optional[float] = None,
                 fire_at_threshold: bool = True, backend: str = "auto"):
        if not 1 <= order <= T:
            raise ValueError(f"masked PSN order must lie in [1, T={T}], got {order}")
        if not (0.0 <= lambda_init <= 1.0 and lambda_rate >= 0.0):
            raise ValueError(f"masked PSN needs lambda_init in [0, 1] and lambda_rate >= 0, "
                             f"got {lambda_init} and {lambda_rate}")
        super().__init__(Surrogate(surrogate, surrogate_width, surrogate_slope, fire_at_threshold), backend)
        self.T, self.order = T, order
        self.lambda_init, self.lambda_rate = float(lambda_init), float(lambda_rate)
        self.weight = nn.Parameter(kaiming_weight(T, T))
        self.bias = nn.Parameter(torch.full((T, 1), -1.0))
        ones = torch.ones(T, T)
        self.register_buffer("_lambda_", torch.tensor(float(lambda_init)))
        self.register_buffer("mask0", torch.tril(ones) * torch.triu(ones, -(order - 1)))
        self.register_buffer("mask1", ones)

    def masked_weight(self) -> Tensor:
        lam = self._lambda_
        return (lam * self.mask0 + (1.0 - lam) * self.mask1) * self.weight

    def step_loop(self, x: Tensor, store_v: bool = False):
        check_steps("masked PSN", self.T, x)
        return parallel_fire(self.masked_weight(), self.bias, x, self.surrogate, store_v)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        self._lambda_.fill_(min(1.0, self.lambda_init + self.lambda_rate * epoch / max(epochs - 1, 1)))

    def extra_repr(self) -> str:
        return f"T={self.T}, order={self.order}, lambda={float(self._lambda_):g}, {super().extra_repr()}"
