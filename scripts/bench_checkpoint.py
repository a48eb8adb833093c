"""Benchmark the checkpoint checksum (not a test): what sealing adds to a save, what verifying adds to a load.

The checkpoint is the one a `table1/cifar10_resnet18_t4` run writes (ResNet-18 weights, SGD momentum
buffers, scheduler, scaler, random state and config), after one optimizer step with random gradients.
Timed round-robin in one folder (--dir; put it on the file system the run folders live on): a save as
it was before checksums (torch.save to a temporary file, fsync, rename), a sealed save
(arlif.runner.checkpoint.save_checkpoint), the seal alone, a load as before (torch.load), a verified load
(load_checkpoint) and the verification alone, in reverse order every other round (a save slows the one
after it while the disk flushes).  Medians of --repeats runs after one warm-up, min-max in brackets.
Prints a Markdown table.

    python scripts/bench_checkpoint.py --dir /path/on/the/runs/file/system
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from arlif.runner import checksum
from arlif.runner.build import build_model
from arlif.runner.checkpoint import load_checkpoint, save_checkpoint
from arlif.runner.config import compose
from arlif.runner.optim import build_optimizer, build_scheduler
from arlif.runner.records import write_atomically
from arlif.runner.runtime import rng_state


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=None, help="folder to write the checkpoints in (default: a temp dir)")
    p.add_argument("--repeats", type=int, default=9)
    return p.parse_args(argv)


def resnet18_state() -> dict:
    cfg = compose(["experiment=table1/cifar10_resnet18_t4"])
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    scheduler = build_scheduler(optimizer, cfg)
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": torch.amp.GradScaler("cpu").state_dict(), "rng": [rng_state()],
            "config": OmegaConf.to_container(cfg), "epoch": 1, "best": {"test": None, "val": None},
            "partial_epoch": None}


def main(args) -> str:
    state = resnet18_state()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        plain, sealed, bare = folder / "plain.pt", folder / "sealed.pt", folder / "bare.pt"
        cases = {
            "save before checksums (torch.save, fsync, rename)": lambda: write_atomically(
                plain, lambda t: torch.save(state, t)),
            "save with checksum (save_checkpoint)": lambda: save_checkpoint(state, sealed),
            "seal alone (checksum.seal on a fresh torch.save file)": None,
            "load before checksums (torch.load)": lambda: torch.load(plain, map_location="cpu", weights_only=True),
            "load with verification (load_checkpoint)": lambda: load_checkpoint(sealed),
            "verification alone (checksum.verify)": lambda: checksum.verify(sealed),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for repeat in range(args.repeats + 1):
            for name, run in (reversed(cases.items()) if repeat % 2 else cases.items()):
                if run is None:  # the seal needs a fresh, unsealed archive each time
                    torch.save(state, bare)
                    run = lambda: checksum.seal(bare)  # noqa: E731
                start = time.perf_counter()
                run()
                if repeat:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
        size = sealed.stat().st_size
    save = statistics.median(times["save before checksums (torch.save, fsync, rename)"])
    seal = statistics.median(times["seal alone (checksum.seal on a fresh torch.save file)"])
    lines = [f"ResNet-18 checkpoint (table1/cifar10_resnet18_t4, SGD momentum): {size / 2**20:.1f} MiB; "
             f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.repeats} repeats",
             "", "| operation | median ms (min-max) |", "|---|---:|"]
    lines += [f"| {name} | {1000 * statistics.median(t):.1f} ({1000 * min(t):.1f}-{1000 * max(t):.1f}) |"
              for name, t in times.items()]
    lines += ["", f"seal / save before checksums: {100 * seal / save:.2f} %"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(parse_args()))
