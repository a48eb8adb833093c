"""What the config says is what trains: every loss, neuron, optimizer and scheduler key reaches the
objects a TrainingRun builds, directly and through the paper presets.

Each key gets a value no default or other key has, so a key that is dropped, swapped with another
or read from the wrong place changes what is checked.  The loss is checked by its value on the
hand-computed logits of test_loss.py.
"""

import pytest
import torch

from arlif.errors import ConfigError
from arlif.runner.config import compose, resolve
from arlif.models.layers import SeqBatchNorm2d, SeqDropout
from arlif.neurons import ARLIF, LIF, neuron_layers
from arlif.runner.optim import build_optimizer, build_scheduler
from arlif.runner.build import build_loss, build_model, load_data
from arlif.runner.training import TrainingRun
from helpers import tiny_run
from test_loss import LABELS, O, mse_by_hand, onehot, tet_by_hand

CPU = torch.device("cpu")
TINY = tiny_run("trainer.epochs=9", "batch_size=4", "T=3")
LOSS = ["loss.tet_weight=0.3", "loss.mse_weight=0.6", "loss.phi=2.5", "loss.label_smoothing=0.1"]
NEURON = ["neuron.decay=0.25", "neuron.v_threshold=0.75", "neuron.surrogate_width=0.5", "neuron.backend=reference"]
MODEL = ["model.dropout=0.2", "model.bn_mode=tdbn", "model.tdbn_threshold=0.6", "model.dropout_mask=step",
         "model.classifier_dropout=0.35"]
SGD = ["optimizer=sgd", "optimizer.lr=0.03", "optimizer.momentum=0.8", "optimizer.nesterov=true",
       "optimizer.weight_decay=0.002", "scheduler.t_max=7", "scheduler.eta_min=0.001"]
ADAMW = ["optimizer=adamw", "optimizer.lr=0.004", "optimizer.betas=[0.8,0.95]", "optimizer.weight_decay=0.03"]


def expected_loss(tet_weight, mse_weight, mse_target, phi=1.0, smoothing=0.0):
    """The loss of O and LABELS (test_loss.py) computed by hand for these key values."""
    target = (lambda b, k: onehot(LABELS[b])[k]) if mse_target == "onehot" else (lambda b, k: phi)
    return (tet_weight * tet_by_hand([onehot(y) for y in LABELS], smoothing) + mse_weight * mse_by_hand(target))


def loss_value(loss_fn):
    return loss_fn(torch.tensor(O), torch.tensor(LABELS)).item()


def check_neurons(model, name, decay, v_threshold, surrogate_width, backend):
    """Every neuron layer is the configured kind, with the configured constants, learning what it should."""
    layers = [m for _, m in neuron_layers(model)]
    assert layers
    for m in layers:
        assert (m.spec.decay, m.spec.v_threshold, m.spec.surrogate_width, m.backend) == \
            (decay, v_threshold, surrogate_width, backend)
        if name.startswith("arlif"):
            assert isinstance(m, ARLIF) and m.spec.reset == "adaptive"
            params = {n for n, _ in m.named_parameters()}
            assert ("alpha" in params) == (name in ("arlif", "arlif_fixed_threshold"))
            assert ("beta_raw" in params) == (name in ("arlif", "arlif_fixed_alpha"))
        else:
            assert isinstance(m, LIF) and m.spec.reset == name.removeprefix("lif_")


def test_neuron_parameters_get_their_own_weight_decay_and_learning_rate():
    """GLIF's recipe in arlif's terms: the neurons' own parameters without weight decay, some of them at lr/10."""
    cfg = compose([*TINY, *SGD, "neuron=arlif", "optimizer.neuron_weight_decay=0",
                   "+optimizer.neuron_lr_scale.alpha=0.1"])
    model = build_model(cfg)
    groups = build_optimizer(model, cfg).param_groups
    layers = [m for _, m in neuron_layers(model)]
    alphas, betas = {id(m.alpha) for m in layers}, {id(m.beta_raw) for m in layers}
    rest = [p for p in model.parameters() if id(p) not in alphas | betas]
    assert [({id(p) for p in g["params"]}, g["lr"], g["weight_decay"]) for g in groups] == [
        ({id(p) for p in rest}, 0.03, 0.002), (alphas, 0.003, 0.0), (betas, 0.03, 0.0)]
    with pytest.raises(ConfigError, match="gates"):
        build_optimizer(model, compose([*TINY, "+optimizer.neuron_lr_scale.gates=0.1"]))


