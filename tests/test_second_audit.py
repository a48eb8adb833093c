"""Behaviour that a second audit of deliberately broken code (issue 28) found no test pinned: recorded states,
the compiled loop's self-check input and threshold, GLIF's ResNet-18 strides, the compile warm-up's random
generators, the CPU kernel's build name, masked PSN's λ schedule, the neurons' own weight decay and mean_ce's
label smoothing.  Each test here fails on the broken variant of its behaviour (scripts/mutation_check.py)."""

import shutil

import pytest
import torch
import torch.nn.functional as F

from arlif.kernels import compiled
from arlif.kernels import cpu as cpu_engine
from arlif.models import create_model
from arlif.neurons import NEURONS, build_neuron, neuron_layers
from arlif.runner.build import build_loss, build_model, sample_shape
from arlif.runner.compiling import compile_model
from arlif.runner.config import compose, resolve
from arlif.runner.steps import StepRunner
from arlif.runner.optim import build_optimizer
from arlif.runner.runtime import resolve_precision, rng_state, seed_everything
from helpers import tiny_run


@pytest.mark.parametrize("name", sorted(NEURONS))
def test_recorded_states_are_detached_from_the_graph(name):
    """`store_v` keeps the last call's states for analysis, never the autograd graph that made them."""
    layer = build_neuron(name, channels=3, T=4)
    layer.store_v = True
    x = torch.randn(4, 2, 3, requires_grad=True)
    layer(x).sum().backward()  # the spikes stay differentiable
    assert layer.states and x.grad is not None
    for key, state in layer.states.items():
        assert state.shape[0] == 4 and not state.requires_grad and state.grad_fn is None, key


@pytest.mark.parametrize("shape", [(6, 64, 8, 4, 4), (5, 3000, 32), (4, 100)])
def test_the_compiled_loops_self_check_runs_every_step_of_the_call(shape):
    """The check input is the call's first samples over all its time steps, at least CHECK_ELEMENTS per step."""
    x = torch.randn(shape)
    sample = compiled.check_input(x)
    assert sample.shape[0] == shape[0] and sample.shape[2:] == x.shape[2:]
    assert torch.equal(sample, x[:, :sample.shape[1]])
    assert sample[0].numel() >= min(compiled.CHECK_ELEMENTS, x[0].numel())


