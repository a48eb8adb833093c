"""Debug runs (conf/debug/): the overfit check's fixed batches and verdict, and anomaly detection.

A network whose gradients reach its weights can memorise a few batches.  With
`trainer.overfit_batches=N` a run trains on the same N batches every epoch: the first
N·batch_size training samples of this process, read once (so each image's augmentation is
drawn once and then frozen) and served in order, without batch mixing (mixup, cutmix: the
pipeline drops the batch transform).  `overfit_verdict` reads the run's metrics.jsonl and says
whether the training accuracy on them reached 100 %; `log_overfit_verdict` says so plainly.

`debug=anomaly` (`trainer.detect_anomaly`) runs training under torch's autograd anomaly
detection: the first backward op that returns nan ends the run, after torch's warning with the
traceback of the forward op that created it, as one `AnomalyFound` message.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, default_collate

from arlif.runner import distributed
from arlif.runner.records import metrics_lines
from arlif.errors import ConfigError, UserError

log = logging.getLogger(__name__)


class FixedBatches(Sampler[list[int]]):
    """Batches of consecutive indices 0..num_batches·batch_size − 1, the same in every epoch.

    `start(epoch, done)` skips the `done` batches a resumed epoch has already trained on, as
    `arlif.runner.distributed.EpochBatches.start` does, so that the pipeline drives both alike.
    """

    def __init__(self, num_batches: int, batch_size: int):
        self.num_batches, self.batch_size, self.done = num_batches, batch_size, 0

    def start(self, epoch: int, done: int = 0) -> None:
        self.done = done

    def __iter__(self):
        b = self.batch_size
        return (list(range(i * b, (i + 1) * b)) for i in range(self.done, self.num_batches))

    def __len__(self) -> int:
        return self.num_batches


def fixed_batches_loader(dataset: Dataset, cfg) -> DataLoader:
    """This process's `trainer.overfit_batches` fixed training batches, held in memory."""
    batches, size = cfg.trainer.overfit_batches, cfg.batch_size
    n, processes = batches * size, distributed.world_size()
    if len(dataset) < n * processes:
        raise ConfigError(f"trainer.overfit_batches={batches} x batch_size={size} x {processes} processes needs "
                          f"{n * processes} training samples but the {cfg.dataset.name} training set has "
                          f"{len(dataset)}; lower trainer.overfit_batches or batch_size")
    first = distributed.rank() * n
    x, y = default_collate([dataset[i] for i in range(first, first + n)])
    return DataLoader(TensorDataset(x, y), batch_sampler=FixedBatches(batches, size))


def overfit_verdict(metrics_path: Path, cfg) -> dict:
    """Whether and when the training accuracy on the fixed batches reached 100 % (from metrics.jsonl)."""
    rows = [json.loads(line) for line in metrics_lines(metrics_path)]
    accuracies = [row["train_acc"] for row in rows]
    first = next((row["epoch"] for row in rows if row["train_acc"] >= 100.0), None)
    batches = cfg.trainer.overfit_batches
    return {"batches": batches, "samples": batches * cfg.batch_size * distributed.world_size(),
            "reached_100": first is not None, "first_epoch_at_100": first,
            "steps_to_100": first * batches if first is not None else None, "epochs": len(rows),
            "best_train_acc": max(accuracies, default=None),
            "final_train_acc": accuracies[-1] if accuracies else None}


def log_overfit_verdict(verdict: dict) -> None:
    """One line: passed, or FAILED with the best accuracy reached and what to look at."""
    what = f"the {verdict['batches']} fixed training batches ({verdict['samples']} samples)"
    if verdict["reached_100"]:
        log.info("overfit check passed: 100 %% training accuracy on %s from epoch %d (%d steps)", what,
                 verdict["first_epoch_at_100"], verdict["steps_to_100"])
        return
    best = verdict["best_train_acc"]
    log.warning("overfit check FAILED: after %d epochs the training accuracy on %s is %s (best %s), not 100 %%: the "
                "model cannot fit them. Check that gradients reach the weights (neuron surrogate, threshold, frozen "
                "parameters) and the learning rate, or train longer (trainer.epochs)", verdict["epochs"], what,
                f"{verdict['final_train_acc']:.2f} %" if best is not None else "unknown",
                f"{best:.2f} %" if best is not None else "none")


class AnomalyFound(UserError):
    """Anomaly detection found a backward op returning nan; exits like a diverged run (docs/scaling.md)."""

    exit_code = 4


@contextlib.contextmanager
def anomaly_detection(enabled: bool) -> Iterator[None]:
    """torch's autograd anomaly detection inside the block when `enabled`; a nan it finds becomes AnomalyFound."""
    with torch.autograd.set_detect_anomaly(enabled):
        try:
            yield
        except RuntimeError as exc:
            if not (enabled and "returned nan values" in str(exc)):  # torch's anomaly message
                raise
            raise AnomalyFound(f"autograd anomaly detection: {exc} The warning above holds the traceback of the "
                               "forward operation that created it; the last checkpoint is from the last finished "
                               "epoch") from exc
