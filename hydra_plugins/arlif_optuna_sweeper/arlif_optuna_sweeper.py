"""Hydra Sweeper plugin running an Optuna study with pruning: `python train.py -m hparams_search=<preset>`.

Hydra finds it in its `hydra_plugins` namespace package (from the checkout, or installed).  Hydra
imports every plugin module on each start, so this one imports only Hydra; the search itself
(arlif.search.sweep) and Optuna load when a sweep runs.  Why not hydra-optuna-sweeper: docs/sweeps.md.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class ArlifOptunaSweeperConf:
    """`hydra.sweeper.*` (docs/sweeps.md)."""

    _target_: str = "hydra_plugins.arlif_optuna_sweeper.arlif_optuna_sweeper.ArlifOptunaSweeper"
    study_name: str = "study"
    storage: Optional[str] = None  # null: <hydra.sweep.dir>/optuna.journal; a path: a journal file; a URL: a database
    n_trials: int = 20  # the study's total, over every sweep process and rerun
    n_jobs: int = 1  # trials launched at once (in parallel with a parallel launcher)
    objective: str = "val_acc_best"  # val_acc_best | val_acc_final
    sampler: Dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: Dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    params: Dict[str, str] = field(default_factory=dict)  # key: Hydra sweep expression (interval, range, choice)
    complements: Dict[str, str] = field(default_factory=dict)  # key set to 1 - a searched key (paper λ)
    heartbeat_s: float = 60.0  # a running trial's sweep process restamps it this often
    plots: bool = True  # write the PNG plots with the report


ConfigStore.instance().store(group="hydra/sweeper", name="arlif_optuna", node=ArlifOptunaSweeperConf, provider="arlif")


class ArlifOptunaSweeper(Sweeper):
    """Drives Optuna's ask/tell over Hydra's configured launcher (arlif.search.sweep.StudySweep)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in settings.items()}
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from arlif.runner.cli import run_cli
        from arlif.search.sweep import StudySweep

        return run_cli(lambda: StudySweep(self.settings, self.config, self.launcher).run(arguments))
