"""Benchmark one training step as `StepRunner.train_epoch` runs it (not a test): ms/step, images/s, peak memory.

The step is the project's own: the model, loss and optimizer built from the composed config
(`--experiment`, default the Table 1 CIFAR-10 preset: the published CIFAR-10 recipe) by `arlif.runner.build` and
`arlif.runner.optim`, run by `arlif.runner.steps.StepRunner.train_epoch` (autocast, GradScaler, loss,
optimizer, the device-side sums and the stop checks every 10 steps) on random batches of the
dataset's shape (no data is read, so no batch transform such as mixup runs).  Each flag switches
one change on:

    --fused-optimizer     torch's fused SGD/AdamW (`optimizer.fused=true`)
    --channels-last       the model in channels_last (`trainer.channels_last=true`)
    --compile MODE        none | default | reduce-overhead (`trainer.compile`, warm-up included)
    --neuron-path P       lean (the eager autograd.Function, default) | custom-op (the torch.library
                          operators, as before issue 27; what torch.compile traces) | loop (the readable
                          step loop: traced into the graph under --compile)
    --no-batched-bn       per-step batch norm as a loop over T (as before issue 27)

`--baseline` also times the step as it was before issue 27 (foreach optimizer, batch norm looped over
T, custom-op neuron call, NCHW, eager) in the same process, round-robin with the chosen one, and
prints the speed-up.  `--profile K` profiles K more steps of each and prints where the time goes:
busy time per step (union of the device's kernel intervals; on CPU, of the outermost operators), idle
%, kernels (operators) per step, host syncs per step, time by kernel family, graph breaks and
skipped CUDA graphs (`arlif.runner.profiling.step_breakdown`).

    PYTHONPATH=$PWD python scripts/bench_step.py --model resnet18 --T 4 --batch 16 --device cpu --baseline
    python scripts/bench_step.py --batch 128 --precision fp16 --fused-optimizer --compile reduce-overhead
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from arlif.data import BUILDERS, builder_name
from arlif.models.layers import SeqBatchNorm2d
from arlif.neurons.family import FamilyNeuron
from arlif.runner.build import build_loss, build_model, memory_format, sample_shape
from arlif.runner.compiling import compile_model
from arlif.runner.config import compose
from arlif.runner.steps import StepRunner
from arlif.runner.optim import build_optimizer
from arlif.runner.profiling import format_breakdown, step_breakdown
from arlif.runner.runtime import resolve_precision

DEFAULT_EXPERIMENT = "table1/cifar10_resnet18_t4"  # includes /recipe/cifar10; --model and --T override it


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                   help="conf/experiment/<name> (the recipe and dataset); '' for none")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--neuron", default="arlif")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="auto", help="auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16")
    p.add_argument("--fused-optimizer", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", choices=["none", "default", "reduce-overhead"], default="none")
    p.add_argument("--neuron-path", choices=["lean", "custom-op", "loop"], default="lean")
    p.add_argument("--batched-bn", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--baseline", action="store_true", help="also time the step as before issue 27, round-robin")
    p.add_argument("--steps", type=int, default=5, help="steps per timed sample")
    p.add_argument("--repeats", type=int, default=3, help="timed samples (median)")
    p.add_argument("--warmup", type=int, default=2, help="steps before timing")
    p.add_argument("--profile", type=int, metavar="K", help="then profile K steps of each variant")
    p.add_argument("--override", nargs="*", default=[], help="more Hydra overrides, e.g. model.bn_mode=shared")
    return p.parse_args(argv)


@dataclass
class Variant:
    name: str
    fused_optimizer: bool
    channels_last: bool
    compile: str
    neuron_path: str
    batched_bn: bool

    def describe(self) -> str:
        return (f"{'fused' if self.fused_optimizer else 'foreach'} optimizer, "
                f"{'batched' if self.batched_bn else 'looped'} BN, {self.neuron_path} neurons, "
                f"{'channels_last' if self.channels_last else 'NCHW'}, compile {self.compile}")


BEFORE = Variant("before issue 27", False, False, "none", "custom-op", False)


class Setup:
    """One variant's trainer, built from the config as a training run builds it, and its batches."""

    def __init__(self, args, variant: Variant):
        self.variant = variant
        overrides = [*([f"experiment={args.experiment}"] if args.experiment else []), f"model={args.model}", f"neuron={args.neuron}", f"T={args.T}",
                     f"batch_size={args.batch}", f"trainer.precision={args.precision}",
                     f"optimizer.fused={str(variant.fused_optimizer).lower()}",
                     f"trainer.channels_last={str(variant.channels_last).lower()}",
                     f"trainer.compile={'false' if variant.compile == 'none' else variant.compile}",
                     *(["neuron.backend=reference"] if variant.neuron_path == "loop" else []), *args.override]
        self.cfg = cfg = compose(overrides)
        self.device = torch.device(args.device)
        torch.manual_seed(0)
        model = build_model(cfg)
        for module in model.modules():
            if isinstance(module, SeqBatchNorm2d):
                module.batched = variant.batched_bn
            if isinstance(module, FamilyNeuron):
                module.eager_fast_path = variant.neuron_path == "lean"
        optimizer = build_optimizer(model, cfg)
        model.to(self.device, memory_format=memory_format(cfg))
        self.temporal = bool(cfg.dataset.get("temporal", BUILDERS[builder_name(cfg.dataset.builder)] == "events"))
        self.trainer = StepRunner(model, build_loss(cfg), optimizer, self.device,
                                  resolve_precision(cfg.trainer.precision, self.device), cfg.T, self.temporal,
                                  progress_bar=False)
        self.shape = sample_shape(cfg, self.temporal)
        self.compile_s = None
        if variant.compile != "none":
            self.compile_s = compile_model(self.trainer, cfg, self.shape, set())  # the training step only
        self.samples: list[float] = []

    def batches(self, n: int) -> list:
        gen = torch.Generator().manual_seed(len(self.samples))
        return [(torch.randn(self.cfg.batch_size, *self.shape, generator=gen),
                 torch.randint(0, self.cfg.dataset.num_classes, (self.cfg.batch_size,), generator=gen))
                for _ in range(n)]

    def run(self, n: int) -> float:
        """Seconds per step over n training steps (one `train_epoch` pass)."""
        batches = self.batches(n)
        sync(self.device)
        start = time.perf_counter()
        self.trainer.train_epoch(batches)
        sync(self.device)
        return (time.perf_counter() - start) / n


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB RSS (process)"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} torch threads; torch {torch.__version__}"


