"""One training and evaluation loop for every dataset and model.

Batches come from the loader batch-first: static images [B, C, H, W] (the model repeats
them over T) or event frames [B, T, C, H, W] (moved to [T, B, C, H, W] here).  The
model returns logits [T, B, K]; the prediction is the argmax of their sum over T.
Accuracies are in percent.  The loop computes only: files and logs are the caller's.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor, nn
from tqdm import tqdm

from arlif.monitor import FiringRateMonitor
from arlif.neurons import neuron_layers
from arlif.runtime import Precision, is_main_process


def count_parameters(model: nn.Module) -> int:
    """Trainable and frozen parameters (buffers such as fixed α are not parameters)."""
    return sum(p.numel() for p in model.parameters())


def neuron_parameters(model: nn.Module) -> dict[str, dict[str, float]]:
    """{"alpha": {layer: α}, "beta": {layer: β}} for every AR-LIF layer (empty for LIF)."""
    out = {"alpha": {}, "beta": {}}
    for name, module in neuron_layers(model):
        if hasattr(module, "alpha"):
            out["alpha"][name] = float(module.alpha.detach())
            out["beta"][name] = float(module.beta.detach())
    return out


class Trainer:
    """Runs epochs of training and evaluation of one model on one device.

    `request_stop(reason)` (from a signal handler, a watchdog, another rank) makes the
    current epoch end after its running batch; `stop_reason` then says why.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 device: torch.device, precision: Precision, T: int, temporal: bool,
                 batch_transform: Optional[Callable] = None, progress_bar: bool = True,
                 limit_train_batches: Optional[int] = None, limit_test_batches: Optional[int] = None):
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.device = device
        self.precision = precision
        self.T = T
        self.temporal = temporal
        self.batch_transform = batch_transform
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
        self.progress_bar = progress_bar and is_main_process()
        self.limit_train_batches = limit_train_batches
        self.limit_test_batches = limit_test_batches
        self.stop_reason: Optional[str] = None

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason

    def _forward(self, x: Tensor) -> Tensor:
        if self.temporal:
            return self.model(x.transpose(0, 1))
        return self.model(x, T=self.T)

    def _batches(self, loader: Iterable, limit: Optional[int], desc: str):
        total = len(loader) if limit is None else min(limit, len(loader))
        # disable=None: tqdm draws only on a terminal, so batch logs stay free of bar updates.
        return tqdm(itertools.islice(loader, total), total=total, desc=desc, unit="batch", leave=False,
                    dynamic_ncols=True, disable=None if self.progress_bar else True)

    def train_epoch(self, loader: Iterable, desc: str = "train") -> dict:
        """One pass over the training loader; returns train_loss, train_acc, images and seconds."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen, start, shown = 0, time.perf_counter(), 0.0
        bar = self._batches(loader, self.limit_train_batches, desc)
        for x, y in bar:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            labels = y
            if self.batch_transform is not None:
                x, y = self.batch_transform(x, y)
            with self.precision.autocast(self.device):
                logits = self._forward(x)
                loss = self.loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

            n = labels.shape[0]
            seen += n
            loss_sum += loss.detach() * n
            correct += (logits.detach().sum(0).argmax(-1) == labels).sum()
            now = time.perf_counter()
            if not bar.disable and now - shown > 1.0:  # reading the sums syncs the device
                shown = now
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}",
                                img_s=f"{seen / (now - start):.0f}")
            if self.stop_reason is not None:
                break
        seconds = time.perf_counter() - start
        return {"train_loss": loss_sum.item() / max(seen, 1), "train_acc": 100.0 * correct.item() / max(seen, 1),
                "images": seen, "seconds": seconds}

    @torch.no_grad()
    def evaluate(self, loader: Iterable, desc: str = "test") -> dict:
        """Loss, accuracy and per-layer firing rates over a loader, in fp32 as the published tests."""
        self.model.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        with FiringRateMonitor(self.model) as monitor:
            for x, y in self._batches(loader, self.limit_test_batches, desc):
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                logits = self._forward(x)
                loss_sum += self.loss_fn(logits, y).item() * y.shape[0]
                correct += (logits.sum(0).argmax(-1) == y).sum().item()
                seen += y.shape[0]
        return {"loss": loss_sum / max(seen, 1), "acc": 100.0 * correct / max(seen, 1), "samples": seen,
                "firing_rate": monitor.mean_rate(), "firing_rates": monitor.rates()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
