"""Optimizer and learning-rate schedule from `cfg.optimizer` and `cfg.scheduler`.

The published runs decay every parameter (batch-norm affine, biases and the neurons'
α and β too); `optimizer.decay_all_params=false` exempts all 0-d and 1-d parameters,
which are exactly those, as is usual elsewhere.  The neurons' own parameters can get
their own weight decay (`neuron_weight_decay`) and, by name, a multiple of the learning
rate (`neuron_lr_scale`), as GLIF trains its gates (no decay, gates at lr/10).  Without
`neuron_weight_decay`, a neuron whose own code exempts its parameters from weight decay says so
in its config (`own_weight_decay`, conf/neuron/glif.yaml), so that a recipe made for another
neuron (the same-recipe grid) does not decay them.

`optimizer.fused=true` uses torch's fused SGD/AdamW kernels: one kernel for all parameters,
and GradScaler hands them the inf check on the device instead of reading it back each step
(no host sync per step).  Opt-in until a GPU measurement (scripts/gpu_check.sh) shows it faster;
a checkpoint's optimizer state keeps the setting of the run that loads it (`load_optimizer_state`).
"""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from torch import nn

from arlif.errors import ConfigError
from arlif.neurons import neuron_layers
from arlif.runner.config import check_number

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
    fused = c.get("fused", False)  # absent in the configs of older checkpoints
    if not isinstance(fused, bool):
        raise ConfigError(f"optimizer.fused={fused!r} must be true or false")
    params = _param_groups(model, cfg)
    if c.name == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, fused=fused or None)
    return torch.optim.AdamW(params, lr=c.lr, betas=tuple(c.betas), fused=fused or None)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """`optimizer.load_state_dict(state)`, keeping the optimizer's own `fused` setting: the loaded param
    groups would otherwise bring back that of the run that wrote them (None in checkpoints written before
    the option), while GradScaler still hands the fused step its inf check."""
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, setting in zip(optimizer.param_groups, fused):
        group["fused"] = setting


def _param_groups(model: nn.Module, cfg) -> list[dict]:
    """The parameter groups: the network's (decay per `decay_all_params`), then the neurons' own parameters
    grouped by learning-rate scale when `neuron_weight_decay` or `neuron_lr_scale` set them apart."""
    c = cfg.optimizer
    own_wd, scales = c.get("neuron_weight_decay"), c.get("neuron_lr_scale") or {}
    if own_wd is not None:
        check_number(cfg, "optimizer.neuron_weight_decay", 0.0)
    elif cfg.neuron.get("own_weight_decay") is not None:
        check_number(cfg, "neuron.own_weight_decay", 0.0)
        own_wd = cfg.neuron.own_weight_decay
    for name in scales:
        check_number(cfg, f"optimizer.neuron_lr_scale.{name}", 0.0, low_open=True)
    apart = {}  # id -> (name, parameter) of the neuron parameters that get their own groups
    if own_wd is not None or scales:
        apart = {id(p): (n, p) for _, layer in neuron_layers(model) for n, p in layer.named_parameters()
                 if p.requires_grad}
    unknown = sorted(set(scales) - {name for name, _ in apart.values()})
    if unknown:
        raise ConfigError(f"optimizer.neuron_lr_scale names {unknown}, which no {cfg.neuron.name} neuron parameter "
                          f"is called; its parameters: {sorted({name for name, _ in apart.values()})}")
    rest = nn.ParameterList([p for p in model.parameters() if p.requires_grad and id(p) not in apart])
    if c.decay_all_params:
        groups = [{"params": list(rest), "weight_decay": c.weight_decay}]
    else:
        from timm.optim import param_groups_weight_decay  # importing timm takes seconds: only this recipe pays

        groups = param_groups_weight_decay(rest, c.weight_decay)
    apart_groups: dict[tuple[float, float], list] = {}  # (lr scale, weight decay) -> parameters
    for name, p in apart.values():
        decay = own_wd if own_wd is not None else c.weight_decay if c.decay_all_params or p.ndim > 1 else 0.0
        apart_groups.setdefault((float(scales.get(name, 1.0)), decay), []).append(p)
    groups += [{"params": ps, "weight_decay": decay, "lr": c.lr * scale}
               for (scale, decay), ps in apart_groups.items()]
    return [g for g in groups if g["params"]]


def build_scheduler(optimizer: torch.optim.Optimizer, cfg) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing stepped once per epoch, from the initial lr to `eta_min` over `t_max` epochs."""
    c = cfg.scheduler
    if c.name not in SCHEDULERS:
        raise ConfigError(f"scheduler.name={c.name!r} is not one of {list(SCHEDULERS)}")
    if isinstance(c.t_max, bool) or not isinstance(c.t_max, int) or c.t_max < 1:
        raise ConfigError(f"scheduler.t_max={c.t_max!r} must be a positive integer (epochs)")
    check_number(cfg, "scheduler.eta_min", 0.0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.t_max, eta_min=c.eta_min)
