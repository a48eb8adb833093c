"""Train a spiking network: `python train.py [overrides]` (config: conf/config.yaml, see README).

Several GPUs: `torchrun --nproc_per_node=N train.py [overrides]`; SLURM: see docs/scaling.md.
Exit codes: 0 finished, 2 user error, 3 stopped by a signal or Ctrl-C (resumable), 4 non-finite loss,
130 aborted (a second Ctrl-C).
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from arlif.runner.cli import exit_as_run_ended, run_cli, run_hydra, share_checkout, torchrun_argv


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from arlif.runner.training import train
    from arlif.search.trial import trial_reporter
    from arlif.runner.launch_guard import remove_failed_start

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    summary = run_cli(lambda: train(cfg, run_dir, trial_reporter), on_error=remove_failed_start,
                      trial=cfg.get("search") is not None)
    sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    exit_as_run_ended(summary, run_dir, sweep_dir)


if __name__ == "__main__":
    share_checkout()
    sys.argv = run_cli(lambda: torchrun_argv(sys.argv))
    run_hydra(main)