def test_tebn_gets_the_runs_T():
    model = build_model(compose([*TINY, "model.bn_mode=tebn"]))
    assert {(m.T, m.scale.numel()) for m in model.modules() if isinstance(m, SeqBatchNorm2d)} == {(3, 3)}


@pytest.mark.parametrize("neuron, optimizer, mse_target", [
    ("arlif_fixed_alpha", SGD, "onehot"),
    ("lif_soft", ADAMW, "constant"),
])
def test_training_run_builds_what_the_config_says(neuron, optimizer, mse_target, tmp_path):
    cfg = compose([*TINY, f"neuron={neuron}", *NEURON, *MODEL, *LOSS, f"loss.mse_target={mse_target}", *optimizer])
    run = TrainingRun(resolve(cfg), tmp_path, CPU)
    trainer = run.trainer
    assert loss_value(trainer.loss_fn) == pytest.approx(expected_loss(0.3, 0.6, mse_target, 2.5, 0.1), rel=1e-6)
    check_neurons(trainer.model, neuron, 0.25, 0.75, 0.5, "reference")
    drops = [(m.p, m.mask) for m in trainer.model.modules() if isinstance(m, SeqDropout)]
    assert drops == [(0.2, "step")] * 3 + [(0.35, "step")]
    assert {(m.bn_mode, m.v_threshold) for m in trainer.model.modules() if isinstance(m, SeqBatchNorm2d)} == \
        {("tdbn", 0.6)}
    assert trainer.T == 3 and run.train_loader.batch_sampler.batches.batch_size == 4

    group = trainer.optimizer.param_groups[0]
    assert len(trainer.optimizer.param_groups) == 1  # decay_all_params: one group holding every parameter
    assert len(group["params"]) == len(list(trainer.model.parameters()))
    if optimizer is SGD:
        assert isinstance(trainer.optimizer, torch.optim.SGD)
        assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.03, 0.8, True, 0.002)
        assert (run.scheduler.T_max, run.scheduler.eta_min) == (7, 0.001)
    else:
        assert isinstance(trainer.optimizer, torch.optim.AdamW)
        assert (group["lr"], group["betas"], group["weight_decay"]) == (0.004, (0.8, 0.95), 0.03)
        assert (run.scheduler.T_max, run.scheduler.eta_min) == (9, 0.0)  # t_max follows trainer.epochs
    run.recorder.close()


