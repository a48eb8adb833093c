"""Comparison presets: every competitor number's as-published preset, AR-LIF's CIFAR10-DVS cells as the released
code ran them, and the same-recipe grid compose with the right model, neuron, BN mode, dropout, loss, precision
and T, and build their models; in the slow suite each distinct architecture and neuron trains one epoch."""

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from arlif.models.layers import SeqBatchNorm2d, SeqDropout
from arlif.neurons import build_neuron, neuron_layers
from arlif.reports.paper import PUBLISHED, SAME_RECIPE_NEURONS, TABLE1, TABLE1_CODE, experiment_name
from arlif.runner.build import build_loss, neuron_kwargs
from arlif.runner.config import CONF_DIR, compose, resolve, validate
from arlif.runner.optim import build_optimizer
from arlif.runner.training import train
from helpers import meta_model
from test_presets import hydra_config, preset_files, sweep_jobs

# Per method, dataset and recipe: model, neuron, BN mode (tdBN threshold), classifier dropout and mask, loss
# (name, tet_weight, mse_weight), precision, batch, epochs, optimizer (name, lr, weight decay), seed, data recipe.
_TET = ("resnet19", "tet_lif", "shared", 0.0, "sequence", ("tet_mse", 0.95, 0.05), "fp32", 128, 300)  # paper λ, epochs
_GLIF = ("resnet18_glif", "glif", "tdbn", 0.0, "sequence", ("mean_ce", None, None), "fp32", 64, 200, ("sgd", 0.1, 4e-5),
         9, "crop_flip")
_CLIF = ("clif", "per_step", 0.0, "sequence", ("tet_mse", 0.95, 0.05), "auto", 128)
_TEBN = ("vggsnn", "tet_lif", "tebn", 0.25, "step")
_TEBN_CE, _TEBN_TET = ("mean_ce", None, None), ("tet_mse", 0.999, 0.001)
RECIPES = {
    **{("tet", d, "adam"): (*_TET, ("adamw", 1e-3, 0.0), 1000, "crop_flip") for d in ("cifar10", "cifar100")},
    **{("tet", d, "sgd_guess"): (*_TET, ("sgd", 0.1, 5e-4), 1000, "crop_flip") for d in ("cifar10", "cifar100")},
    ("glif", "cifar10", ""): _GLIF,
    ("glif", "cifar100", ""): _GLIF,
    ("clif", "cifar10", ""): ("resnet18", *_CLIF, 200, ("sgd", 0.1, 5e-5), 2022, "clif"),
    ("clif", "cifar100", ""): ("resnet18", *_CLIF, 200, ("sgd", 0.1, 5e-4), 2022, "clif"),
    ("clif", "tiny_imagenet", ""): ("vgg13", *_CLIF, 300, ("sgd", 0.1, 5e-4), 2022, "crop_flip"),
    ("tebn", "cifar10_dvs", "copy"): (*_TEBN, _TEBN_CE, "fp32", 16, 100, ("sgd", 0.1, 5e-4), 100, None),
    ("tebn", "cifar10_dvs", "copy_tet"): (*_TEBN, _TEBN_TET, "fp32", 16, 100, ("sgd", 0.1, 5e-4), 100, None),
    ("tebn", "cifar10_dvs", "main"): (*_TEBN, _TEBN_CE, "fp32", 64, 200, ("sgd", 0.02, 5e-4), 1000, None),
    ("tebn", "cifar10_dvs", "main_tet"): (*_TEBN, _TEBN_TET, "fp32", 64, 200, ("sgd", 0.02, 5e-4), 1000, None),
    ("psn", "cifar10_dvs", ""): ("vggsnn", "sliding_psn", "shared", 0.25, "step", ("tet_mse", 0.999, 0.001), "fp32", 32,
                                 200, ("sgd", 0.1, 5e-4), 100, None),
}


def check_model(model, cfg, bn_mode, classifier_dropout, mask, neuron, dropout=0.0):
    """The built network has the configured BN mode in every norm, the dropout layers and the neuron."""
    norms = [m for m in model.modules() if isinstance(m, SeqBatchNorm2d)]
    assert norms and {m.bn_mode for m in norms} == {bn_mode}
    if bn_mode == "tebn":
        assert {m.scale.numel() for m in norms} == {cfg.T}
    if bn_mode == "tdbn":
        assert {m.v_threshold for m in norms} == {cfg.model.tdbn_threshold}
    drops = [m for m in model.modules() if isinstance(m, SeqDropout)]
    assert {m.mask for m in drops} == {mask}
    assert model.dropout.p == classifier_dropout
    assert {m.p for m in drops if m is not model.dropout} == {dropout}
    kinds = {type(m) for _, m in neuron_layers(model)}
    assert kinds == {type(build_neuron(neuron, channels=1, T=cfg.T))}


