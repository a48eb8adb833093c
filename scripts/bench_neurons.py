"""Benchmark the neuron backends (not a test): per-layer time and memory, and network throughput.

Layer tables, for every T and N (neurons per step, laid out as a convolution's output
[T, B, 64, 32, 32]): forward and forward+backward time, the memory autograd keeps for backward,
the peak memory of one forward+backward, and the first call's time (a compile for `compiled`),
for every neuron on its eager step loop (`reference`), its compiled step loop (`compiled`) and,
for AR-LIF and LIF, its hand-fused kernel, plus SpikingJelly's multi-step LIF as a peer when
importable.  On CUDA the fused AR-LIF's effective memory bandwidth is set against a device
copy measured in the same run.  Network tables: training images/s of ResNet-18 (T = 4,
32x32 input, CIFAR-10 sized) with reference versus fused neurons, each eager and under
torch.compile (the compile time of its first step shown apart).  Prints a Markdown report
(and writes it with --out).

Timings are medians of --repeats runs after --warmup runs.  All rows of one (T, N) are
timed round-robin, so load from other processes on a shared machine hits them alike.

    python scripts/bench_neurons.py                      # CPU, or CUDA when present
    python scripts/bench_neurons.py --T 4 --N 2097152 --no-network
    python scripts/bench_neurons.py --no-layers --batch 128 --amp fp16   # the GPU network table
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from arlif.kernels import resolve_backend
from arlif.models import create_model
from arlif.neurons import NEURONS, build_neuron

CHANNELS, SIDE = 64, 32  # a layer's input is [T, N / (CHANNELS·SIDE²), CHANNELS, SIDE, SIDE]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--T", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--N", type=int, nargs="+", default=[1 << 18, 1 << 21])
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--neurons", nargs="+", default=sorted(NEURONS), choices=sorted(NEURONS),
                   help="neurons of the layer tables (default: all)")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layers", action=argparse.BooleanOptionalAction, default=True,
                   help="per-layer tables for every --T and --N")
    p.add_argument("--network", action=argparse.BooleanOptionalAction, default=True,
                   help="ResNet-18 training throughput")
    p.add_argument("--batch", type=int, default=16, help="network benchmark batch size")
    p.add_argument("--steps", type=int, default=5, help="timed network training steps")
    p.add_argument("--amp", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="network benchmark precision (fp16: autocast and GradScaler, as training on CUDA)")
    p.add_argument("--network-compile", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the network under torch.compile")
    p.add_argument("--network-backends", nargs="+", choices=["reference", "fused"], default=["reference", "fused"],
                   help="neuron backends of the network table (fused: the device's fused kernel)")
    p.add_argument("--per-call", action="store_true",
                   help="only the fixed cost of one call: AR-LIF fwd+bwd at T=4 on 64 elements against "
                        "x.sigmoid().sum().backward() on the same tensor, interleaved in this process")
    p.add_argument("--kernel-only", action="store_true",
                   help="only the fused AR-LIF kernels themselves at each --T and the first --N (no module, no "
                        "autograd), against the time to move their minimum bytes at the measured copy rate; the "
                        "Triton kernels on CUDA or under TRITON_INTERPRET=1, else the C++ kernel")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="--kernel-only's input dtype")
    p.add_argument("--register-replay", action="store_true",
                   help="--kernel-only: also time the Triton engine's opt-in register-replay backward (T <= 8) and "
                        "give its gradients' difference from the scratch backward's")
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- machine

def machine(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}"
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    name = model.group(1).strip() if model else platform.processor() or "unknown CPU"
    return (f"{name}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"ISA {torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- memory

def saved_bytes(fn):
    """(bytes of distinct storages autograd keeps for backward while `fn` runs, its output)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