def test_scheduler_follows_its_keys():
    """Cosine from optimizer.lr to eta_min over t_max epochs, stepped once per epoch."""
    cfg = resolve(compose([*TINY, *SGD, "scheduler.t_max=2", "scheduler.eta_min=0.01"]))
    optimizer = build_optimizer(torch.nn.Linear(2, 2), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(3):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()  # no gradients: changes nothing
        scheduler.step()
    assert lrs == pytest.approx([0.03, 0.01 + 0.02 * 0.5, 0.01])


# The paper's λ (tet_weight), 1 − λ and MSE target per preset (README, "The loss"), and the
# recipe's lr, weight decay and neuron dropout.
PRESETS = {
    "table1/cifar10_resnet18_t4": (0.95, 0.05, "constant", 0.1, 5e-5, 0.0),
    "table1/cifar100_resnet18_t4": (0.95, 0.05, "constant", 0.05, 5e-4, 0.0),
    "table1/tiny_imagenet_vgg13_t4": (0.8, 0.2, "onehot", 0.1, 5e-4, 0.0),
    "table1/cifar10_dvs_vggsnn_t4": (0.7, 0.3, "constant", 0.1, 5e-4, 0.0),
    "table1/dvs_gesture_vgg11_t20": (0.95, 0.05, "constant", 0.1, 5e-4, 0.4),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_paper_preset_reaches_the_loss_model_and_optimizer(preset):
    tet, mse, target, lr, weight_decay, dropout = PRESETS[preset]
    cfg = resolve(compose([f"experiment={preset}"]))
    assert loss_value(build_loss(cfg)) == pytest.approx(expected_loss(tet, mse, target), rel=1e-6)
    with torch.device("meta"):  # the full-size network, without memory
        model = build_model(cfg)
    check_neurons(model, "arlif", 0.5, 1.0, 1.0, "auto")
    assert {m.p for m in model.modules() if isinstance(m, SeqDropout) and m is not model.dropout} == {dropout}
    assert model.dropout.p == (dropout if cfg.model.name == "resnet18" else 0.0)  # the published heads
    optimizer = build_optimizer(model, cfg)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD) and len(optimizer.param_groups) == 1
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (lr, 0.9, weight_decay)
    assert build_scheduler(optimizer, cfg).T_max == cfg.trainer.epochs


def test_validation_split_does_not_move_with_seed():
    """dataset.val_fraction holds out the same training samples whatever `seed` says (README, "Best versus final")."""
    held_out = []
    for seed in (1, 2):
        _, train_set, val_set = load_data(resolve(compose([*TINY, f"seed={seed}", "dataset.val_fraction=0.25"])))
        assert (len(train_set), len(val_set)) == (12, 4)
        held_out.append(sorted(val_set.indices))
    assert held_out[0] == held_out[1]


def test_init_weights_starts_a_run_at_another_T_from_a_trained_run(tmp_path):
    """TET's TIT: a run trained at T = 2 (here by hand: one optimizer step, saved as a checkpoint) is the start of a
    run at T = 4, weights only (a fresh optimizer and schedule); a network whose parameters depend on T does not
    fit, and says which parameter."""
    from arlif.errors import CheckpointError
    from arlif.runner.checkpoint import save_checkpoint
    from arlif.runner.records import LAST
    from omegaconf import OmegaConf

    first = resolve(compose([*tiny_run("T=2", "model.bn_mode=tebn"), "neuron=tet_lif"]))
    model = build_model(first)
    torch.manual_seed(1)
    for p in model.parameters():  # not the initial draw of any seed
        p.data.normal_()
    (tmp_path / "t2").mkdir()
    save_checkpoint({"model": model.state_dict(), "epoch": 3, "config": OmegaConf.to_container(first)},
                    tmp_path / "t2" / LAST)
    # TEBN's per-step scale has T entries: the T = 2 weights do not fit T = 4
    with pytest.raises(CheckpointError, match="scale"):
        TrainingRun(resolve(compose([*tiny_run("T=4", "model.bn_mode=tebn"), "neuron=tet_lif",
                                     f"trainer.init_weights={tmp_path / 't2'}"])), tmp_path / "tebn", CPU)
    first = resolve(compose([*tiny_run("T=2"), "neuron=tet_lif"]))
    model = build_model(first)
    for p in model.parameters():
        p.data.normal_()
    save_checkpoint({"model": model.state_dict(), "epoch": 3, "config": OmegaConf.to_container(first)},
                    tmp_path / "t2" / LAST)
    run = TrainingRun(resolve(compose([*tiny_run("T=4"), "neuron=tet_lif", *SGD,
                                       f"trainer.init_weights={tmp_path / 't2'}"])), tmp_path / "t4", CPU)
    loaded, saved = run.trainer.model.state_dict(), model.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert run.trainer.optimizer.state_dict()["state"] == {} and run.progress.epoch == 0
    assert run.scheduler.get_last_lr()[0] == 0.03
    with pytest.raises(CheckpointError, match="holds a quickcnn with tet_lif neurons"):
        TrainingRun(resolve(compose([*tiny_run("T=4"), "neuron=arlif", f"trainer.init_weights={tmp_path / 't2'}"])),
                    tmp_path / "arlif", CPU)
