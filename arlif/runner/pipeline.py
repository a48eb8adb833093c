"""What `train.py` and `eval.py` do, as functions of a composed config and an output folder.

`train` builds everything from the config (failing early on bad values), optionally
resumes, runs the epochs and leaves in the run directory: config.yaml, metrics.jsonl
(one line per epoch), summary.json, last.pt and best.pt.  Launched by torchrun or as a
multi-task SLURM job it trains with DistributedDataParallel, rank 0 writing the files.
A signal (arlif.runner.preemption) stops it with a checkpoint, from which it resumes exactly;
a non-finite loss stops it keeping the last good checkpoint.  `evaluate_checkpoint`
rebuilds a run from a checkpoint's own config and writes eval.json.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, random_split

from arlif.runner import distributed, runlock
from arlif.runner.checkpoint import (BEST, LAST, check_model_fits, copy_checkpoint, find_resume_checkpoint, load_checkpoint,
                              save_checkpoint)
from arlif.runner.config import resolve, validate
from arlif.data import DataBundle, build_data
from arlif.data.sample_seeds import SeededSamples
from arlif.runner.debugging import anomaly_detection, fixed_batches_loader, log_overfit_verdict, overfit_verdict
from arlif.instruments.energy import SynapticOpCounter
from arlif.runner.engine import Trainer, count_parameters, neuron_parameters
from arlif.errors import CheckpointError, ConfigError
from arlif.kernels import resolve_backend
from arlif.loss import build_loss
from arlif.models import create_model
from arlif.runner.optim import build_optimizer, build_scheduler
from arlif.runner.preemption import StopSignals, ignore_stop_signals
from arlif.runner.profiling import StepProfiler
from arlif.runner.runtime import (configure_determinism, is_main_process, resolve_device, resolve_num_workers,
                           resolve_precision, rng_state, seed_everything, set_rng_state)
from arlif.search.trial import trial_reporter
from arlif.runner.tracking import RunRecorder, write_json

log = logging.getLogger(__name__)

# The held-out validation split does not move with `seed`, so seeds are compared on one split.
VAL_SPLIT_SEED = 0


def build_model(cfg: DictConfig) -> nn.Module:
    """The configured network, sized by the dataset config (no data needed)."""
    n = cfg.neuron
    try:
        return create_model(cfg.model.name, num_classes=cfg.dataset.num_classes,
                            in_channels=cfg.dataset.in_channels, image_size=cfg.dataset.image_size, neuron=n.name,
                            neuron_kwargs=dict(decay=n.decay, v_threshold=n.v_threshold,
                                               surrogate_width=n.surrogate_width, backend=n.backend),
                            dropout=cfg.model.dropout, bn_mode=cfg.model.bn_mode)
    except ValueError as exc:  # e.g. more poolings than the image has pixels for
        raise ConfigError(f"model={cfg.model.name} does not fit the {cfg.dataset.name} input "
                          f"(dataset.in_channels={cfg.dataset.in_channels}, "
                          f"dataset.image_size={cfg.dataset.image_size}): {exc}") from exc


def check_model(cfg: DictConfig) -> None:
    """Build the network on the meta device (no memory, no data), so that a model that does not fit
    the input fails before anything is loaded."""
    with torch.device("meta"):
        build_model(cfg)


def _check_samples(bundle: DataBundle, cfg: DictConfig) -> None:
    """The data's samples must have the shape the model is built for; reads one test sample."""
    d = cfg.dataset
    expected = ((cfg.T,) if bundle.temporal else ()) + (d.in_channels, d.image_size, d.image_size)
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


