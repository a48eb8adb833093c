"""The batch level of a run: `StepRunner` trains or evaluates one pass over a loader (TrainingRun, in
arlif.runner.training, owns the epochs around it), for every dataset and model.

Batches come from the loader batch-first: static images [B, C, H, W] (the model repeats
them over T) or event frames [B, T, C, H, W] (moved to [T, B, C, H, W] here).  The
model returns logits [T, B, K]; the prediction is the argmax of their sum over T.
Accuracies are in percent.  The loop computes only: files and logs are the caller's.
With several processes (arlif.runner.distributed) each trains on its share of every epoch and
evaluates its shard of the test set; the metrics returned are over all processes.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor, nn
from tqdm import tqdm

from arlif.runner import distributed
from arlif.instruments.firing_rates import FiringRateMonitor, mean_rate
from arlif.neurons import neuron_layers
from arlif.runner.optim import load_optimizer_state
from arlif.runner.runtime import Precision, is_main_process

# Batches between checks for a stop request or a non-finite loss.  A check reads a value back from
# the device, and with several processes is a collective, so all of them stop after the same batch.
CHECK_EVERY = 10


def neuron_parameters(model: nn.Module) -> dict[str, dict]:
    """{name: {layer: value}} of every neuron layer's learnable values (`SpikingNeuron.parameter_values`:
    AR-LIF's α and β, GLIF's gates, PLIF's decay, ...).

    A per-layer scalar is a float; a vector (per channel, per step, PSN's T×T weight) is
    {"mean", "min", "max"} over its entries.  "alpha" and "beta" (Fig. 3) are always present,
    empty for neurons without them.
    """
    out: dict[str, dict] = {"alpha": {}, "beta": {}}
    for layer, module in neuron_layers(model):
        for name, value in module.parameter_values().items():
            value = value.detach().float()
            out.setdefault(name, {})[layer] = (value.item() if value.dim() == 0 else
                                               {"mean": value.mean().item(), "min": value.min().item(),
                                                "max": value.max().item()})
    return out


class StepRunner:
    """Runs one pass of training or evaluation over a loader, batch by batch, for one model on one device.

    `train_module` runs the training forward passes (the DistributedDataParallel wrapper of
    `model` when several processes train); evaluation and state dicts use `model` itself.
    `request_stop(reason)` (from a signal handler) makes the training pass end at its next
    check; a non-finite loss ends it too and sets `diverged`.  `stop_reason` then says why.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 device: torch.device, precision: Precision, T: int, temporal: bool,
                 batch_transform: Optional[Callable] = None, progress_bar: bool = True,
                 limit_train_batches: Optional[int] = None, limit_test_batches: Optional[int] = None,
                 train_module: Optional[nn.Module] = None):
        self.model = model
        self.train_module = train_module if train_module is not None else model
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
        self.diverged = False
        # Attached for good, recording only inside `evaluate`: a compiled model keeps its graphs.
        self.monitor = FiringRateMonitor(model).attach()
        self.monitor.recording = False
        self.mark_steps = False  # mark each step for CUDA graph trees (trainer.compile=reduce-overhead)

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def should_stop(self, loss_sum: Optional[Tensor] = None, batch: int = 0) -> bool:
        """Whether to stop now: a stop was requested, or `loss_sum` (the pass's running loss) is nan or inf.

        With several processes this is a collective: all call it after the same batch and all get
        the same answer.
        """
        bad = ~torch.isfinite(loss_sum) if loss_sum is not None else torch.tensor(False, device=self.device)
        requested, diverged = distributed.any_rank(
            torch.stack([torch.tensor(self.stop_reason is not None, device=self.device), bad]))
        if diverged and not self.diverged:
            self.diverged = True
            self.stop_reason = f"the training loss became nan or inf (found after batch {batch})"
        elif requested:
            self.request_stop("another process received a stop signal")
        return requested or diverged

    def _forward(self, module: nn.Module, x: Tensor) -> Tensor:
        if self.temporal:
            return module(x.transpose(0, 1))
        return module(x, T=self.T)

    @staticmethod
    def _total(loader: Iterable, limit: Optional[int]) -> int:
        return len(loader) if limit is None else min(limit, len(loader))

    def _bar(self, batches: Iterable, total: int, desc: str, initial: int = 0):
        # disable=None: tqdm draws only on a terminal, so batch logs stay free of bar updates.
        return tqdm(batches, total=total, initial=initial, desc=desc, unit="batch", leave=False,
                    dynamic_ncols=True, disable=None if self.progress_bar else True)

    def train_epoch(self, loader: Iterable, desc: str = "train", resume: Optional[dict] = None) -> dict:
        """Train on the loader's batches, or on the rest of an interrupted pass.

        `resume` is the `progress` an interrupted pass returned (the loader must then skip the
        batches it counts).  Returns `progress` (this process's batches done, loss and correct
        sums, samples and seconds: what a mid-epoch checkpoint keeps) and `complete`; a complete
        pass also returns train_loss, train_acc and images over all processes, and seconds.
        """
        self.train_module.train()
        p = resume or {"batches": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        loss_sum = torch.tensor(p["loss_sum"], device=self.device, dtype=torch.float64)
        correct = torch.tensor(p["correct"], device=self.device, dtype=torch.int64)
        seen, done, start, shown = p["seen"], p["batches"], time.perf_counter(), 0.0
        total = self._total(loader, self.limit_train_batches)
        bar = self._bar(itertools.islice(loader, max(total - done, 0)), total, desc, initial=done)
        for x, y in bar:
            if self.mark_steps:
                torch.compiler.cudagraph_mark_step_begin()
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            labels = y
            if self.batch_transform is not None:
                x, y = self.batch_transform(x, y)
            with self.precision.autocast(self.device):
                logits = self._forward(self.train_module, x)
                loss = self.loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

            n = labels.shape[0]
            seen += n
            done += 1
            loss_sum += loss.detach() * n
            correct += (logits.detach().sum(0).argmax(-1) == labels).sum()
            now = time.perf_counter()
            if not bar.disable and now - shown > 1.0:  # reading the sums syncs the device
                shown = now
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}",
                                img_s=f"{(seen - p['seen']) / (now - start):.0f}")
            if (done % CHECK_EVERY == 0 or done == total) and self.should_stop(loss_sum, done):
                break
        seconds = p["seconds"] + time.perf_counter() - start
        progress = {"batches": done, "loss_sum": loss_sum.item(), "correct": int(correct.item()), "seen": seen,
                    "seconds": seconds}
        out = {"progress": progress, "complete": done >= total and not self.diverged}
        if out["complete"]:
            sums = distributed.all_reduce_sum(torch.tensor([progress["loss_sum"], progress["correct"], seen],
                                                           dtype=torch.float64, device=self.device))
            loss_total, correct_total, seen_total = sums.tolist()
            out.update(train_loss=loss_total / max(seen_total, 1), train_acc=100.0 * correct_total / max(seen_total, 1),
                       images=int(seen_total), seconds=seconds)
        return out

    @torch.no_grad()
    def evaluate(self, loader: Iterable, desc: str = "test") -> dict:
        """Loss, accuracy and per-layer firing rates over a loader, in fp32 as the published tests.

        With several processes each evaluates its own shard (arlif.runner.distributed.ShardSampler) with
        rank 0's batch-norm statistics, and the results are combined over all samples.
        """
        distributed.broadcast_buffers(self.model)
        self.model.eval()
        # Device-side sums: no host sync per batch; read once after the loop.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        monitor = self.monitor
        monitor.reset()
        monitor.recording = True
        try:
            total = self._total(loader, self.limit_test_batches)
            for x, y in self._bar(itertools.islice(loader, total), total, desc):
                if self.mark_steps:
                    torch.compiler.cudagraph_mark_step_begin()
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                logits = self._forward(self.model, x)
                loss_sum += self.loss_fn(logits, y).double() * y.shape[0]
                correct += (logits.sum(0).argmax(-1) == y).sum()
                seen += y.shape[0]
        finally:
            monitor.recording = False
        loss_sum, correct = loss_sum.item(), int(correct.item())
        rates = monitor.rates()
        if distributed.is_distributed():
            loss_sum, correct, seen, rates = self._combine(loss_sum, correct, seen, rates,
                                                           [name for name, _ in monitor.layers])
        return {"loss": loss_sum / max(seen, 1), "acc": 100.0 * correct / max(seen, 1), "samples": seen,
                "firing_rate": mean_rate(rates), "firing_rates": rates}

    def _combine(self, loss_sum: float, correct: int, seen: int, rates: dict, layers: list) -> tuple:
        """Sums over all processes; a layer's rate is the sample-weighted mean of the processes' rates
        (every sample has as many neurons in a layer)."""
        local = [loss_sum, correct, seen, *(rates.get(name, 0.0) * seen for name in layers)]
        totals = distributed.all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=self.device)).tolist()
        loss_sum, correct, seen = totals[0], int(totals[1]), int(totals[2])
        rates = {name: value / seen for name, value in zip(layers, totals[3:])} if seen else {}
        return loss_sum, correct, seen, rates

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
