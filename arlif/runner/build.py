"""Building a run from its composed config: the network, the data and its loaders, and the loss.

Each builder checks the values it reads and fails with a ConfigError naming the key, so a
bad config stops before any data is read or device touched.
"""

from __future__ import annotations

from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, random_split

from arlif.data import DataBundle, build_data
from arlif.data.sample_seeds import SeededSamples
from arlif.errors import ConfigError
from arlif.loss import LOSSES, MSE_TARGETS, MeanOutputCELoss, TETMSELoss
from arlif.models import create_model
from arlif.neurons import build_neuron
from arlif.runner import distributed
from arlif.runner.config import check_number
from arlif.runner.preemption import ignore_stop_signals
from arlif.runner.runtime import resolve_num_workers

# The held-out validation split does not move with `seed`, so seeds are compared on one split.
VAL_SPLIT_SEED = 0
# Keys of conf/neuron/<name>.yaml that are not the neuron's constructor options (arlif.runner.optim reads them).
NOT_NEURON_OPTIONS = ("name", "own_weight_decay")


def neuron_kwargs(cfg: DictConfig) -> dict:
    """The neuron's own options: every key of conf/neuron/<name>.yaml but NOT_NEURON_OPTIONS.

    Checked by building one neuron, so that a key the neuron does not have, or a bad value,
    is reported as the neuron's, apart from whether the model fits the input.
    """
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.neuron, resolve=True).items() if k not in NOT_NEURON_OPTIONS}
    try:
        build_neuron(cfg.neuron.name, channels=1, T=cfg.T, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"neuron={cfg.neuron.name}: {exc} (conf/neuron/{cfg.neuron.name}.yaml)") from exc
    return kwargs


def build_model(cfg: DictConfig) -> nn.Module:
    """The configured network, sized by the dataset config and T (no data needed).

    Model keys added after a checkpoint was written (its config lacks them) take the values that
    reproduce what it trained: no tdBN threshold, one dropout mask per sequence, the
    architecture's own classifier dropout.
    """
    kwargs, m = neuron_kwargs(cfg), cfg.model
    try:
        return create_model(m.name, num_classes=cfg.dataset.num_classes,
                            in_channels=cfg.dataset.in_channels, image_size=cfg.dataset.image_size,
                            neuron=cfg.neuron.name, neuron_kwargs=kwargs, dropout=m.dropout, bn_mode=m.bn_mode,
                            T=cfg.T, tdbn_threshold=m.get("tdbn_threshold", 1.0),
                            dropout_mask=m.get("dropout_mask", "sequence"),
                            classifier_dropout=m.get("classifier_dropout"))
    except ValueError as exc:  # e.g. more poolings than the image has pixels for
        raise ConfigError(f"model={cfg.model.name} does not fit the {cfg.dataset.name} input "
                          f"(dataset.in_channels={cfg.dataset.in_channels}, "
                          f"dataset.image_size={cfg.dataset.image_size}): {exc}") from exc


def memory_format(cfg: DictConfig) -> torch.memory_format:
    """The model's memory format: channels_last with `trainer.channels_last` (absent in older configs)."""
    return torch.channels_last if cfg.trainer.get("channels_last", False) else torch.preserve_format


def check_model(cfg: DictConfig) -> None:
    """Build the network on the meta device (no memory, no data), so that a model that does not fit
    the input fails before anything is loaded."""
    with torch.device("meta"):
        build_model(cfg)


def sample_shape(cfg: DictConfig, temporal: bool) -> tuple:
    """The shape of one sample as the loaders yield it: [T,] C, H, W."""
    d = cfg.dataset
    return ((cfg.T,) if temporal else ()) + (d.in_channels, d.image_size, d.image_size)


def _check_samples(bundle: DataBundle, cfg: DictConfig) -> None:
    """The data's samples must have the shape the model is built for; reads one test sample."""
    d = cfg.dataset
    expected = sample_shape(cfg, bundle.temporal)
    found = tuple(bundle.test[0][0].shape)
    if found != expected:
        keys = ("T, " if bundle.temporal else "") + "dataset.in_channels, dataset.image_size, dataset.image_size"
        raise ConfigError(f"the {d.name} samples have shape {found} but the config expects {expected} ({keys}); "
                          f"fix those keys or conf/dataset/{d.name}.yaml")