def git_commit() -> Optional[str]:
    """The code's git commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def resume_setting(cfg: DictConfig) -> Optional[str]:
    """`trainer.resume`, except that a requeued SLURM job (SLURM_RESTART_COUNT > 0) continues its run folder."""
    if cfg.trainer.resume is None and int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0:
        return "auto"
    return cfg.trainer.resume


def _check_same_network(state: dict, cfg: DictConfig, path: Path) -> None:
    theirs = state["config"]
    if (theirs["model"]["name"], theirs["neuron"]["name"]) != (cfg.model.name, cfg.neuron.name):
        raise CheckpointError(f"checkpoint {path} holds a {theirs['model']['name']} with {theirs['neuron']['name']} "
                              f"neurons but this run builds a {cfg.model.name} with {cfg.neuron.name} neurons; "
                              "resume with the checkpoint's model and neuron, or start a new run folder")


def _restore(trainer: Trainer, scheduler, state: dict, path: Path, cfg: DictConfig) -> None:
    check_model_fits(trainer.model, state, path, cfg)
    try:
        trainer.load_state_dict(state)
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not match this run's model, neuron or optimizer: "
                              f"{str(exc).splitlines()[0]}") from exc


def _better(score: float, best: Optional[dict]) -> bool:
    return best is None or score > best["acc"]


class TrainingRun:
    """One training run on `device`: everything is built (and checked) on construction, then `fit()` runs.

    `progress` is the part of the run's state that is not a module's state dict; it goes
    into every checkpoint and comes back on resume.  Its `partial_epoch` is set only in a
    checkpoint written inside an epoch (on a stop signal): that epoch and every process's
    progress through it, so that a resumed run trains on exactly the batches that were left.
    With several processes, every process builds one and calls the same methods.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, device: torch.device, holder: Optional[dict] = None):
        self.cfg, self.run_dir, self.holder = cfg, Path(run_dir), holder  # holder: arlif.runner.runlock's record
        precision = resolve_precision(cfg.trainer.precision, device)
        resume_path = find_resume_checkpoint(resume_setting(cfg), self.run_dir)
        state = load_checkpoint(resume_path) if resume_path else None
        if state is not None:
            _check_same_network(state, cfg, resume_path)

        configure_determinism(cfg.trainer.deterministic)
        seed_everything(cfg.seed + distributed.rank())  # rank 0 as a single process; DDP copies its weights
        model = self._build_model(cfg, device)
        resolve_backend(cfg.neuron.backend, device)  # a first-use C++ build happens here, not in epoch 1's timing
        optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(optimizer, cfg)
        loss_fn = build_loss(cfg)
        bundle, train_set, val_set = load_data(cfg)
        self.generator = torch.Generator()
        overfit = cfg.trainer.overfit_batches is not None  # fixed batches, no batch mixing (arlif.runner.debugging)
        self.train_loader = (fixed_batches_loader(train_set, cfg) if overfit
                             else make_train_loader(train_set, cfg, device, self.generator))
        self.test_loader = make_test_loader(bundle.test, cfg, device)
        self.val_loader = make_test_loader(val_set, cfg, device) if val_set is not None else None

        model.to(device)  # parameters keep their identity, so the optimizer stays attached
        parallel = None
        if distributed.is_distributed():
            parallel = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        self.trainer = Trainer(model, loss_fn, optimizer, device, precision, cfg.T, bundle.temporal,
                               None if overfit else bundle.batch_transform, cfg.trainer.progress_bar,
                               cfg.trainer.limit_train_batches, cfg.trainer.limit_test_batches, train_module=parallel)
        self.profiler = StepProfiler(cfg, self.run_dir, model, loss_fn, device, precision, len(self.train_loader))
        self.progress = {"epoch": 0, "best": {"test": None, "val": None}, "last_test_acc": None,
                         "wall_time_s": 0.0, "wandb_id": None, "partial_epoch": None}
        if state is not None:
            _restore(self.trainer, self.scheduler, state, resume_path, cfg)
            missing = [k for k in (*self.progress, "rng") if k not in state]
            if missing:
                raise CheckpointError(f"checkpoint {resume_path} lacks {missing}: it was written by an older "
                                      "version of arlif and cannot be resumed; start a new run folder")
            self.progress = {k: state[k] for k in self.progress}
            log.info("resuming from %s after epoch %d%s", resume_path, self.progress["epoch"],
                     " and part of the next" if self.progress["partial_epoch"] else "")

        self.recorder = RunRecorder(cfg, self.run_dir, self.progress["wandb_id"])
        self.recorder.truncate_metrics(self.progress["epoch"])
        self.progress["wandb_id"] = self.recorder.wandb_id
        self.trial = trial_reporter(cfg)  # None unless this run is a trial of a hyperparameter search
        self.params = count_parameters(model)
        self.git_commit = git_commit()
        if state is not None:
            self._repair_best(resume_path)
            self._restore_random_state(state["rng"], resume_path)  # last: W&B draws from Python's generator
        log.info("%s: %s with %s neurons, %.2fM parameters, T=%d, on %s in %s%s", cfg.experiment.name,
                 cfg.model.name, cfg.neuron.name, self.params / 1e6, cfg.T, device, precision.name,
                 f", {distributed.world_size()} processes" if distributed.is_distributed() else "")

    @staticmethod
    def _build_model(cfg: DictConfig, device: torch.device) -> nn.Module:
        model = build_model(cfg)
        if not cfg.trainer.sync_batchnorm:
            return model
        if device.type != "cuda":
            raise ConfigError("trainer.sync_batchnorm=true needs CUDA devices (torch's SyncBatchNorm has no CPU "
                              "version); leave it false on the CPU")
        return distributed.convert_sync_batchnorm(model) if distributed.is_distributed() else model

    def _best_epoch(self) -> Optional[int]:
        """The epoch best.pt holds: the best validation epoch with a validation split, else the best test epoch."""
        best = self.progress["best"]["val" if self.val_loader is not None else "test"]
        return best["epoch"] if best else None

    def _repair_best(self, resume_path: Path) -> None:
        """A kill between writing last.pt and copying it to best.pt leaves best.pt one best epoch behind."""
        boundary = self.progress["partial_epoch"] is None
        if is_main_process() and boundary and self.progress["epoch"] and self._best_epoch() == self.progress["epoch"]:
            copy_checkpoint(resume_path, self.run_dir / BEST)

    def _restore_random_state(self, states: list, path: Path) -> None:
        if len(states) == distributed.world_size():
            set_rng_state(states[distributed.rank()])
            return
        log.warning("%s was written by %d processes and this run has %d: the random generators start again from "
                    "the seed, so the rest of the run is not identical to an uninterrupted one",
                    path, len(states), distributed.world_size())

    def _resume_point(self, epoch: int) -> Optional[dict]:
        """This process's progress through `epoch` when the checkpoint stopped inside it, else None."""
        partial, self.progress["partial_epoch"] = self.progress["partial_epoch"], None
        if partial is None or partial["epoch"] != epoch:
            return None
        if len(partial["ranks"]) != distributed.world_size():
            log.warning("epoch %d was interrupted with %d processes and this run has %d: it starts again from "
                        "its first batch", epoch, len(partial["ranks"]), distributed.world_size())
            return None
        return partial["ranks"][distributed.rank()]

    def status(self) -> str:
        """finished | diverged (non-finite loss) | pruned (a search's pruner stopped it) | interrupted (stopped by
        a signal) | running (or killed)."""
        if self.progress["epoch"] == self.cfg.trainer.epochs:
            return "finished"
        if self.trainer.diverged:
            return "diverged"
        if self.trial is not None and self.trial.pruned:
            return "pruned"
        return "interrupted" if self.trainer.stop_reason is not None else "running"

    def summary(self) -> dict:
        """summary.json: best and final accuracy (percent), progress and provenance."""
        cfg, p = self.cfg, self.progress
        best_test, best_val = p["best"]["test"] or {}, p["best"]["val"]
        out = {"experiment": cfg.experiment.name, "dataset": cfg.dataset.name, "model": cfg.model.name,
               "neuron": cfg.neuron.name, "T": cfg.T, "seed": cfg.seed, "test_acc_final": p["last_test_acc"],
               "test_acc_best": best_test.get("acc"), "best_epoch": best_test.get("epoch"),
               "epochs_completed": p["epoch"], "epochs": cfg.trainer.epochs,
               "finished": p["epoch"] == cfg.trainer.epochs,
               "status": self.status(), "stop_reason": self.trainer.stop_reason, "params": self.params,
               "processes": distributed.world_size(), "wall_time_s": p["wall_time_s"], "git_commit": self.git_commit,
               "holder": self.holder}
        if best_val is not None:
            out.update(val_acc_best=best_val["acc"], val_best_epoch=best_val["epoch"],
                       test_acc_at_val_best=best_val["test_acc"])
        if self.trial is not None:
            out["trial"] = self.trial.describe(out["status"])
        if cfg.trainer.overfit_batches is not None:
            out["overfit"] = overfit_verdict(self.run_dir / "metrics.jsonl", cfg)
        return out

    def save(self) -> None:
        """Write last.pt with every process's random state (all processes call this; rank 0 writes)."""
        rng = distributed.all_gather_object(rng_state())
        if is_main_process():
            save_checkpoint({**self.trainer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng,
                             "config": OmegaConf.to_container(self.cfg), **self.progress}, self.run_dir / LAST)

    def run_epoch(self, epoch: int) -> Optional[dict]:
        """Train and evaluate one epoch; returns its metrics, or None when training stopped inside it."""
        trainer = self.trainer
        start = time.perf_counter()
        resume = self._resume_point(epoch)
        self.train_loader.batch_sampler.start(epoch, resume["batches"] if resume else 0)
        lr = trainer.optimizer.param_groups[0]["lr"]
        with self.profiler.profile(self.train_loader) as loader:  # the loader itself unless profiling
            fit = trainer.train_epoch(loader, desc=f"epoch {epoch}/{self.cfg.trainer.epochs}", resume=resume)
        if not fit["complete"]:
            if trainer.diverged:
                last = self.run_dir / LAST
                kept = f"the last good checkpoint, {last}, is kept" if last.exists() else "no checkpoint was written"
                advice = "Lower optimizer.lr" + ("" if trainer.precision.dtype is None else
                                                 ", or train in full precision (trainer.precision=fp32)")
                trainer.stop_reason = f"{trainer.stop_reason} in epoch {epoch}; {kept}. {advice}"
            else:
                self.progress["partial_epoch"] = {"epoch": epoch,
                                                  "ranks": distributed.all_gather_object(fit["progress"])}
            return None
        test = trainer.evaluate(self.test_loader)
        val = trainer.evaluate(self.val_loader, desc="val") if self.val_loader is not None else None
        self.scheduler.step()
        metrics = {"epoch": epoch, "lr": lr, "train_loss": fit["train_loss"], "train_acc": fit["train_acc"],
                   "test_loss": test["loss"], "test_acc": test["acc"]}
        if val is not None:
            metrics.update(val_loss=val["loss"], val_acc=val["acc"])
        earlier = resume["seconds"] if resume else 0.0  # the part trained before the interruption
        metrics.update(epoch_time_s=earlier + time.perf_counter() - start,
                       images_per_s=fit["images"] / fit["seconds"], firing_rate=test["firing_rate"],
                       firing_rates=test["firing_rates"], **neuron_parameters(trainer.model))
        return metrics

    def record(self, metrics: dict, seconds: float) -> dict:
        """Update the best scores, then write the epoch's metrics, checkpoints and summary; returns the summary."""
        epoch, best = metrics["epoch"], self.progress["best"]
        test_best = _better(metrics["test_acc"], best["test"])
        if test_best:
            best["test"] = {"acc": metrics["test_acc"], "epoch": epoch}
        val_best = "val_acc" in metrics and _better(metrics["val_acc"], best["val"])
        if val_best:
            best["val"] = {"acc": metrics["val_acc"], "epoch": epoch, "test_acc": metrics["test_acc"]}
        self.progress.update(epoch=epoch, last_test_acc=metrics["test_acc"], wall_time_s=seconds)
        self.recorder.log_epoch(metrics)  # before the checkpoint: a resume drops lines past its epoch
        self.save()
        if is_main_process() and self._best_epoch() == epoch:
            copy_checkpoint(self.run_dir / LAST, self.run_dir / BEST)
        summary = self.summary()
        self.recorder.write_summary(summary)
        val = (f"val loss {metrics['val_loss']:.4f} acc {metrics['val_acc']:.2f} (best {best['val']['acc']:.2f} "
               f"@{best['val']['epoch']}) | " if "val_acc" in metrics else "")
        log.info("epoch %d/%d lr %.4g | train loss %.4f acc %.2f | %stest loss %.4f acc %.2f (best %.2f @%d) | "
                 "%.1fs %.0f img/s | firing rate %.4f", epoch, self.cfg.trainer.epochs, metrics["lr"],
                 metrics["train_loss"], metrics["train_acc"], val, metrics["test_loss"], metrics["test_acc"],
                 best["test"]["acc"], best["test"]["epoch"], metrics["epoch_time_s"], metrics["images_per_s"],
                 metrics["firing_rate"])
        return summary

    def fit(self) -> dict:
        """Run the remaining epochs, or until a stop; returns the final summary (also in summary.json)."""
        started, before = time.perf_counter(), self.progress["wall_time_s"]
        for epoch in range(self.progress["epoch"] + 1, self.cfg.trainer.epochs + 1):
            if self.trainer.should_stop():  # asked for during the last evaluation; all processes agree
                break
            metrics = self.run_epoch(epoch)
            if metrics is None:
                break
            summary = self.record(metrics, before + time.perf_counter() - started)
            if self.trial is not None and self.trial.should_prune(metrics, summary):
                self.trainer.request_stop(self.trial.pruned)
                break
        self.progress["wall_time_s"] = before + time.perf_counter() - started
        status = self.status()
        if status == "diverged":
            log.error("%s", self.trainer.stop_reason)
        elif status == "interrupted":
            if self.progress["partial_epoch"] is not None:
                self.save()
            log.warning("stopped (%s) after %d epochs%s; %s holds the run: continue it with trainer.resume=auto",
                        self.trainer.stop_reason, self.progress["epoch"],
                        " and part of the next" if self.progress["partial_epoch"] else "", self.run_dir / LAST)
        result = self.summary()
        self.recorder.write_summary(result)
        self.recorder.close()
        if "overfit" in result:
            log_overfit_verdict(result["overfit"])
        self.profiler.log_report(log)
        return result


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train as configured into `run_dir`; returns the summary also written to summary.json.

    Config errors, including a model that does not fit the input, come before any data is read
    or device touched.  Under torchrun (or a multi-task SLURM job) every process calls this and
    rank 0's `run_dir` is the run's, which rank 0 holds (arlif.runner.runlock).  SIGTERM, SIGUSR1, SIGUSR2
    and Ctrl-C stop the run with a checkpoint (arlif.runner.preemption); the summary's `status` says how it ended.
    """
    cfg = resolve(cfg)
    validate(cfg)
    check_model(cfg)
    with distributed.session(resolve_device(cfg.trainer.device)) as device:
        run_dir = distributed.broadcast_object(Path(run_dir))
        with runlock.hold(run_dir) as holder:  # one run per folder (RunFolderBusy otherwise)
            run = TrainingRun(cfg, run_dir, device, holder)
            with StopSignals(run.trainer.request_stop) as signals, \
                    anomaly_detection(cfg.trainer.detect_anomaly):  # debug=anomaly
                summary = run.fit()
            distributed.barrier()  # rank 0 has written everything before any process leaves
    signals.hand_over()
    return summary


def _apply_overrides(run_cfg: DictConfig, cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Copy the keys the user overrode on the eval command line from `cfg` into the checkpoint's config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key == "checkpoint" or key.startswith("hydra"):
            continue
        if override.is_delete() or override.package:
            raise ConfigError(f"eval.py cannot apply {override.input_line!r}; override plain keys or groups only")
        OmegaConf.update(run_cfg, key, OmegaConf.select(cfg, key), merge=False, force_add=True)


def evaluate_checkpoint(cfg: DictConfig, out_dir: Path, overrides: Sequence[str] = ()) -> dict:
    """Test a checkpoint (file, or a run directory's best.pt) and write eval.json into `out_dir`.

    The model and data come from the checkpoint's config, with `overrides` (command-line
    overrides, e.g. ["data_dir=/data", "trainer.device=cpu"]) taken from `cfg`.
    """
    try:
        path = Path(cfg.checkpoint)
    except MissingMandatoryValue:
        raise ConfigError("checkpoint is not set: run `python eval.py checkpoint=PATH` "
                          "(a .pt file or a run directory)") from None
    if path.is_dir():
        path = path / BEST
    state = load_checkpoint(path)
    run_cfg = OmegaConf.create(state["config"])
    _apply_overrides(run_cfg, cfg, overrides)
    run_cfg = resolve(run_cfg)
    validate(run_cfg)
    device = resolve_device(run_cfg.trainer.device)
    model = build_model(run_cfg)
    check_model_fits(model, state, path, run_cfg)
    model.load_state_dict(state["model"])
    bundle, _, _ = load_data(run_cfg)
    loader = make_test_loader(bundle.test, run_cfg, device)
    model.to(device)
    trainer = Trainer(model, build_loss(run_cfg), None, device, resolve_precision("fp32", device), run_cfg.T,
                      bundle.temporal, progress_bar=run_cfg.trainer.progress_bar,
                      limit_test_batches=run_cfg.trainer.limit_test_batches)
    with SynapticOpCounter(model) as ops:
        test = trainer.evaluate(loader)
    result = {"checkpoint": str(path), "epoch": state["epoch"], "experiment": run_cfg.experiment.name,
              "dataset": run_cfg.dataset.name, "model": run_cfg.model.name, "neuron": run_cfg.neuron.name,
              "T": run_cfg.T, "test_acc": test["acc"], "test_loss": test["loss"], "test_samples": test["samples"],
              "firing_rate": test["firing_rate"], "firing_rates": test["firing_rates"],
              "params": count_parameters(model), **neuron_parameters(model), "energy": ops.report().as_dict()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "eval.json", result)
    return result
