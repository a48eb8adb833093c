"""Paper presets: every Table 1 cell and Table 2 row composes with the published recipe and builds its model."""

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate

from arlif.runner.config import CONF_DIR, resolve, validate
from arlif.runner.config import compose as compose_run
from arlif.neurons import neuron_layers
from arlif.reports.paper import ABLATIONS, TABLE1, TABLE2
from helpers import meta_model

# The published recipe per dataset (issue 5): batch, epochs, lr, weight decay, tet_weight (paper λ),
# mse_weight (1 − λ), MSE target, neuron dropout.
RECIPES = {
    "cifar10": (128, 400, 0.1, 5e-5, 0.95, 0.05, "constant", 0.0),
    "cifar100": (128, 400, 0.05, 5e-4, 0.95, 0.05, "constant", 0.0),
    "tiny_imagenet": (128, 200, 0.1, 5e-4, 0.8, 0.2, "onehot", 0.0),
    "cifar10_dvs": (16, 100, 0.1, 5e-4, 0.7, 0.3, "constant", 0.0),
    "dvs_gesture": (12, 200, 0.1, 5e-4, 0.95, 0.05, "constant", 0.4),
}


def preset_files(table):
    return {f"{table}/{p.stem}" for p in (CONF_DIR / "experiment" / table).glob("*.yaml")}


def hydra_config(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def sweep_jobs(cfg, extra=()):
    """The job override lists a multirun of `cfg` (hydra.sweeper.params plus `extra`) launches."""
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + list(extra)
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]


def test_every_paper_cell_has_its_preset_and_no_other_preset_exists():
    assert preset_files("table1") == {c.preset for c in TABLE1}
    assert preset_files("table2") == {c.preset for c in TABLE2}


def check_recipe(cfg):
    batch, epochs, lr, wd, tet, mse, target, dropout = RECIPES[cfg.dataset.name]
    assert (cfg.batch_size, cfg.trainer.epochs, cfg.scheduler.t_max) == (batch, epochs, epochs)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == \
        ("sgd", lr, 0.9, wd)
    assert (cfg.loss.tet_weight, cfg.loss.mse_weight, cfg.loss.mse_target, cfg.loss.phi) == (tet, mse, target, 1.0)
    assert cfg.model.dropout == dropout
    assert (cfg.seed, cfg.neuron.surrogate_width, cfg.trainer.precision, cfg.scheduler.name) == \
        (2022, 1.0, "auto", "cosine")


@pytest.mark.parametrize("cell", TABLE1, ids=[c.preset for c in TABLE1])
def test_table1_preset_composes_and_builds(cell):
    cfg = resolve(compose_run([f"experiment={cell.preset}"]))
    validate(cfg)
    assert (cfg.dataset.name, cfg.model.name, cfg.neuron.name, cfg.T) == (cell.dataset, cell.model, "arlif", cell.T)
    assert cfg.experiment.name == cfg.logger.group == cell.experiment
    check_recipe(cfg)
    model = meta_model(cfg)
    assert len(neuron_layers(model)) > 0


@pytest.mark.parametrize("preset", sorted(preset_files("table2")))
def test_table2_row_sweeps_the_six_neurons(preset):
    cfg = hydra_config([f"experiment={preset}"])
    jobs = sweep_jobs(cfg)
    assert jobs == [[f"neuron={n}"] for n in ABLATIONS]
    cells = {c.experiment: c for c in TABLE2 if c.preset == preset}
    for job in jobs:
        run = resolve(compose_run([f"experiment={preset}", *job]))
        validate(run)
        assert run.experiment.name in cells and cells[run.experiment.name].neuron == run.neuron.name
        assert run.T == 4
        check_recipe(run)
        meta_model(run)


# Table 2 repeats Table 1's multirun path with its own cells (`-m slow`).
@pytest.mark.parametrize("table,cells", [("table1", TABLE1), pytest.param("table2", TABLE2, marks=pytest.mark.slow)])
def test_whole_table_is_one_multirun(table, cells):
    """`python train.py -m +table=<table> seed=2022,2023` launches every cell of the table with each seed.
    One job per cell is composed (the cell's name and seed); its other jobs differ from it in the seed only."""
    jobs = sweep_jobs(hydra_config([f"+table={table}"]), ["seed=2022,2023"])
    assert len(jobs) == 2 * len(cells)
    seeds: dict[tuple, set] = {}
    for job in jobs:
        seeds.setdefault(tuple(o for o in job if not o.startswith("seed=")), set()).update(
            o for o in job if o.startswith("seed="))
    assert all(found == {"seed=2022", "seed=2023"} for found in seeds.values())
    names = set()
    for rest in seeds:
        run = resolve(compose_run([*rest, "seed=2023"]))
        names.update((run.experiment.name, seed) for seed in (2022, 2023))
        assert run.seed == 2023
    assert names == {(c.experiment, seed) for c in cells for seed in (2022, 2023)}


def test_changed_cell_gets_another_name():
    """A run with another neuron or T than its preset does not land in the preset's table cell."""
    cfg = resolve(compose_run(["experiment=table1/cifar10_resnet18_t4", "neuron=lif_soft", "T=2"]))
    assert cfg.experiment.name == "paper-cifar10-resnet18-lif_soft-T2"


def test_slurm_launcher_config():
    cfg = hydra_config(["experiment=table1/cifar10_resnet18_t4", "hydra/launcher=slurm",
                        "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.partition) == (1, 1, "gpu")
    assert launcher.timeout_min >= 12 * 60 and launcher.max_num_timeout >= 1
    assert instantiate(launcher).params["gpus_per_node"] == 1  # the plugin is installed and takes these keys
