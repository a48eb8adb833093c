"""How many CPUs this process may use (kernel builds, data-loader workers)."""

from __future__ import annotations

import os


def cpus_per_process() -> int:
    """CPUs this process may use: its affinity mask shared among the processes torchrun started
    on this node (LOCAL_WORLD_SIZE), and at most SLURM_CPUS_PER_TASK under SLURM."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS)
        cpus = os.cpu_count() or 1
    cpus //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit():
        cpus = min(cpus, int(slurm))
    return max(1, cpus)
