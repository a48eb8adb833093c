"""Evaluate a checkpoint: `python eval.py checkpoint=PATH [overrides]` (config: conf/eval.yaml)."""

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from arlif.runner.cli import run_cli, run_hydra, share_checkout


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from arlif.runner.evaluation import evaluate_checkpoint
    from arlif.runner.launch_guard import remove_failed_start

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    result = run_cli(lambda: evaluate_checkpoint(cfg, out_dir, hydra_cfg.overrides.task), on_error=remove_failed_start)
    print(json.dumps(result, indent=2))
    print(f"written to {out_dir / 'eval.json'}")


if __name__ == "__main__":
    share_checkout()
    run_hydra(main)