def load_data(cfg: DictConfig) -> tuple[DataBundle, Dataset, Optional[Dataset]]:
    """The dataset bundle plus (train, validation) sets; validation is None unless `dataset.val_fraction` > 0.

    The validation images come out of the training set with its per-image augmentation
    (batch mixing such as mixup is applied to training batches only).
    """
    bundle = build_data(cfg)
    for key in ("num_classes", "in_channels", "image_size"):
        if getattr(bundle, key) != cfg.dataset[key]:
            raise ConfigError(f"dataset.{key}={cfg.dataset[key]} but the {cfg.dataset.name} data has "
                              f"{getattr(bundle, key)}; fix conf/dataset/{cfg.dataset.name}.yaml")
    _check_samples(bundle, cfg)
    fraction = cfg.dataset.val_fraction
    if fraction == 0:
        return bundle, bundle.train, None
    n_val = round(len(bundle.train) * fraction)
    if not 0 < n_val < len(bundle.train):
        raise ConfigError(f"dataset.val_fraction={fraction} leaves no validation or no training samples "
                          f"out of {len(bundle.train)}")
    train, val = random_split(bundle.train, [len(bundle.train) - n_val, n_val],
                              generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    return bundle, train, val


def _loader(dataset: Dataset, cfg: DictConfig, device: torch.device, **kwargs) -> DataLoader:
    return DataLoader(dataset, num_workers=resolve_num_workers(cfg.trainer.num_workers),
                      pin_memory=device.type == "cuda", worker_init_fn=ignore_stop_signals, **kwargs)


def make_train_loader(dataset: Dataset, cfg: DictConfig, device: torch.device,
                      generator: torch.Generator) -> DataLoader:
    """This process's shuffled batches of `dataset`, whole batches only (batch norm needs > 1 sample);
    call `loader.batch_sampler.start(epoch)` before each epoch (see arlif.runner.distributed.EpochBatches).
    Each sample's augmentation draws from its own seed (arlif.data.sample_seeds), whatever the workers."""
    batches = distributed.EpochBatches(dataset, cfg.batch_size, cfg.seed, generator)
    if len(batches) == 0:
        share = len(dataset) // distributed.world_size()
        raise ConfigError(f"batch_size={cfg.batch_size} (per process) is larger than the {share} training samples "
                          f"of each of the {distributed.world_size()} processes")
    return _loader(SeededSamples(dataset), cfg, device, batch_sampler=batches, generator=generator)


def make_test_loader(dataset: Dataset, cfg: DictConfig, device: torch.device) -> DataLoader:
    """This process's shard of `dataset` in order (all of it in a single process)."""
    return _loader(dataset, cfg, device, batch_size=cfg.batch_size, sampler=distributed.ShardSampler(len(dataset)))


def batch_sizes(loader: DataLoader, batch_size: int, limit: Optional[int] = None) -> set:
    """The sizes of the batches an in-order `loader` of `batch_size` yields (the first `limit` of them)."""
    full, rest = divmod(len(loader.sampler), batch_size)
    shown = full + (rest > 0) if limit is None else min(limit, full + (rest > 0))
    return ({batch_size} if min(full, shown) > 0 else set()) | ({rest} if rest and shown > full else set())


def build_loss(cfg) -> nn.Module:
    """The loss named by `cfg.loss`, with its values checked."""
    c = cfg.loss
    if c.name not in LOSSES:
        raise ConfigError(f"loss.name={c.name!r} is unknown; choose one of {list(LOSSES)}")
    if c.name == "mean_ce":
        return MeanOutputCELoss(check_number(cfg, "loss.label_smoothing", 0.0, 1.0, high_open=True))
    if check_number(cfg, "loss.tet_weight", 0.0) + check_number(cfg, "loss.mse_weight", 0.0) == 0:
        raise ConfigError("loss.tet_weight and loss.mse_weight are both 0: nothing would be trained")
    if c.mse_target not in MSE_TARGETS:
        raise ConfigError(f"loss.mse_target={c.mse_target!r} is not one of {list(MSE_TARGETS)}")
    check_number(cfg, "loss.phi")
    check_number(cfg, "loss.label_smoothing", 0.0, 1.0, high_open=True)
    return TETMSELoss(c.tet_weight, c.mse_weight, c.mse_target, c.phi, c.label_smoothing)
