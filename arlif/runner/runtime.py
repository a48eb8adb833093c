"""Where and how a run computes: device, numeric precision, seeding and process rank.

Kept apart from the training loop so that distributed launchers can replace the rank
logic and resumed runs can restore the random state in one call.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from arlif.cpus import cpus_per_process
from arlif.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA on a machine without it is an error."""
    if name not in DEVICES:
        raise ConfigError(f"trainer.device={name!r} is not one of {list(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: plain fp32) and whether a GradScaler guards fp16 gradients."""

    name: str
    dtype: Optional[torch.dtype]

    @property
    def use_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self, device: torch.device):
        """Context that runs the forward pass (and loss) in this precision."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """`auto` is fp16 with a GradScaler on CUDA (as the published runs trained) and fp32 on CPU."""
    if name not in PRECISIONS:
        raise ConfigError(f"trainer.precision={name!r} is not one of {list(PRECISIONS)}")
    if name == "auto":
        name = "fp16" if device.type == "cuda" else "fp32"
    return Precision(name, _DTYPES[name])


MAX_AUTO_WORKERS = 8  # enough to keep a GPU fed with the paper's augmentations; more only costs memory


def resolve_num_workers(value) -> int:
    """`trainer.num_workers`: `auto` leaves one of this process's CPUs to the training loop and gives
    the others to data-loader workers, at most MAX_AUTO_WORKERS (0 on one CPU); a number is kept."""
    if value != "auto":
        return value
    return min(MAX_AUTO_WORKERS, cpus_per_process() - 1)


def is_main_process() -> bool:
    """True on the process that logs, prints and writes files (rank 0, or no process group)."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(deterministic: bool) -> None:
    """Deterministic kernels (slower) when asked; otherwise let cuDNN pick the fastest."""
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def rng_state() -> dict:
    """Every random generator's state, as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.copy()), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved (CUDA states only when the device count matches)."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy(), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_commit() -> Optional[str]:
    """The code's git commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