def test_every_published_number_and_released_code_cell_has_its_preset_and_no_other_preset_exists():
    assert preset_files("compare/published") == {c.preset for c in PUBLISHED}
    assert preset_files("table1_code") == {c.preset for c in TABLE1_CODE}


@pytest.mark.parametrize("cell", PUBLISHED, ids=[c.preset for c in PUBLISHED])
def test_published_preset_has_that_papers_recipe(cell):
    cfg = resolve(compose([f"experiment={cell.preset}"]))
    validate(cfg)
    model_name, neuron, bn_mode, head_drop, mask, (loss, tet, mse), precision, batch, epochs, (opt, lr, wd), seed, \
        recipe = RECIPES[(cell.method, cell.dataset, cell.recipe)]
    assert (cfg.dataset.name, cfg.model.name, cfg.neuron.name, cfg.T) == (cell.dataset, cell.model, cell.neuron, cell.T)
    assert (cfg.model.name, cfg.neuron.name) == (model_name, neuron)
    assert cfg.experiment.name == cfg.logger.group == cell.experiment
    assert (cfg.loss.name, cfg.trainer.precision, cfg.batch_size, cfg.trainer.epochs, cfg.scheduler.t_max) == \
        (loss, precision, batch, epochs, epochs)
    if loss == "tet_mse":
        assert (cfg.loss.tet_weight, cfg.loss.mse_weight, cfg.loss.mse_target, cfg.loss.phi) == \
            (tet, mse, "constant", 1)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.seed) == (opt, lr, wd, seed)
    assert cfg.dataset.get("recipe") == recipe
    if cell.dataset == "cifar10_dvs":  # PSN's and TEBN's tensor Resize(48) without antialiasing
        assert (cfg.dataset.policy_ops, cfg.dataset.crop_padding, cfg.dataset.test_per_class) == ([], 4, 100)
        assert cfg.dataset.antialias is False
    model = meta_model(cfg)
    check_model(model, cfg, bn_mode, head_drop, mask, neuron)
    build_loss(cfg)
    if cell.method == "glif":  # the neurons' own parameters: no weight decay, gates at lr / 10
        groups = build_optimizer(model, cfg).param_groups
        assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.1, 4e-5), (pytest.approx(0.01), 0.0), (0.1, 0.0)]
    if cell.method == "tebn":
        assert cfg.neuron.decay == 0.25  # TEBN's LIF, τ = 0.25
    if cell.method == "glif":  # GLIF's layers.py: Vth / (2 · 4) at every T
        assert cfg.neuron.init_linear_decay == 0.0625
        glif = build_neuron("glif", channels=1, T=cell.T, **neuron_kwargs(cfg))
        assert float(torch.sigmoid(glif.linear_decay.detach())) == pytest.approx(0.0625)
    if cell.method == "glif" and cell.dataset == "cifar10":
        assert list(cfg.dataset.std) == [0.247, 0.243, 0.261]


@pytest.mark.parametrize("cell", TABLE1_CODE, ids=[c.preset for c in TABLE1_CODE])
def test_released_code_preset_is_the_paper_preset_with_the_codes_differences(cell):
    """Section 8 of the published-code facts, beside table1/cifar10_dvs_vggsnn_t<T>."""
    cfg = resolve(compose([f"experiment={cell.preset}"]))
    validate(cfg)
    paper = resolve(compose([f"experiment=table1/cifar10_dvs_vggsnn_t{cell.T}"]))
    assert (cfg.dataset.name, cfg.model.name, cfg.neuron.name, cfg.T) == ("cifar10_dvs", "vggsnn", "arlif_psn_code",
                                                                        cell.T)
    assert cfg.experiment.name == cfg.logger.group == cell.experiment == \
        f"code-cifar10_dvs-vggsnn-arlif_psn_code-T{cell.T}"
    assert (cfg.model.bn_mode, cfg.model.dropout, cfg.model.classifier_dropout, cfg.model.dropout_mask) == \
        ("shared", 0.0, 0.25, "step")
    assert (cfg.trainer.precision, cfg.dataset.policy_interpolation, cfg.seed) == ("fp32", "bilinear", 100)
    assert (cfg.dataset.test_per_class, list(cfg.dataset.split_sizes), cfg.dataset.image_size) == \
        (100, [9000, 1000], 48)
    assert cfg.neuron.decay == 0.2  # train_vgg.py's default
    assert cfg.dataset.antialias is True  # its train_vgg.py passes antialias=True
    # T4's logs: epoch 0's summed loss 409 against 835 at T8 and T16, so half as many batches
    assert cfg.batch_size == (32 if cell.T == 4 else 16)
    for key in ("trainer.epochs", "loss", "optimizer", "scheduler", "dataset.policy_ops",
                "dataset.crop_padding", "dataset.hflip"):
        assert OmegaConf.select(cfg, key) == OmegaConf.select(paper, key), key  # shared with the paper's recipe
    check_model(meta_model(cfg), cfg, "shared", 0.25, "step", "arlif_psn_code")
    assert (paper.neuron.name, paper.model.bn_mode, paper.trainer.precision) == ("arlif", "per_step", "auto")


