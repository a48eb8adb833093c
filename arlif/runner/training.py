"""What `train.py` does: a composed config and an output folder become a trained run folder.

`train` builds everything from the config (failing early on bad values), optionally resumes,
runs the epochs and leaves in the run directory the files of arlif.runner.records.  Launched
by torchrun or as a multi-task SLURM job it trains with DistributedDataParallel, rank 0 writing
the files.  A signal (arlif.runner.preemption) stops it with a checkpoint, from which it resumes
exactly; a non-finite loss stops it keeping the last good checkpoint.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from arlif.errors import ConfigError, StorageError
from arlif.kernels import resolve_backend
from arlif.models import count_parameters
from arlif.models.sync_bn import convert_sync_batchnorm
from arlif.neurons import neuron_layers
from arlif.runner import distributed, runlock
from arlif.runner.build import (batch_sizes, build_loss, build_model, check_model, load_data, make_test_loader,
                                make_train_loader, memory_format, sample_shape)
from arlif.runner.checkpoint import copy_checkpoint, save_checkpoint
from arlif.runner.compiling import compile_mode, compile_model
from arlif.runner.config import resolve, validate
from arlif.runner.debugging import anomaly_detection, fixed_batches_loader, log_overfit_verdict, overfit_verdict
from arlif.runner.steps import StepRunner, neuron_parameters
from arlif.runner.optim import build_optimizer, build_scheduler
from arlif.runner.preemption import StopSignals
from arlif.runner.profiling import StepProfiler
from arlif.runner.progress import Progress
from arlif.runner.records import BEST, LAST, METRICS
from arlif.runner.resume import (load_initial_weights, repair_best, restore_random_state, restore_training,
                                 resume_point)
from arlif.runner.runtime import (configure_determinism, git_commit, is_main_process, resolve_device,
                                  resolve_precision, rng_state, seed_everything)
from arlif.runner.tracking import RunRecorder

log = logging.getLogger(__name__)

# `trial` of train(): builds the run's search-trial reporter (arlif.search.trial), or None for a plain run.
TrialFactory = Callable[[DictConfig], Optional[object]]


def _build_trainable_model(cfg: DictConfig, device: torch.device) -> nn.Module:
    model = build_model(cfg)
    if not cfg.trainer.sync_batchnorm:
        return model
    if device.type != "cuda":
        raise ConfigError("trainer.sync_batchnorm=true needs CUDA devices (torch's SyncBatchNorm has no CPU "
                          "version); leave it false on the CPU")
    return convert_sync_batchnorm(model) if distributed.is_distributed() else model


class TrainingRun:
    """One training run on `device`: everything is built (and checked) on construction, then `fit()` runs.

    With several processes, every process builds one and calls the same methods.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, device: torch.device, holder: Optional[dict] = None,
                 trial: Optional[TrialFactory] = None):
        self.cfg, self.run_dir, self.holder = cfg, Path(run_dir), holder  # holder: arlif.runner.runlock's record
        precision = resolve_precision(cfg.trainer.precision, device)
        resume = resume_point(cfg, self.run_dir)

        configure_determinism(cfg.trainer.deterministic)
        seed_everything(cfg.seed + distributed.rank())  # rank 0 as a single process; DDP copies its weights
        model = _build_trainable_model(cfg, device)
        if resume is None:  # a resumed run's checkpoint holds its weights
            load_initial_weights(model, cfg)
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

        model.to(device, memory_format=memory_format(cfg))  # parameters keep their identity: the optimizer stays attached
        parallel = None
        if distributed.is_distributed():
            parallel = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        self.trainer = StepRunner(model, loss_fn, optimizer, device, precision, cfg.T, bundle.temporal,
                               None if overfit else bundle.batch_transform, cfg.trainer.progress_bar,
                               cfg.trainer.limit_train_batches, cfg.trainer.limit_test_batches, train_module=parallel)
        self.profiler = StepProfiler(cfg, self.run_dir, model, loss_fn, device, precision, len(self.train_loader))
        self.progress = Progress(has_val=self.val_loader is not None)
        if resume is not None:
            restore_training(self.trainer, self.scheduler, resume.state, resume.path, cfg)
            self.progress.load_state_dict(resume.state, resume.path)
            log.info("resuming from %s after epoch %d%s", resume.path, self.progress.epoch,
                     " and part of the next" if self.progress.partial_epoch else "")
        self.saved_epoch = self.progress.epoch  # the epochs last.pt holds
        self.compile_time_s = None  # trainer.compile: the warm-up's seconds, before any file of the run is written
        if compile_mode(cfg) is not None:
            eval_sizes = {size for loader in (self.test_loader, self.val_loader) if loader is not None
                          for size in batch_sizes(loader, cfg.batch_size, cfg.trainer.limit_test_batches)}
            self.compile_time_s = compile_model(self.trainer, cfg, sample_shape(cfg, bundle.temporal), eval_sizes)

        self.recorder = RunRecorder(cfg, self.run_dir, self.progress.wandb_id)
        self.recorder.truncate_metrics(self.progress.epoch)
        self.progress.wandb_id = self.recorder.wandb_id
        self.trial = trial(cfg) if trial is not None else None  # a hyperparameter search's trial reporter
        self.params = count_parameters(model)
        self.git_commit = git_commit()
        if resume is not None:
            repair_best(self.progress, resume.path, self.run_dir)
            restore_random_state(resume.state["rng"], resume.path)  # last: W&B draws from Python's generator
        log.info("%s: %s with %s neurons, %.2fM parameters, T=%d, on %s in %s%s", cfg.experiment.name,
                 cfg.model.name, cfg.neuron.name, self.params / 1e6, cfg.T, device, precision.name,
                 f", {distributed.world_size()} processes" if distributed.is_distributed() else "")

    def status(self) -> str:
        """finished | diverged (non-finite loss) | pruned (a search's pruner stopped it) | interrupted (stopped by
        a signal) | running (or killed)."""
        if self.progress.epoch == self.cfg.trainer.epochs:
            return "finished"
        if self.trainer.diverged:
            return "diverged"
        if self.trial is not None and self.trial.pruned:
            return "pruned"
        return "interrupted" if self.trainer.stop_reason is not None else "running"

    def summary(self) -> dict:
        """summary.json: best and final accuracy (percent), progress and provenance."""
        cfg, p = self.cfg, self.progress
        best_test, best_val = p.best["test"] or {}, p.best["val"]
        out = {"experiment": cfg.experiment.name, "dataset": cfg.dataset.name, "model": cfg.model.name,
               "neuron": cfg.neuron.name, "T": cfg.T, "seed": cfg.seed, "test_acc_final": p.last_test_acc,
               "test_acc_best": best_test.get("acc"), "best_epoch": best_test.get("epoch"),
               "epochs_completed": p.epoch, "epochs": cfg.trainer.epochs, "finished": p.epoch == cfg.trainer.epochs,
               "status": self.status(), "stop_reason": self.trainer.stop_reason, "params": self.params,
               "processes": distributed.world_size(), "wall_time_s": p.wall_time_s, "git_commit": self.git_commit,
               "holder": self.holder}
        if self.compile_time_s is not None:
            out["compile_time_s"] = self.compile_time_s
        if best_val is not None:
            out.update(val_acc_best=best_val["acc"], val_best_epoch=best_val["epoch"],
                       test_acc_at_val_best=best_val["test_acc"])
        if self.trial is not None:
            out["trial"] = self.trial.describe(out["status"])
        if cfg.trainer.overfit_batches is not None:
            out["overfit"] = overfit_verdict(self.run_dir / METRICS, cfg)
        return out

    def save(self) -> None:
        """Write last.pt with every process's random state (all processes call this; rank 0 writes)."""
        rng = distributed.all_gather_object(rng_state())
        if is_main_process():
            save_checkpoint({**self.trainer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng,
                             "config": OmegaConf.to_container(self.cfg), **self.progress.state_dict()},
                            self.run_dir / LAST)
        self.saved_epoch = self.progress.epoch

    def _stopped_inside(self, epoch: int, fit: dict) -> None:
        """Note why epoch `epoch` did not complete: the divergence advice, or where to resume."""
        trainer = self.trainer
        if trainer.diverged:
            last = self.run_dir / LAST
            kept = f"the last good checkpoint, {last}, is kept" if last.exists() else "no checkpoint was written"
            advice = "Lower optimizer.lr" + ("" if trainer.precision.dtype is None else
                                             ", or train in full precision (trainer.precision=fp32)")
            trainer.stop_reason = f"{trainer.stop_reason} in epoch {epoch}; {kept}. {advice}"
        else:
            self.progress.partial_epoch = {"epoch": epoch, "ranks": distributed.all_gather_object(fit["progress"])}

    def run_epoch(self, epoch: int) -> Optional[dict]:
        """Train and evaluate one epoch; returns its metrics, or None when training stopped inside it."""
        trainer = self.trainer
        start = time.perf_counter()
        resume = self.progress.resume_point(epoch)
        for _, neuron in neuron_layers(trainer.model):  # scheduled neuron constants (masked PSN's λ)
            neuron.on_epoch(epoch - 1, self.cfg.trainer.epochs)
        self.train_loader.batch_sampler.start(epoch, resume["batches"] if resume else 0)
        lr = trainer.optimizer.param_groups[0]["lr"]
        with self.profiler.profile(self.train_loader) as loader:  # the loader itself unless profiling
            fit = trainer.train_epoch(loader, desc=f"epoch {epoch}/{self.cfg.trainer.epochs}", resume=resume)
        if not fit["complete"]:
            self._stopped_inside(epoch, fit)
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
        epoch, best = metrics["epoch"], self.progress.best
        self.progress.record_epoch(metrics, seconds)
        self.recorder.log_epoch(metrics)  # before the checkpoint: a resume drops lines past its epoch
        self.save()
        if is_main_process() and self.progress.best_epoch() == epoch:
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
        """Run the remaining epochs, or until a stop; returns the final summary (also in summary.json).  A write the
        disk refuses stops the run: its StorageError is raised after summary.json says so, where it still can."""
        started, before = time.perf_counter(), self.progress.wall_time_s
        try:
            for epoch in range(self.progress.epoch + 1, self.cfg.trainer.epochs + 1):
                if self.trainer.should_stop():  # asked for during the last evaluation; all processes agree
                    break
                metrics = self.run_epoch(epoch)
                if metrics is None:
                    break
                summary = self.record(metrics, before + time.perf_counter() - started)
                if self.trial is not None and self.trial.should_prune(metrics, summary):
                    self.trainer.request_stop(self.trial.pruned)
                    break
        except StorageError as err:
            _record_refused_write(self, err, before + time.perf_counter() - started)
            raise
        self.progress.wall_time_s = before + time.perf_counter() - started
        status = self.status()
        if status == "diverged":
            log.error("%s", self.trainer.stop_reason)
        elif status == "interrupted":
            if self.progress.partial_epoch is not None:
                self.save()
            log.warning("stopped (%s) after %d epochs%s; %s holds the run: continue it with trainer.resume=auto",
                        self.trainer.stop_reason, self.progress.epoch,
                        " and part of the next" if self.progress.partial_epoch else "", self.run_dir / LAST)
        result = self.summary()
        self.recorder.write_summary(result)
        self.recorder.close()
        if "overfit" in result:
            log_overfit_verdict(result["overfit"])
        self.profiler.log_report(log)
        return result