def main(argv=None) -> int:
    args = parse_args(argv)
    chosen = Variant("chosen", args.fused_optimizer, args.channels_last, args.compile, args.neuron_path,
                     args.batched_bn)
    setups = [Setup(args, v) for v in ([BEFORE] if args.baseline else []) + [chosen]]
    device = setups[0].device
    for s in setups:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        s.run(args.warmup)
        s.peak = peak_memory(device)
        # On stderr as it happens: a run stopped by a timeout (scripts/gpu_check.sh) still shows how far it got.
        compiled = "" if s.compile_s is None else f", compiled in {s.compile_s:.1f} s"
        warm = time.perf_counter() - started
        print(f"ready: {s.variant.name}{compiled}, {args.warmup} warm-up steps in {warm:.1f} s", file=sys.stderr,
              flush=True)
    for _ in range(args.repeats):  # round-robin: load from other processes hits every variant alike
        for s in setups:
            s.samples.append(s.run(args.steps))
    print(f"## Training step: {args.model}, {args.neuron}, T={args.T}, batch {args.batch}, {args.experiment}, "
          f"{setups[0].trainer.precision.name}\n\nMachine: {machine(device)}.  Median of {args.repeats} samples of "
          f"{args.steps} steps after {args.warmup} warm-up steps, variants timed round-robin.\n")
    print("| variant | ms/step | img/s | speed-up | peak memory | compile s |\n|---|---:|---:|---:|---:|---:|")
    base = statistics.median(setups[0].samples)
    for s in setups:
        step = statistics.median(s.samples)
        compile_s = "" if s.compile_s is None else f"{s.compile_s:.1f}"
        print(f"| {s.variant.name}: {s.variant.describe()} | {step * 1e3:.1f} | {args.batch / step:,.1f} | "
              f"{base / step:.2f}× | {s.peak} | {compile_s} |")
    if args.profile:
        for s in setups:
            report = step_breakdown(lambda: s.run(args.profile), args.profile, device)
            print(f"\n### Profile of {args.profile} steps: {s.variant.name} ({s.variant.describe()})\n")
            print(format_breakdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