@pytest.mark.parametrize("table,cells", [("compare_published", PUBLISHED), ("table1_code", TABLE1_CODE)])
def test_comparison_tables_are_one_multirun(table, cells):
    jobs = sweep_jobs(hydra_config([f"+table={table}"]), ["seed=1,2"])
    assert sorted(jobs) == sorted([[f"experiment={c.preset}", f"seed={s}"] for c in cells for s in (1, 2)])
    if table == "compare_published":  # three seeds unless told otherwise: TET's numbers are 3-seed means
        assert {job[-1] for job in sweep_jobs(hydra_config([f"+table={table}"]))} == \
            {"seed=2022", "seed=2023", "seed=2024"}


@pytest.mark.slow  # every preset of the grid's recipes composes in the tests above
def test_same_recipe_grid_swaps_only_the_neuron():
    """Every Table 1 cell with each competitor neuron: the cell's recipe, the neuron's own config, and the run
    named as the cell with that neuron (so make_tables.py shows it beside AR-LIF's run).  No Table 1 preset sets
    a neuron key, so a swap composes the same way in every cell: each cell is composed with one neuron (in turn)
    and each neuron in one cell of each architecture, which covers every neuron, cell and architecture."""
    jobs = sweep_jobs(hydra_config(["+table=compare_same_recipe"]))
    assert len(jobs) == len(TABLE1) * len(SAME_RECIPE_NEURONS) * 3 == 294  # 3 seeds by default
    assert sorted(jobs) == sorted([[f"experiment={c.preset}", f"neuron={n}", f"seed={s}"] for c in TABLE1
                                   for n in SAME_RECIPE_NEURONS for s in (2022, 2023, 2024)])
    neurons = list(SAME_RECIPE_NEURONS)
    first_of_model = {}
    for cell in TABLE1:
        first_of_model.setdefault(cell.model, cell)
    pairs = {(c, neurons[i % len(neurons)]) for i, c in enumerate(TABLE1)}
    pairs |= {(c, n) for c in first_of_model.values() for n in neurons}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):  # once: composing is then fast
        default_neuron = hydra_compose(config_name="config").neuron
        own = {n: hydra_compose(config_name="config", overrides=[f"neuron={n}"]).neuron for n in neurons}
        papers = {c.preset: resolve(hydra_compose(config_name="config", overrides=[f"experiment={c.preset}"]))
                  for c in TABLE1}
        assert all(paper.neuron == default_neuron for paper in papers.values())  # no preset touches the neuron
        for cell, neuron in sorted(pairs, key=lambda p: (p[0].preset, p[1])):
            overrides = [f"experiment={cell.preset}", f"neuron={neuron}"]
            cfg = resolve(hydra_compose(config_name="config", overrides=overrides))
            validate(cfg)
            assert cfg.experiment.name == experiment_name(cell.dataset, cell.model, neuron, cell.T)
            assert cfg.neuron == own[neuron]  # the neuron's own defaults
            paper = papers[cell.preset]
            for key in ("dataset", "model", "loss", "optimizer", "scheduler", "trainer", "T", "batch_size", "seed"):
                assert OmegaConf.select(cfg, key) == OmegaConf.select(paper, key), (cell.preset, neuron, key)
            if first_of_model[cell.model] is cell:  # each architecture with each neuron
                dropout = cfg.model.dropout
                check_model(meta_model(cfg), cfg, "per_step", dropout if cell.model == "resnet18" else 0.0,
                            "sequence", neuron, dropout)
    assert {c.preset for c, _ in pairs} == {c.preset for c in TABLE1} and {n for _, n in pairs} == set(neurons)


