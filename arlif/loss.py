"""The training objective: TET cross-entropy per time step plus an MSE term on the logits.

    L = tet_weight · (1/T) Σ_t CE(O_t, y)  +  mse_weight · MSE(O, Y)

O are the logits [T, B, K]; the MSE averages over all T·B·K of them.  Y is either the
constant φ (a regulariser pulling every logit towards φ) or the label as a one-hot
vector.  The paper writes L = λ·L_TET + (1 − λ)·L_MSE, so its λ is `tet_weight` and
`mse_weight` = 1 − λ.  Labels may be class indices [B] or soft targets [B, K] (mixup,
cutmix); with soft targets the "one-hot" MSE target is the soft target itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


MSE_TARGETS = ("constant", "onehot")


class TETMSELoss(nn.Module):
    """TET + MSE loss on multi-step logits; computed in fp32 whatever the logits' dtype."""

    def __init__(self, tet_weight: float = 0.95, mse_weight: float = 0.05, mse_target: str = "constant",
                 phi: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        self.tet_weight = tet_weight
        self.mse_weight = mse_weight
        self.mse_target = mse_target
        self.phi = phi
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        steps, batch, classes = logits.shape
        logits = logits.float()
        if target.dim() == 1:
            probs = None
            per_step_target = target.repeat(steps)
        else:
            probs = target.float()
            per_step_target = probs.repeat(steps, 1)
        # Every step has the same batch size, so one CE over the T·B rows is (1/T) Σ_t CE_t.
        tet = F.cross_entropy(logits.reshape(steps * batch, classes), per_step_target,
                              label_smoothing=self.label_smoothing)
        if self.mse_target == "constant":
            mse_target = torch.full_like(logits, self.phi)
        else:
            onehot = probs if probs is not None else F.one_hot(target, classes).float()
            mse_target = onehot.expand(steps, batch, classes)
        return self.tet_weight * tet + self.mse_weight * F.mse_loss(logits, mse_target)
