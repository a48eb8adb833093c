"""Where a training step's time and memory go: `trainer.profile_steps` (conf/debug/profile.yaml).

`StepProfiler.profile(loader)` serves the first training pass it is given: after
`trainer.profile_warmup` steps, torch.profiler (CPU, and CUDA where present) records
`trainer.profile_steps` training steps, and the pass ends.  A step runs from one batch
request to the next, so it holds loading the batch, forward, loss, backward and optimizer.

Time by category: every convolution, batch-norm and neuron module and the loss run inside a
record_function range named after the layer ("neuron: blocks.0.act1").  Each recorded op's
self time goes to the category of the innermost range around it; a backward op goes to the
range of the forward op that created it (matched by autograd sequence number), so the fused
neurons' autograd Function and the reference loop's many small ops are counted alike.
torch's own ranges give the optimizer and data loading; convolution and batch-norm ops outside
any module go by their names; everything else is `other`.  Self times add up to the profiled
steps' time.  Memory: in the last warm-up step, saved-tensor hooks weigh what autograd keeps
for backward, by the category of the module that saved it (each storage once, parameters
excluded).  Rank 0 writes profile/trace.json.gz (Chrome, Perfetto), profile/profile.json and
profile/profile.txt into the run folder; `log_report` prints the tables.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import weakref
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, record_function, schedule

from arlif.errors import ConfigError
from arlif.kernels import resolve_backend
from arlif.neurons import SpikingNeuron, neuron_layers
from arlif.runner.runtime import Precision, is_main_process

CATEGORIES = ("convolution", "batch norm", "neuron", "loss", "optimizer", "data loading", "other")
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "
OTHER = ("other", None)


def labelled_modules(model: nn.Module, loss_fn: nn.Module, layers: bool = True) -> list[tuple[str, str, nn.Module]]:
    """(category, layer name, module) for every convolution, batch norm and neuron layer (unless not
    `layers`: a compiled model runs as fused graphs, which per-layer ranges would split), and the loss."""
    out = []
    for name, module in model.named_modules() if layers else ():
        if isinstance(module, SpikingNeuron):
            out.append(("neuron", name, module))
        elif isinstance(module, nn.modules.conv._ConvNd):
            out.append(("convolution", name, module))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            out.append(("batch norm", name, module))
    return [*out, ("loss", "loss", loss_fn)]


class ModuleRanges:
    """Forward hooks that run each labelled module inside a record_function range `"<category>: <layer>"`,
    and know the category of the innermost labelled module running now."""

    def __init__(self, modules: list[tuple[str, str, nn.Module]]):
        self.labels = {f"{category}: {name}": (category, name) for category, name, _ in modules}
        self.open: list[tuple[str, record_function]] = []
        self.handles = []
        for category, name, module in modules:
            label = f"{category}: {name}"
            self.handles.append(module.register_forward_pre_hook(
                lambda _module, _args, label=label, category=category: self._enter(label, category)))
            self.handles.append(module.register_forward_hook(lambda *_: self.open.pop()[1].__exit__(None, None, None)))

    def _enter(self, label: str, category: str) -> None:
        span = record_function(label)
        span.__enter__()
        self.open.append((category, span))

    def current(self) -> str:
        return self.open[-1][0] if self.open else "other"

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class SavedTensorBytes:
    """Saved-tensor hooks weighing what autograd keeps for backward, by the module category that saved it.

    Weighed when backward first unpacks a tensor, that is at the end of the forward: tensors saved by graph
    parts freed during the forward no longer count, and each storage counts once, for its first saver.
    Parameters are excluded: they are kept anyway.
    """

    def __init__(self, ranges: ModuleRanges, model: nn.Module):
        self.ranges = ranges
        self.skip = {(p.untyped_storage().data_ptr(), p.device) for p in model.parameters()}
        self.packed: list = []
        self.bytes: Counter = Counter()

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.packed.append((weakref.ref(tensor), self.ranges.current()))
        return tensor

    def _unpack(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.packed:
            self._weigh()
        return tensor

    def _weigh(self) -> None:
        seen = set(self.skip)
        for ref, category in self.packed:
            tensor = ref()
            if tensor is None:  # its graph was freed during the forward
                continue
            storage = tensor.untyped_storage()
            key = (storage.data_ptr(), tensor.device)
            if key not in seen:
                seen.add(key)
                self.bytes[category] += storage.nbytes()
        self.packed = []

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)


def attribute_time(events: Iterable, labels: dict) -> tuple[Counter, Counter, dict, Counter]:
    """(CPU µs by category, device µs by category, {neuron layer: Counter of CPU and device µs in forward
    and backward}, CPU µs of each op name counted as other).

    Walks every recorded CPU op tree in time order, so that a forward op is seen before the backward
    ops that refer to it by (thread, sequence number).
    """
    cpu, device, layers, other = Counter(), Counter(), defaultdict(Counter), Counter()
    created_by: dict = {}  # (forward thread, sequence number) -> (category, layer)
    roots = sorted((e for e in events if e.cpu_parent is None and e.device_type == DeviceType.CPU),
                   key=lambda e: e.time_range.start)
    stack = [(root, OTHER, False) for root in reversed(roots)]
    while stack:
        event, inherited, backward = stack.pop()
        name = event.name
        if name in labels:
            here = labels[name]
        elif name.startswith(BACKWARD_PREFIX):
            backward = True
            here = created_by.get((event.fwd_thread, event.sequence_nr)) or (_by_name(name), None)
        elif inherited != OTHER:
            here = inherited
        elif name.startswith("Optimizer."):
            here = ("optimizer", None)
        elif name.startswith("enumerate(DataLoader)"):
            here = ("data loading", None)
        else:
            here = (_by_name(name), None)
        if not backward and event.sequence_nr >= 0 and here != OTHER:
            created_by.setdefault((event.thread, event.sequence_nr), here)
        cpu[here[0]] += event.self_cpu_time_total
        device[here[0]] += event.self_device_time_total
        if here[0] == "neuron":
            phase = "backward" if backward else "forward"
            layers[here[1]][phase] += event.self_cpu_time_total
            layers[here[1]][f"{phase}_device"] += event.self_device_time_total
        elif here == OTHER:
            other[name] += event.self_cpu_time_total
        stack.extend((child, here, backward) for child in reversed(event.cpu_children))
    return cpu, device, dict(layers), other


def _by_name(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith("arlif::neuron") or "neuronfunction" in lowered:  # the fused neuron operators (also
        return "neuron"  # inside a compiled graph) and the C++ engine's eager node
    if "conv" in lowered:
        return "convolution"
    if "batch_norm" in lowered or "batchnorm" in lowered:
        return "batch norm"
    if "_amp_" in lowered:  # GradScaler's unscale and scale update
        return "optimizer"
    return "other"


# Families of device kernels (on CPU: of the outermost operators) for `step_breakdown`, by name, after `_by_name`.
FAMILIES = ("convolution", "batch norm", "neuron", "layout", "optimizer", "copies", "other")
_FAMILY_MARKS = (
    ("neuron", ("neuron", "_forward_kernel", "_backward_kernel")),
    ("batch norm", ("bn_fw", "bn_bw", "welford", "batch_norm")),
    ("convolution", ("cudnn", "gemm", "xmma", "cutlass", "implicit_convolve", "winograd", "mkldnn")),
    ("optimizer", ("multi_tensor_apply", "sgd", "adam", "foreach", "_amp_")),
    ("layout", ("nchwtonhwc", "nhwctonchw", "permute", "transpose", "contiguous")),
    ("copies", ("copy", "memcpy", "memset", "cat", "stack", "fill", "clone")),
)
SYNCS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def kernel_family(name: str) -> str:
    """The family (`FAMILIES`) of a kernel or operator, by its name."""
    category = _by_name(name)
    if category != "other":
        return category
    lowered = name.lower()
    return next((family for family, marks in _FAMILY_MARKS if any(m in lowered for m in marks)), "other")


def _outermost_ops(events) -> list[tuple]:
    """(event, family) of the CPU events inside no other but structural ranges (autograd's evaluate_function
    wrappers, the optimizer's step, profiler steps): ATen and custom ops, autograd Functions and nodes (the
    neurons' eager call: its kernels run inside them), compiled regions.  Ops inside the optimizer's step
    are of the optimizer family, others by `kernel_family`."""
    out = []
    stack = [(e, None) for e in events if e.cpu_parent is None and e.device_type == DeviceType.CPU]
    while stack:
        event, family = stack.pop()
        if event.name.startswith(("autograd::engine::", "Optimizer.", "ProfilerStep", "enumerate(")):
            inner = "optimizer" if event.name.startswith("Optimizer.") else family
            stack.extend((child, inner) for child in event.cpu_children)
        else:
            out.append((event, family or kernel_family(event.name)))
    return out


def _in_neuron(event) -> bool:
    """Whether an event runs inside a neuron op (the CPU engine reads its α and β on the host: no sync there)."""
    while event is not None:
        if kernel_family(event.name) == "neuron":
            return True
        event = event.cpu_parent
    return False


def _union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def step_breakdown(run, steps: int, device: torch.device) -> dict:
    """Profile `run()` (which runs `steps` training steps) and say where its time goes, per step: wall
    and busy ms (the union of the device's kernel intervals; on CPU, of the outermost operators), idle %,
    kernels, host syncs (reads of a device value: `.item()` outside the neurons, stream synchronizations), ms by kernel
    family, and the graph breaks and skipped CUDA graphs torch.compile has counted in this process."""
    from torch._dynamo.utils import counters

    cuda = device.type == "cuda"
    with torch.profiler.profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize(device)
        wall_s = time.perf_counter() - start
    events = prof.events()
    kernels = ([(e, kernel_family(e.name)) for e in events if e.device_type == DeviceType.CUDA] if cuda
               else _outermost_ops(events))
    busy_us = _union_us([(e.time_range.start, e.time_range.end) for e, _ in kernels])
    span_us = _union_us([(e.time_range.start, e.time_range.end) for e in events if e.cpu_parent is None])
    families = Counter()
    for e, family in kernels:
        families[family] += e.time_range.elapsed_us()
    per_step = lambda us: round(us / steps / 1000, 3)  # noqa: E731
    return {
        "wall_ms": round(wall_s / steps * 1000, 3), "busy_ms": per_step(busy_us),
        "idle_pct": round(100 * (1 - busy_us / span_us), 1) if span_us else 0.0,
        "kernels": round(len(kernels) / steps, 1), "kernel_kind": "CUDA kernels" if cuda else "CPU operators",
        "host_syncs": round(sum(e.name in SYNCS and not _in_neuron(e) for e in events) / steps, 2),
        "family_ms": {f: per_step(families[f]) for f in FAMILIES},
        "graph_breaks": sum(counters["graph_break"].values()),
        "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
        "graph_break_reasons": sorted(counters["graph_break"]),
    }


def format_breakdown(report: dict) -> str:
    """`step_breakdown`'s report as a Markdown table."""
    rows = [("wall ms/step (profiled)", report["wall_ms"]), ("busy ms/step", report["busy_ms"]),
            ("idle %", report["idle_pct"]), (f"{report['kernel_kind']} per step", report["kernels"]),
            ("host syncs per step", report["host_syncs"]),
            *((f"ms/step: {family}", ms) for family, ms in report["family_ms"].items()),
            ("graph breaks (this process)", report["graph_breaks"]),
            ("skipping cudagraphs messages (this process)", report["cudagraph_skips"])]
    lines = ["| measure | value |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)]
    if report["graph_break_reasons"]:
        lines += ["", "Graph breaks seen in this process: " + "; ".join(report["graph_break_reasons"][:5])]
    return "\n".join(lines)


class StepProfiler:
    """Profiles the first training pass of a run when `trainer.profile_steps` is set; otherwise does nothing."""

    def __init__(self, cfg, run_dir: Path, model: nn.Module, loss_fn: nn.Module, device: torch.device,
                 precision: Precision, epoch_batches: int):
        self.cfg, self.dir, self.model, self.loss_fn = cfg, Path(run_dir) / "profile", model, loss_fn
        self.device, self.precision = device, precision
        self.compiled = cfg.trainer.get("compile", False) is not False  # trainer.compile: time by kernel, not layer
        self.steps, self.warmup = cfg.trainer.profile_steps, cfg.trainer.profile_warmup
        self.pending = self.steps is not None
        self.report: Optional[dict] = None
        if not self.pending:
            return
        if self.warmup is None:
            raise ConfigError("trainer.profile_warmup=None must be a positive integer when trainer.profile_steps "
                              "is set")
        batches = min(epoch_batches, cfg.trainer.limit_train_batches or epoch_batches)
        if batches < self.warmup + self.steps:
            raise ConfigError(f"trainer.profile_warmup={self.warmup} + trainer.profile_steps={self.steps} needs "
                              f"{self.warmup + self.steps} training batches but an epoch has {batches}; "
                              "lower them, or batch_size")

    @contextlib.contextmanager
    def profile(self, loader):
        """`loader` itself, or, for the first pass of a profiling run, a loader that profiles its steps."""
        if not self.pending:
            yield loader
            return
        self.pending = False
        session = _ProfiledPass(self, loader)
        try:
            yield session
        finally:
            session.close()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def finish(self, events, labels: dict, wall_s: float, saved: Counter, peak: Optional[int]) -> None:
        """Turn the profiled steps' events into the report; rank 0 writes it (the trace is already written)."""
        cpu, device, layers, other = attribute_time(events, labels)
        n, cfg = self.steps, self.cfg
        per_step = lambda us: round(us / n / 1000, 3)  # noqa: E731  µs in n steps -> ms per step
        total_cpu, total_device, total_saved = sum(cpu.values()), sum(device.values()), sum(saved.values())
        clocks = ("cpu", "device") if self.device.type == "cuda" else ("cpu",)
        time_ms = {c: {clock: per_step(us[c]) for clock, us in zip(clocks, (cpu, device))} for c in CATEGORIES}
        phases = [f"{phase}{suffix}" for suffix in ("", "_device")[:len(clocks)] for phase in ("forward", "backward")]
        self.report = {
            "model": cfg.model.name, "neuron": cfg.neuron.name, "compiled": self.compiled,
            "neuron_backend": resolve_backend(cfg.neuron.backend, self.device,
                                              fused_kernel=any(m.fused_kernel for _, m in neuron_layers(self.model))),
            "precision": self.precision.name,
            "device": (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                       else f"cpu, {torch.get_num_threads()} threads"),
            "T": cfg.T, "batch_size": cfg.batch_size, "warmup_steps": self.warmup, "profiled_steps": n,
            "wall_ms_per_step": round(wall_s / n * 1000, 3), "profiled_ms_per_step": per_step(total_cpu),
            "images_per_s": round(n * cfg.batch_size / wall_s, 2),
            "time_ms_per_step": time_ms,
            "time_share": {c: round(cpu[c] / total_cpu, 4) if total_cpu else 0.0 for c in CATEGORIES},
            **({"profiled_device_ms_per_step": per_step(total_device),
                "device_time_share": {c: round(device[c] / total_device, 4) if total_device else 0.0
                                      for c in CATEGORIES}} if len(clocks) == 2 else {}),
            "neuron_layers_ms_per_step": {layer: {k: per_step(layers[layer][k]) for k in phases}  # model order
                                          for _, layer in labels.values() if layer in layers},
            "largest_other_ms_per_step": {op: per_step(us) for op, us in other.most_common(5)},
            "saved_for_backward_bytes": {**{c: saved[c] for c in CATEGORIES}, "total": total_saved},
            "peak_device_memory_bytes": peak,
            "trace": "trace.json.gz",
        }
        if is_main_process():
            (self.dir / "profile.json").write_text(json.dumps(self.report, indent=2) + "\n")
            (self.dir / "profile.txt").write_text(format_report(self.report) + "\n")

    def log_report(self, logger: logging.Logger) -> None:
        """Print the tables (at the end of a profiling run), or nothing."""
        if self.report is not None:
            logger.info("profile of %d training steps (%s):\n%s", self.steps, self.dir, format_report(self.report))


class _ProfiledPass:
    """One training pass: warm-up steps (the last one weighing saved tensors), then the profiled steps."""

    def __init__(self, owner: StepProfiler, loader):
        self.owner, self.loader = owner, loader
        self.length = min(len(loader), owner.warmup + owner.steps)
        self.ranges = ModuleRanges(labelled_modules(owner.model, owner.loss_fn, layers=not owner.compiled))
        self.saved = SavedTensorBytes(self.ranges, owner.model)
        self.saving = self.saved.hooks()
        self.events, self.served, self.started, self.weighing = None, 0, 0.0, False
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if owner.device.type == "cuda" else [])
        self.profiler = torch.profiler.profile(
            activities=activities, on_trace_ready=self._trace_ready,
            schedule=schedule(wait=owner.warmup - 1, warmup=1, active=owner.steps, repeat=1))

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator:
        warmup = self.owner.warmup
        self.profiler.start()
        batches = iter(self.loader)
        for step in range(self.length):
            if step:
                self._end_step(step - 1)
            if step == warmup - 1:
                self._weigh_saved(True)
            if step == warmup:
                self.owner._sync()
                if self.owner.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(self.owner.device)
                self.started = time.perf_counter()
            batch = next(batches, None)
            if batch is None:  # a resumed pass has fewer batches left
                return
            self.served = step + 1
            yield batch

    def _weigh_saved(self, on: bool) -> None:
        if on != self.weighing:
            self.weighing = on
            if on:
                self.saving.__enter__()
            else:
                self.saving.__exit__(None, None, None)

    def _end_step(self, step: int) -> None:
        if step == self.owner.warmup - 1:
            self._weigh_saved(False)
        self.profiler.step()

    def _trace_ready(self, profiler) -> None:
        if is_main_process():
            self.owner.dir.mkdir(parents=True, exist_ok=True)
            profiler.export_chrome_trace(str(self.owner.dir / "trace.json.gz"))
        self.events = profiler.events()

    def close(self) -> None:
        """After the pass: end the last profiled step and report, or drop an incomplete profile."""
        owner = self.owner
        complete = self.served == owner.warmup + owner.steps
        if complete:
            owner._sync()
            wall_s = time.perf_counter() - self.started
            peak = torch.cuda.max_memory_allocated(owner.device) if owner.device.type == "cuda" else None
            self.profiler.step()  # ends the last active step: _trace_ready runs
        self.profiler.stop()
        self._weigh_saved(False)
        self.ranges.remove()
        if complete and self.events is not None:
            owner.finish(self.events, self.ranges.labels, wall_s, self.saved.bytes, peak)
        else:
            logging.getLogger(__name__).warning("the training pass stopped before the profiled steps were done: "
                                                "no profile was written")


def format_report(report: dict) -> str:
    """The category, neuron-layer and memory tables of a profile report, as text."""
    r = report
    gpu = "device_time_share" in r
    lines = [f"{r['model']} with {r['neuron']} neurons ({r['neuron_backend']} backend), {r['precision']}, T={r['T']}, "
             f"batch {r['batch_size']}, on {r['device']}: {r['profiled_steps']} steps after {r['warmup_steps']} "
             f"warm-up steps",
             *(["compiled by trainer.compile: its fused kernels mix layers, so time is by operation "
                "(compiled kernels under 'other') and no neuron layer is timed alone"] if r.get("compiled") else []),
             f"wall time {r['wall_ms_per_step']:.1f} ms/step, {r['images_per_s']:.1f} images/s (under the profiler)",
             "",
             f"{'category':<14}{'CPU ms/step':>12}{'share':>8}" + (f"{'GPU ms/step':>13}{'share':>8}" if gpu else "")]
    for category, times in r["time_ms_per_step"].items():
        row = f"{category:<14}{times['cpu']:>12.2f}{100 * r['time_share'][category]:>7.1f}%"
        if gpu:
            row += f"{times['device']:>13.2f}{100 * r['device_time_share'][category]:>7.1f}%"
        lines.append(row)
    lines += [f"{'total':<14}{r['profiled_ms_per_step']:>12.2f}{100.0:>7.1f}%"
              + (f"{r['profiled_device_ms_per_step']:>13.2f}{100.0:>7.1f}%" if gpu else ""), "",
              f"{'neuron layer':<28}{'forward ms':>12}{'backward ms':>13}" + (f"{'GPU fwd':>10}{'GPU bwd':>10}"
                                                                              if gpu else "")]
    for layer, t in r["neuron_layers_ms_per_step"].items():
        lines.append(f"{layer:<28}{t['forward']:>12.2f}{t['backward']:>13.2f}"
                     + (f"{t['forward_device']:>10.2f}{t['backward_device']:>10.2f}" if gpu else ""))
    largest = ", ".join(f"{op} {ms:.2f} ms" for op, ms in r["largest_other_ms_per_step"].items())
    lines.append(f"largest in other (CPU): {largest}")
    saved = r["saved_for_backward_bytes"]
    lines += ["", f"{'kept for backward':<18}{'MiB':>10}{'share':>8}"]
    for category in (*CATEGORIES, "total"):
        share = saved[category] / saved["total"] if saved["total"] else 0.0
        lines.append(f"{category:<18}{saved[category] / 2**20:>10.2f}{100 * share:>7.1f}%")
    if r["peak_device_memory_bytes"] is not None:
        lines.append(f"peak GPU memory allocated while profiling: {r['peak_device_memory_bytes'] / 2**20:.1f} MiB")
    return "\n".join(lines)