@pytest.mark.parametrize("neuron,own_decay", [("glif", 0.0), ("arlif", 5e-5), ("plif", 5e-5)])
def test_same_recipe_grid_decays_a_neurons_parameters_as_its_own_code_does(neuron, own_decay):
    """GLIF's train.py exempts its neuron parameters from weight decay (conf/neuron/glif.yaml own_weight_decay), so
    AR-LIF's recipe does not decay them; AR-LIF's code decays its own, and PLIF says nothing: the recipe's decay."""
    cfg = resolve(compose(["experiment=table1/cifar10_resnet18_t4", f"neuron={neuron}"]))
    model = meta_model(cfg)
    own = {id(p) for _, layer in neuron_layers(model) for p in layer.parameters()}
    decay = {id(p): g["weight_decay"] for g in build_optimizer(model, cfg).param_groups for p in g["params"]}
    assert cfg.optimizer.weight_decay == 5e-5 and cfg.optimizer.neuron_weight_decay is None and own
    assert {decay[i] for i in own} == {own_decay}
    assert {d for i, d in decay.items() if i not in own} == {5e-5}


# One real epoch on synthetic data per distinct architecture and neuron of the comparison presets: the as-published
# presets, the released-code preset, and Table 1 presets with the neurons no published preset uses.
SYNTHETIC = ["dataset=synthetic", "dataset.num_classes=4", "dataset.train_size=8", "dataset.test_size=4",
             "batch_size=4", "T=2", "trainer.epochs=1", "trainer.num_workers=0", "trainer.progress_bar=false",
             "logger=none"]
SLOW_RUNS = [
    ("compare/published/tet_cifar10_resnet19_t2_adam", [], "resnet19", "tet_lif"),
    ("compare/published/glif_cifar10_resnet18_glif_t2", [], "resnet18_glif", "glif"),
    ("compare/published/clif_cifar10_resnet18_t6", [], "resnet18", "clif"),
    ("compare/published/clif_tiny_imagenet_vgg13_t4", [], "vgg13", "clif"),
    ("compare/published/tebn_cifar10_dvs_vggsnn_t10_copy", [], "vggsnn", "tet_lif"),
    ("compare/published/psn_cifar10_dvs_vggsnn_t4", [], "vggsnn", "sliding_psn"),
    ("table1_code/cifar10_dvs_vggsnn_t4", [], "vggsnn", "arlif_psn_code"),
    ("table1/dvs_gesture_vgg11_t20", ["neuron=plif"], "vgg11", "plif"),
    ("table1/cifar10_resnet18_t4", ["neuron=psn"], "resnet18", "psn"),
    ("table1/cifar10_dvs_vggsnn_t4", ["neuron=masked_psn"], "vggsnn", "masked_psn"),
]


def test_slow_runs_cover_every_architecture_and_comparison_neuron():
    assert {m for _, _, m, _ in SLOW_RUNS} == {"resnet18", "resnet19", "resnet18_glif", "vgg11", "vgg13", "vggsnn"}
    assert {n for _, _, _, n in SLOW_RUNS} == set(SAME_RECIPE_NEURONS) | {"arlif_psn_code"}


@pytest.mark.slow
@pytest.mark.parametrize("preset,extra,model,neuron", SLOW_RUNS, ids=[p for p, *_ in SLOW_RUNS])
def test_preset_trains_one_epoch_on_synthetic_data(preset, extra, model, neuron, tmp_path):
    cfg = compose([f"experiment={preset}", *extra])
    temporal = cfg.dataset.name in ("cifar10_dvs", "dvs_gesture")
    size = 32 if model in ("vgg11", "vgg13") else 16
    cfg = compose([f"experiment={preset}", *extra, *SYNTHETIC, f"dataset.temporal={temporal}",
                   f"dataset.in_channels={2 if temporal else 3}", f"dataset.image_size={size}"])
    summary = train(cfg, tmp_path)
    assert (summary["status"], summary["model"], summary["neuron"], summary["epochs_completed"]) == \
        ("finished", model, neuron, 1)
    assert 0 <= summary["test_acc_final"] <= 100 and (tmp_path / "best.pt").is_file()
