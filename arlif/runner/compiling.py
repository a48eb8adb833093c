"""`trainer.compile`: the model compiled with torch.compile for training and evaluation.

`compile_model` compiles the model in place (`nn.Module.compile`: its state dict, checkpoints and
the DistributedDataParallel wrapper stay as they are) and then compiles every graph the run will
need *before* the first epoch's clock starts: one training step and one evaluation pass of each
batch size the test and validation sets will show, on zero-filled batches of the run's shapes,
through the real training loop (autocast, loss, GradScaler, DDP).  The model, optimizer, scaler
and every random generator are restored afterwards, so the warm-up changes nothing the run
computes, and the first epoch's images/s is the compiled model's speed.  The time it took is
logged and written to summary.json as `compile_time_s`.

`trainer.compile=reduce-overhead` (CUDA graphs) compiles with fullgraph=True, marks every training and
evaluation step for the graph trees (`StepRunner.mark_steps`) and runs each graph three times in the warm-up,
so that recording the CUDA graphs happens before epoch 1 too.  On a CPU it runs as Inductor's default.

Any failure while compiling (no C++ compiler, a backend error) becomes one ConfigError before any
epoch runs; one that wraps a user error (a fused kernel's failed self-check, traced inside the
graph) is raised as that error.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Optional

import torch
from omegaconf import DictConfig

from arlif.errors import ConfigError, user_error_in
from arlif.runner.steps import StepRunner
from arlif.runner.runtime import rng_state, set_rng_state

log = logging.getLogger(__name__)

WARMUP_RUNS = 3  # runs of each graph in the warm-up under reduce-overhead: warm-up, recording, a replay


def compile_mode(cfg: DictConfig) -> Optional[str]:
    """torch.compile's mode for `trainer.compile` (true: "default"), or None when it is false (or absent, as
    in the configs of older checkpoints); arlif.runner.config.validate has checked the value."""
    value = cfg.trainer.get("compile", False)
    if value is False:
        return None
    return "default" if value is True else value


def compile_model(trainer: StepRunner, cfg: DictConfig, sample_shape: tuple, eval_batch_sizes: set) -> float:
    """Compile `trainer.model` as `trainer.compile` says and warm up every graph; returns the seconds it took.

    `sample_shape` is one sample as the loader yields it; `eval_batch_sizes` the sizes of the test and
    validation batches.  Profiling then attributes time by operation: per-layer ranges would split the graph.
    """
    mode = compile_mode(cfg)
    torch._dynamo.reset()  # a fresh start for each run of a process (search trials): no stale graphs or limits
    torch._inductor.config.cpp.enable_kernel_profile = cfg.trainer.profile_steps is not None  # name CPU kernels
    graphs = mode == "reduce-overhead"  # CUDA graphs: the whole model in one graph, steps marked for them
    trainer.model.compile(mode=mode, fullgraph=graphs)
    trainer.mark_steps = graphs
    start = time.perf_counter()
    saved, generators = copy.deepcopy(trainer.state_dict()), rng_state()
    try:
        batch = lambda n: (torch.zeros(n, *sample_shape), torch.zeros(n, dtype=torch.long))  # noqa: E731
        runs = WARMUP_RUNS if graphs else 1  # CUDA graphs record on a graph's second run
        trainer.train_epoch([batch(cfg.batch_size)] * runs, desc="compiling the training step")
        trainer.evaluate([batch(n) for n in sorted(eval_batch_sizes) for _ in range(runs)], desc="compiling evaluation")
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
    except Exception as exc:
        inner = user_error_in(exc)
        if inner is not None:
            raise inner from exc
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"trainer.compile={cfg.trainer.compile}: torch.compile failed before training "
                          f"({type(exc).__name__}: {first}); set trainer.compile=false to train without it") from exc
    finally:
        trainer.load_state_dict(saved)
        set_rng_state(generators)
        trainer.model.zero_grad(set_to_none=True)
        trainer.stop_reason, trainer.diverged = None, False
    seconds = time.perf_counter() - start
    log.info("trainer.compile=%s: compiled the training step and evaluation in %.1f s (before epoch 1, not "
             "counted in its images/s)", cfg.trainer.compile, seconds)
    return seconds