def _record_refused_write(run: TrainingRun, err: StorageError, wall_time_s: float) -> None:
    """summary.json after a write the disk refused: interrupted, why, and the epochs last.pt holds (what a resume
    continues from), where it can still be written."""
    run.progress.wall_time_s = wall_time_s
    run.trainer.stop_reason = str(err)
    try:
        run.recorder.write_summary({**run.summary(), "epochs_completed": run.saved_epoch})
    except StorageError:
        log.warning("summary.json could not be updated either: it still says how the run stood before")
    run.recorder.close()


def train(cfg: DictConfig, run_dir: Path, trial: Optional[TrialFactory] = None) -> dict:
    """Train as configured into `run_dir`; returns the summary also written to summary.json.

    Config errors, including a model that does not fit the input, come before any data is read
    or device touched.  Under torchrun (or a multi-task SLURM job) every process calls this and
    rank 0's `run_dir` is the run's, which rank 0 holds (arlif.runner.runlock).  SIGTERM, SIGUSR1, SIGUSR2
    and Ctrl-C stop the run with a checkpoint (arlif.runner.preemption); the summary's `status` says how it
    ended.  `trial` (train.py passes arlif.search.trial.trial_reporter) makes the run a search trial.
    """
    cfg = resolve(cfg)
    validate(cfg)
    check_model(cfg)
    with distributed.session(resolve_device(cfg.trainer.device)) as device:
        run_dir = distributed.broadcast_object(Path(run_dir))
        with runlock.hold(run_dir) as holder:  # one run per folder (RunFolderBusy otherwise)
            run = TrainingRun(cfg, run_dir, device, holder, trial)
            with StopSignals(run.trainer.request_stop) as signals, \
                    anomaly_detection(cfg.trainer.detect_anomaly):  # debug=anomaly
                summary = run.fit()
                if signals.received is not None and summary["status"] != "interrupted":
                    # The run ended otherwise at the check that would have stopped it (it diverged, was pruned
                    # or had finished): the summary says so, and a sweep still stops after it (exit_as_run_ended).
                    summary = {**summary, "stop_signal": signals.received_name()}
                    run.recorder.write_summary(summary)
            distributed.barrier()  # rank 0 has written everything before any process leaves
    signals.hand_over()
    return summary
