"""Train a spiking network: `python train.py [overrides]` (config: conf/config.yaml, see README).

Several GPUs: `torchrun --nproc_per_node=N train.py [overrides]`; SLURM: see docs/scaling.md.
Exit codes: 0 finished, 2 user error, 3 stopped by a signal (resumable), 4 non-finite loss.
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from arlif.cli import exit_as_run_ended, run_cli, share_checkout, torchrun_argv


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from arlif.pipeline import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    summary = run_cli(lambda: train(cfg, run_dir))
    exit_as_run_ended(summary, run_dir, multirun=hydra_cfg.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    share_checkout()
    sys.argv = run_cli(lambda: torchrun_argv(sys.argv))
    main()
