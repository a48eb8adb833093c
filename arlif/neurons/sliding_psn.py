"""The sliding PSN of order k (Fang et al., NeurIPS 2023; SpikingJelly 2.0 `SlidingPSN`).

k weights shared over time, so it runs for any T:

    H[t] = Σ_{i=0}^{k-1} w_i·X[t - k + 1 + i] + b   (terms before step 0 dropped),  S[t] = Θ(H[t])

run as one product with the T×T banded matrix built from w.  `weight` [k] starts at
(…, 1/4, 1/2, 1) (`exp_init`, the default, as SpikingJelly's) or Kaiming-uniform
(`exp_init=False`, as the sequential-CIFAR runs logged in the paper's repository); `bias`
(a scalar) at -1.  Names as in SpikingJelly.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from arlif.neurons.base import SpikingNeuron
from arlif.neurons.psn import kaiming_weight, parallel_fire
from arlif.spikes.surrogate import Surrogate


class SlidingPSN(SpikingNeuron):
    """Sliding PSN of order `order` (SpikingJelly's k)."""

    def __init__(self, order: int = 2, exp_init: bool = True, surrogate: str = "arctangent",
                 surrogate_width: float = 1.0, surrogate_slope: Optional[float] = None, fire_at_threshold: bool = True,
                 backend: str = "auto"):
        if order < 1:
            raise ValueError(f"sliding PSN order must be >= 1, got {order}")
        super().__init__(Surrogate(surrogate, surrogate_width, surrogate_slope, fire_at_threshold), backend)
        self.order = order
        weight = 0.5 ** torch.arange(order - 1, -1, -1.0) if exp_init else kaiming_weight(1, order)[0]
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.tensor(-1.0))

    def banded_weight(self, T: int) -> Tensor:
        """The T×T matrix with row t holding w's last min(k, t + 1) entries, ending on the diagonal."""
        rows = []
        for t in range(T):
            n = min(self.order, t + 1)
            rows.append(torch.cat([self.weight.new_zeros(t + 1 - n), self.weight[self.order - n:],
                                   self.weight.new_zeros(T - t - 1)]))
        return torch.stack(rows)

    def step_loop(self, x: Tensor, store_v: bool = False):
        return parallel_fire(self.banded_weight(x.shape[0]), self.bias, x, self.surrogate, store_v)

    def extra_repr(self) -> str:
        return f"order={self.order}, {super().extra_repr()}"
