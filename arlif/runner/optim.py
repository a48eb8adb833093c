"""Optimizer and learning-rate schedule from `cfg.optimizer` and `cfg.scheduler`.

The published runs decay every parameter (batch-norm affine, biases and the neurons'
α and β too); `optimizer.decay_all_params=false` exempts all 0-d and 1-d parameters,
which are exactly those, as is usual elsewhere.
"""

from __future__ import annotations

import torch
from timm.optim import param_groups_weight_decay
from omegaconf import OmegaConf
from torch import nn

from arlif.runner.config import check_number
from arlif.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine",)


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over the model's trainable parameters."""
    c = cfg.optimizer
    if c.name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name={c.name!r} is not one of {list(OPTIMIZERS)}")
    check_number(cfg, "optimizer.lr", 0.0, low_open=True)
    check_number(cfg, "optimizer.weight_decay", 0.0)
    if c.name == "sgd":
        check_number(cfg, "optimizer.momentum", 0.0, 1.0, high_open=True)
        if not isinstance(c.nesterov, bool):
            raise ConfigError(f"optimizer.nesterov={c.nesterov!r} must be true or false")
    elif OmegaConf.is_list(c.betas) and len(c.betas) == 2:
        for i in range(2):
            check_number(cfg, f"optimizer.betas.{i}", 0.0, 1.0, high_open=True)
    else:
        raise ConfigError(f"optimizer.betas={c.betas!r} must be a list of two numbers in [0, 1)")
    if c.decay_all_params:
        params = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": c.weight_decay}]
    else:
        params = param_groups_weight_decay(model, c.weight_decay)
    if c.name == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov)
    return torch.optim.AdamW(params, lr=c.lr, betas=tuple(c.betas))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing stepped once per epoch, from the initial lr to `eta_min` over `t_max` epochs."""
    c = cfg.scheduler
    if c.name not in SCHEDULERS:
        raise ConfigError(f"scheduler.name={c.name!r} is not one of {list(SCHEDULERS)}")
    if isinstance(c.t_max, bool) or not isinstance(c.t_max, int) or c.t_max < 1:
        raise ConfigError(f"scheduler.t_max={c.t_max!r} must be a positive integer (epochs)")
    check_number(cfg, "scheduler.eta_min", 0.0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.t_max, eta_min=c.eta_min)