def test_auto_compiles_by_elements_per_step():
    """`auto`'s threshold counts one step's elements, whatever T: many steps of a small layer stay eager."""
    per_step = compiled.AUTO_MIN_ELEMENTS
    assert compiled.worth_compiling(torch.empty(1, per_step)) and compiled.worth_compiling(torch.empty(8, per_step))
    assert not compiled.worth_compiling(torch.empty(8, per_step // 2))  # 4x the threshold per call
    assert not compiled.worth_compiling(torch.empty(64, 2, per_step // 4))


def test_glifs_resnet18_keeps_an_8x8_final_map_on_cifar():
    """GLIF's ResNet-18 (strides 1, 1, 2, 2) ends on 8x8 for 32x32 images, the standard one on 4x4."""
    seen = {}
    for name in ("resnet18_glif", "resnet18"):
        model = create_model(name, num_classes=10, in_channels=3, image_size=32, neuron="lif_soft", T=1)
        model.pool.register_forward_hook(lambda module, args, out, name=name: seen.update({name: args[0].shape}))
        with torch.no_grad():
            model(torch.zeros(1, 3, 32, 32), T=1)
    assert seen["resnet18_glif"][-2:] == (8, 8) and seen["resnet18"][-2:] == (4, 4)


@pytest.mark.slow  # a compile of the warm-up (18 s warm, minutes cold); the mutation check runs it
def test_the_compile_warm_up_leaves_every_random_generator_as_it_was():
    """The warm-up's training step draws dropout masks; the run after it draws as an eager run would."""
    cfg = resolve(compose(tiny_run("trainer.compile=true", "model.dropout=0.5")))
    device = torch.device("cpu")
    model = build_model(cfg)
    trainer = StepRunner(model, build_loss(cfg), build_optimizer(model, cfg), device, resolve_precision("fp32", device),
                         cfg.T, False, progress_bar=False)
    seed_everything(28)
    before = rng_state()
    compile_model(trainer, cfg, sample_shape(cfg, False), {cfg.batch_size})
    after = rng_state()
    assert after["python"] == before["python"] and torch.equal(after["torch"], before["torch"])
    assert torch.equal(after["numpy"]["keys"], before["numpy"]["keys"]) and after["numpy"]["pos"] == before["numpy"]["pos"]


def test_the_cpu_kernels_build_name_follows_its_source_text(tmp_path, monkeypatch):
    """A checkout whose kernel source differs gets a build of its own, never another checkout's stale one."""
    same, changed = tmp_path / "same.cpp", tmp_path / "changed.cpp"
    shutil.copyfile(cpu_engine.SOURCE, same)
    changed.write_text(cpu_engine.SOURCE.read_text() + "\n// changed\n")
    ours = cpu_engine.build_name()
    monkeypatch.setattr(cpu_engine, "SOURCE", same)
    assert cpu_engine.build_name() == ours
    monkeypatch.setattr(cpu_engine, "SOURCE", changed)
    assert cpu_engine.build_name() != ours and cpu_engine.build_dir().name == cpu_engine.build_name()


@pytest.mark.parametrize("lambda_init, lambda_rate, expected", [
    (0.5, 0.25, [0.5, 0.5625, 0.625, 0.6875, 0.75]),
    (0.5, 1.0, [0.5, 0.75, 1.0, 1.0, 1.0]),
    (0.3, 0.0, [0.3] * 5),
])
def test_masked_psns_lambda_schedule_starts_at_lambda_init(lambda_init, lambda_rate, expected):
    """λ_e = min(1, lambda_init + lambda_rate·e/(E-1)) over E = 5 epochs, and the weight it masks follows it."""
    layer = build_neuron("masked_psn", T=4, order=2, lambda_init=lambda_init, lambda_rate=lambda_rate)
    for epoch, lam in enumerate(expected):
        layer.on_epoch(epoch, 5)
        assert float(layer._lambda_) == pytest.approx(lam)
        mask = lam * layer.mask0 + (1 - lam) * layer.mask1
        assert torch.allclose(layer.masked_weight(), mask * layer.weight)


def test_a_neuron_weight_decay_of_zero_given_alone_keeps_the_neurons_undecayed():
    """optimizer.neuron_weight_decay=0 without neuron_lr_scale: one SGD step on zero gradients shrinks the network's
    weights (weight_decay applies to all, decay_all_params) and leaves every neuron parameter as it was."""
    cfg = resolve(compose(tiny_run("optimizer.weight_decay=0.1", "optimizer.decay_all_params=true",
                                   "optimizer.neuron_weight_decay=0", "optimizer.momentum=0")))
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg)
    neuron_params = {id(p) for _, layer in neuron_layers(model) for p in layer.parameters() if p.requires_grad}
    assert neuron_params
    before = {id(p): p.detach().clone() for p in model.parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for p in model.parameters():
        if id(p) in neuron_params:
            assert torch.equal(p, before[id(p)])
        elif p.detach().abs().sum() > 0:
            assert not torch.equal(p, before[id(p)])


def test_mean_ce_trains_with_its_label_smoothing():
    """loss=mean_ce is cross-entropy of the time-averaged logits with loss.label_smoothing."""
    gen = torch.Generator().manual_seed(28)
    logits, target = torch.randn(3, 5, 4, generator=gen), torch.tensor([0, 1, 2, 3, 1])
    loss = build_loss(resolve(compose(tiny_run("loss=mean_ce", "loss.label_smoothing=0.2"))))(logits, target)
    assert loss == pytest.approx(float(F.cross_entropy(logits.mean(0), target, label_smoothing=0.2)), rel=1e-6)
    assert loss != pytest.approx(float(F.cross_entropy(logits.mean(0), target)), rel=1e-3)