def _rss_kib(field: str) -> int:
    return int(re.search(field + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def peak_bytes(fn, device) -> int | None:
    """Peak memory above the starting level while `fn` runs (CUDA allocator, or CPU RSS)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so RSS is live memory
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return None
    base = _rss_kib("VmRSS")
    fn()
    return (_rss_kib("VmHWM") - base) * 1024


# ----------------------------------------------------------------------------- layer rows

class FromRest(torch.nn.Module):
    """A stateful SpikingJelly neuron started from rest on every call, like ours."""

    def __init__(self, node):
        super().__init__()
        self.node = node

    def forward(self, x):
        self.node.reset()
        return self.node(x)


def spikingjelly_lif():
    """SpikingJelly's multi-step LIF (k = 0.5, hard reset) or None when not installed."""
    try:
        from spikingjelly.activation_based import neuron
    except ImportError:
        return None
    return FromRest(neuron.LIFNode(tau=2.0, decay_input=False, v_reset=0.0, step_mode="m"))


def layer_rows(device, fused: str, names, T: int):
    """(neuron, backend label, module factory) for every row of the layer table: each neuron's eager
    loop, its compiled loop, and its fused kernel where it has one."""
    def factory(name, backend):
        def make():
            torch.manual_seed(0)
            n = build_neuron(name, channels=CHANNELS, T=T, backend=backend)
            if name == "arlif":
                with torch.no_grad():  # off the special initial values α = 1, β = 0
                    n.alpha.fill_(1.2)
                    n.beta_raw.fill_(0.2)
            return n.to(device)
        return make

    rows = []
    for name in names:
        has_kernel = build_neuron(name, channels=CHANNELS, T=T).fused_kernel
        for backend in ("reference", "compiled", *([fused] if has_kernel and fused != "compiled" else [])):
            rows.append((name, backend, factory(name, backend)))
    if spikingjelly_lif() is not None:
        rows.append(("LIF hard reset", "SpikingJelly 2 multi-step", lambda: spikingjelly_lif().to(device)))
    return rows


def layer_input_shape(T: int, N: int) -> tuple:
    per_map = CHANNELS * SIDE * SIDE
    if N % per_map:
        raise SystemExit(f"--N must be a multiple of {per_map} (channels {CHANNELS} × {SIDE}×{SIDE} maps)")
    return T, N // per_map, CHANNELS, SIDE, SIDE


def bench_layer(T, N, rows, device, repeats, warmup):
    gen = torch.Generator(device="cpu").manual_seed(0)
    shape = layer_input_shape(T, N)
    x0 = (torch.randn(shape, generator=gen) * 0.9 + 0.6).to(device)
    grad = torch.randn(shape, generator=gen).to(device)
    modules = [make() for _, _, make in rows]

    def forward(m):
        with torch.no_grad():
            m(x0)

    def train_step(m):
        x = x0.detach().requires_grad_()
        m(x).backward(grad)
        return x

    first = []
    for m in modules:  # the first forward+backward: compiles (and self-checks) the compiled rows
        sync(device)
        t0 = time.perf_counter()
        train_step(m)
        forward(m)
        sync(device)
        first.append(time.perf_counter() - t0)
    times = [{"fwd": [], "fwdbwd": []} for _ in rows]
    for rep in range(warmup + repeats):
        for k, m in enumerate(modules):
            for key, fn in (("fwd", forward), ("fwdbwd", train_step)):
                sync(device)
                t0 = time.perf_counter()
                fn(m)
                sync(device)
                if rep >= warmup:
                    times[k][key].append(time.perf_counter() - t0)
    results = []
    for (label, backend, _), m, tk, once in zip(rows, modules, times, first):
        saved, out = saved_bytes(lambda: m(x0.detach().requires_grad_()))
        del out
        results.append({
            "neuron": label, "backend": backend, "first": once,
            "fwd": statistics.median(tk["fwd"]) * 1e3,
            "fwdbwd": statistics.median(tk["fwdbwd"]) * 1e3,
            "fwdbwd_range": (min(tk["fwdbwd"]) * 1e3, max(tk["fwdbwd"]) * 1e3),
            "saved": saved, "peak": peak_bytes(lambda: train_step(m), device),
        })
    return results


def bandwidth_note(T, N, result, device, dtype_bytes=4) -> str:
    """GPU only: the fused AR-LIF's bytes moved per fwd+bwd over its time, vs a plain copy."""
    # forward: x, spikes, flags; backward pass 1: x, flags, r; pass 2: x, flags, grad, r, grad_x
    d = dtype_bytes
    per_step = (2 * d + 1) + (d + 1 + 4) + (3 * d + 1 + 4)
    moved = per_step * T * N
    src = torch.empty(T * N * 4, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copies = []
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        copies.append(time.perf_counter() - t0)
    copy_bw = 2 * src.numel() / min(copies)
    kernel_bw = moved / (result["fwdbwd"] / 1e3)
    return (f"T={T}, N={N}: fused AR-LIF moves {moved / 1e6:.0f} MB per fwd+bwd in {result['fwdbwd']:.2f} ms: "
            f"{kernel_bw / 1e9:.0f} GB/s = {100 * kernel_bw / copy_bw:.0f}% of a device copy's "
            f"{copy_bw / 1e9:.0f} GB/s (measured in this run)")


def layer_table(T, N, results) -> list[str]:
    lines = [f"#### T = {T}, N = {N:,} neurons per step ({T * N * 4 / 2**20:.0f} MiB fp32 input)", "",
             "| neuron | backend | forward ms | fwd+bwd ms (min–max) | vs its eager loop | "
             "saved for backward MiB | saved vs eager loop | peak MiB | first call s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    eager = {r["neuron"]: r for r in results if r["backend"] == "reference"}
    for r in results:
        peak = f"{r['peak'] / 2**20:.0f}" if r["peak"] is not None else "n/a"
        lo, hi = r["fwdbwd_range"]
        ref = eager.get(r["neuron"])
        speed = f"{ref['fwdbwd'] / r['fwdbwd']:.2f}×" if ref else ""
        memory = f"{r['saved'] / ref['saved']:.2f}" if ref and ref["saved"] else ""
        lines.append(f"| {r['neuron']} | {r['backend']} | {r['fwd']:.1f} | {r['fwdbwd']:.1f} ({lo:.1f}–{hi:.1f}) "
                     f"| {speed} | {r['saved'] / 2**20:.0f} | {memory} | {peak} | {r['first']:.1f} |")
    return lines + [""]


# ----------------------------------------------------------------------------- network

def bench_network(backends, device, batch, steps, amp: str, compile_too: bool) -> list[str]:
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    lines = ["### ResNet-18, T = 4, 3×32×32 input, 10 classes: training throughput", "",
             f"Batch {batch}, {amp}{' autocast' if dtype else ''}, SGD, cross-entropy on the time-averaged logits; "
             f"median of {steps} steps after 1 warm-up step (for torch.compile, the warm-up step compiles: its time "
             "is the first-step column).", "",
             "| neurons | model | step ms | images/s | speed-up | first step s | peak MiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    base = None
    for backend in backends:
        for compiled in (False, True) if compile_too else (False,):
            torch.manual_seed(0)
            torch._dynamo.reset()
            model = create_model("resnet18", num_classes=10, in_channels=3, image_size=32, neuron="arlif",
                                 neuron_kwargs={"backend": backend}).to(device).train()
            run = torch.compile(model) if compiled else model
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
            x = torch.randn(batch, 3, 32, 32, device=device)
            y = torch.randint(0, 10, (batch,), device=device)
            times = []
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for step in range(steps + 1):
                sync(device)
                t0 = time.perf_counter()
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = torch.nn.functional.cross_entropy(run(x, T=4).float().mean(0), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sync(device)
                times.append(time.perf_counter() - t0)
            step_s = statistics.median(times[1:])
            base = base or step_s
            peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f}" if device.type == "cuda" else "n/a"
            lines.append(f"| AR-LIF, {backend} | {'torch.compile' if compiled else 'eager'} | {step_s * 1e3:.0f} | "
                         f"{batch / step_s:,.1f} | {base / step_s:.2f}× | {times[0]:.1f} | {peak} |")
            print(lines[-1], flush=True)
    return lines + [""]


def per_call(device, repeats: int, calls: int = 200) -> list[str]:
    """The fixed cost of one neuron call: AR-LIF (its default backend) forward+backward at T = 4 on
    64 elements against the trivial autograd chain `x.sigmoid().sum().backward()` on the same tensor;
    the two are timed alternately, `calls` calls per sample, median of `repeats` samples each."""
    lean, custom_op = build_neuron("arlif").to(device), build_neuron("arlif").to(device)
    custom_op.eager_fast_path = False  # every call through the torch.library operators, as before issue 27
    x = torch.randn(4, 64, device=device).requires_grad_()
    calls_by_row = {f"AR-LIF ({resolve_backend('auto', device)}), eager fast path": lambda: lean(x).sum().backward(),
                    "AR-LIF, through the custom operators": lambda: custom_op(x).sum().backward(),
                    "x.sigmoid().sum().backward()": lambda: x.sigmoid().sum().backward()}
    samples = {name: [] for name in calls_by_row}
    for fn in calls_by_row.values():  # warm-up: builds and self-checks the engine
        fn()
    for _ in range(repeats):
        for name, fn in calls_by_row.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            sync(device)
            samples[name].append((time.perf_counter() - t0) / calls)
    trivial = statistics.median(samples["x.sigmoid().sum().backward()"])
    return ["## Per-call cost (T = 4, 64 elements)", "", f"Machine: {machine(device)}.", "",
            "| call | µs per fwd+bwd | ratio |", "|---|---:|---:|",
            *(f"| {name} | {statistics.median(v) * 1e6:.1f} | {statistics.median(v) / trivial:.2f}× |"
              for name, v in samples.items()), ""]


def timed_ms(fn, device, repeats: int) -> float:
    """Median ms of `fn()`: triton.testing.do_bench on CUDA (it flushes the L2 between runs), else wall clock."""
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=5, rep=50, return_mode="median")
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def kernel_only(device, Ts, N: int, dtype: torch.dtype, repeats: int, register_replay: bool = False) -> list[str]:
    """The fused AR-LIF engine's forward and backward launches alone (the Triton kernels on CUDA and under
    TRITON_INTERPRET=1, the C++ kernel on CPU otherwise, whose input is fp32), with the bytes they move in the
    real dtypes, against the time a device copy needs for the minimum bytes: x read and spikes written in
    forward, x and the spikes' gradient read and grad_x written in backward (5 bytes of the dtype per
    neuron-step).  With `register_replay`, a second Triton row at each T ≤ 8 times the register-replay
    backward (no scratch, x and flags read once) and gives its largest gradient difference from the scratch
    backward's, relative to the largest gradient (its fast math against the exact replay, on this device)."""
    import math

    from arlif.kernels import cpu, triton_neuron
    from arlif.kernels.availability import triton_interpreting

    d = torch.finfo(dtype).bits // 8
    spec = build_neuron("arlif").spec
    alpha, beta = torch.tensor(1.2, device=device), torch.tensor(math.tanh(0.2), device=device)
    use_triton = device.type == "cuda" or triton_interpreting()
    lines = [f"## Fused AR-LIF kernels alone, N = {N:,} neurons per step, {str(dtype).removeprefix('torch.')}", "",
             f"Machine: {machine(device)}" + (" (Triton's interpreter: not a speed)" if device.type != "cuda"
                                              and use_triton else "") + ".", "",
             "| T | backward | forward ms | backward ms | fwd+bwd ms | bytes moved | minimum bytes | copy GB/s | "
             "minimum at copy rate ms | fwd+bwd / minimum | grad diff vs scratch |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for T in Ts:
        x = (torch.randn(T, N, device=device) * 0.9 + 0.6).to(dtype)
        grad = torch.randn(T, N, device=device).to(dtype)
        rows = []  # (name, forward, backward, bytes moved, backward's outputs)
        if use_triton:
            forward, _, flags = triton_neuron.plan_forward(x, spec, alpha, beta)
            forward()
            fwd_bytes = 2 * d + 1  # x, spikes, flags
            for register in (False, True) if register_replay and T <= triton_neuron.REGISTER_MAX_T else (False,):
                backward, grad_x, partials = triton_neuron.plan_backward(x, flags, grad, spec, alpha, beta, True,
                                                                         True, register=register)
                # scratch: replay x, flags, fp32 r; reverse flags, ∂L/∂s, x, r, grad_x.  registers: x, flags, ∂L/∂s,
                # grad_x, each once.
                bwd_bytes = (3 * d + 1) if register else (d + 1 + 4) + (1 + 3 * d + 4)
                rows.append(("registers" if register else "scratch", forward, backward, fwd_bytes + bwd_bytes,
                             (grad_x, partials)))
        else:
            _, flags = cpu.forward(x, spec, alpha, beta)
            rows.append(("C++", lambda: cpu.forward(x, spec, alpha, beta),
                         lambda: cpu.backward(x, flags, grad, spec, alpha, beta, True, True),
                         (2 * d + 1) + (1 + 3 * d), None))  # forward x, spikes, flags; backward flags, x, ∂L/∂s, grad_x
        minimum = 5 * d * T * N
        src = torch.empty(minimum // 2, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        floor_ms = timed_ms(lambda: dst.copy_(src), device, repeats)  # reads and writes minimum / 2 bytes: moves all
        rate = minimum / (floor_ms * 1e-3) / 1e9
        for name, forward, backward, per_step, outputs in rows:
            fwd_ms, bwd_ms = timed_ms(forward, device, repeats), timed_ms(backward, device, repeats)
            diff = ""
            if name == "registers":
                backward()  # its own gradients, against the scratch backward's (launched last by the timing)
                (gx, parts), (ref_gx, ref_parts) = outputs, rows[0][4]
                rows[0][2]()
                diffs = [((mine.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-12)).item()
                         for mine, ref in ((gx, ref_gx), (parts[0].sum(), ref_parts[0].sum()),
                                           (parts[1].sum(), ref_parts[1].sum()))]
                diff = "x {:.1e}, α {:.1e}, β {:.1e}".format(*diffs)
            lines.append(f"| {T} | {name} | {fwd_ms:.3f} | {bwd_ms:.3f} | {fwd_ms + bwd_ms:.3f} | "
                         f"{per_step * T * N / 1e6:,.0f} MB | {minimum / 1e6:,.0f} MB | {rate:,.0f} | {floor_ms:.3f} | "
                         f"{(fwd_ms + bwd_ms) / floor_ms:.2f}× | {diff} |")
    return lines + [""]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.per_call:
        print("\n".join(per_call(device, args.repeats)))
        return 0
    if args.kernel_only:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        text = "\n".join(kernel_only(device, args.T, args.N[0], dtype, args.repeats, args.register_replay))
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
        return 0
    fused = resolve_backend("auto", device)
    report = ["## Neuron backends", "", f"Machine: {machine(device)}.", "",
              f"Times are medians of {args.repeats} runs after {args.warmup} warm-up runs, all rows of a "
              "table timed round-robin; fwd+bwd includes the backward of a random output gradient.  "
              "First call = the first forward+backward and forward (the compiled rows compile and self-check "
              "then).  Saved = distinct storages autograd keeps for backward (input included); peak = "
              + ("CUDA allocator peak" if device.type == "cuda" else "peak RSS growth")
              + " during one fwd+bwd.", ""]
    if spikingjelly_lif() is None:
        report += ["SpikingJelly is not installed, so its row is absent.", ""]
    notes = []
    for T in args.T if args.layers else []:
        rows = layer_rows(device, fused, args.neurons, T)
        for N in args.N:
            results = bench_layer(T, N, rows, device, args.repeats, args.warmup)
            report += layer_table(T, N, results)
            print("\n".join(layer_table(T, N, results)), flush=True)
            fused_row = next((r for r in results if r["neuron"] == "arlif" and r["backend"] == fused), None)
            if device.type == "cuda" and fused_row is not None:
                notes.append(bandwidth_note(T, N, fused_row, device))
    if notes:
        report += ["Memory bandwidth of the fused kernel (bytes its loads and stores must move):", ""]
        report += [f"- {n}" for n in notes] + [""]
    if args.network:
        backends = [fused if b == "fused" else b for b in args.network_backends]
        report += bench_network(backends, device, args.batch, args.steps, args.amp, args.network_compile)
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
