"""Train a spiking network: `python train.py [overrides]` (config: conf/config.yaml, see README)."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from arlif.cli import run_cli


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from arlif.pipeline import train

    run_cli(lambda: train(cfg, Path(HydraConfig.get().runtime.output_dir)))


if __name__ == "__main__":
    main()
