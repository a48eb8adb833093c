"""A run's progress: the part of its state that is not a module's state dict.

It goes into every checkpoint (its keys at the checkpoint's top level) and comes back on
resume: epochs completed, the best test and validation epochs, the last test accuracy,
training wall time, the W&B run id, and `partial_epoch`, set only in a checkpoint written
inside an epoch (on a stop signal): that epoch and every process's progress through it, so
that a resumed run trains on exactly the batches that were left.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from arlif.errors import CheckpointError
from arlif.runner import distributed

log = logging.getLogger(__name__)

KEYS = ("epoch", "best", "last_test_acc", "wall_time_s", "wandb_id", "partial_epoch")


def _better(score: float, best: Optional[dict]) -> bool:
    return best is None or score > best["acc"]


class Progress:
    """The values behind `KEYS`, with the rules that update them."""

    def __init__(self, has_val: bool):
        self.has_val = has_val  # best.pt follows the validation split when there is one
        self.epoch, self.last_test_acc, self.wall_time_s = 0, None, 0.0
        self.best: dict = {"test": None, "val": None}
        self.wandb_id: Optional[str] = None
        self.partial_epoch: Optional[dict] = None

    def state_dict(self) -> dict:
        return {key: getattr(self, key) for key in KEYS}

    def load_state_dict(self, state: dict, path: Path) -> None:
        missing = [k for k in (*KEYS, "rng") if k not in state]
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks {missing}: it was written by an older "
                                  "version of arlif and cannot be resumed; start a new run folder")
        for key in KEYS:
            setattr(self, key, state[key])

    def best_epoch(self) -> Optional[int]:
        """The epoch best.pt holds: the best validation epoch with a validation split, else the best test epoch."""
        best = self.best["val" if self.has_val else "test"]
        return best["epoch"] if best else None

    def record_epoch(self, metrics: dict, wall_time_s: float) -> None:
        """Count epoch `metrics["epoch"]` as completed and update the best scores from its accuracies."""
        epoch = metrics["epoch"]
        if _better(metrics["test_acc"], self.best["test"]):
            self.best["test"] = {"acc": metrics["test_acc"], "epoch": epoch}
        if "val_acc" in metrics and _better(metrics["val_acc"], self.best["val"]):
            self.best["val"] = {"acc": metrics["val_acc"], "epoch": epoch, "test_acc": metrics["test_acc"]}
        self.epoch, self.last_test_acc, self.wall_time_s = epoch, metrics["test_acc"], wall_time_s

    def resume_point(self, epoch: int) -> Optional[dict]:
        """This process's progress through `epoch` when the checkpoint stopped inside it, else None (once)."""
        partial, self.partial_epoch = self.partial_epoch, None
        if partial is None or partial["epoch"] != epoch:
            return None
        if len(partial["ranks"]) != distributed.world_size():
            log.warning("epoch %d was interrupted with %d processes and this run has %d: it starts again from "
                        "its first batch", epoch, len(partial["ranks"]), distributed.world_size())
            return None
        return partial["ranks"][distributed.rank()]
