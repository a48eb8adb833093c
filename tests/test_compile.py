"""torch.compile of whole arlif networks: fused neurons as custom operators, no graph break.

A small ResNet (arlif's pre-activation blocks, per-step batch norm) and a small VGG
(`SpikingVGG`, batch norm shared over time steps) whose neuron
layers take every backend available on CPU in turn (the fused C++ kernel, the Triton kernel
through its interpreter, the compiled step loop, auto and the reference loop, over AR-LIF, LIF
and newer neurons) are each compiled once per module with Inductor and `fullgraph=True` (a
graph break would raise), and their outputs and gradients compared with eager mode.  The
custom operators pass `torch.library.opcheck`.  A fused engine's self-check still runs before
its first use when that use is inside a graph being traced (checked with Dynamo's cheaper
`aot_eager` backend, which traces exactly as Inductor does but runs the graph eagerly).
"""

import warnings
from functools import partial

import pytest
import torch
from torch import nn

import arlif.kernels
from arlif.errors import user_error_in
from arlif.kernels import cpu as cpu_engine
from arlif.kernels import selfcheck, triton_installed
from arlif.kernels.availability import constant_to_dynamo
from arlif.kernels.function import register
from arlif.kernels.selfcheck import KernelCheckError
from arlif.models.layers import DirectEncoder, Parts, SeqBatchNorm2d, SeqDropout, SeqToANN, init_weights
from arlif.models.resnet import PreActBlock
from arlif.models.vgg import SpikingVGG
from arlif.neurons import build_neuron
from kernel_faults import Faulty

T = 2
CUDA = torch.cuda.is_available()  # on a GPU (scripts/gpu_check.sh) the networks run there, with Triton's kernels
DEVICE = "cuda" if CUDA else "cpu"
FUSED = "triton" if CUDA else "cpu"
TRITON = "triton" if triton_installed() else FUSED  # without CUDA, through Triton's interpreter
# (neuron, backend) of each layer in turn: every backend, fused ones on the neurons that have a kernel.
RESNET_NEURONS = [("arlif", FUSED), ("lif_hard", TRITON), ("plif", "compiled"), ("arlif", "auto"),
                  ("lif_soft", "reference")]
VGG_NEURONS = [("lif_soft", FUSED), ("clif", "compiled"), ("arlif_fixed_alpha", TRITON)]


def in_turn(layers):
    """A model's neuron factory handing out `layers` (name, backend) one after the other."""
    todo = iter(layers)

    def make(channels):
        name, backend = next(todo)
        return build_neuron(name, channels=channels, T=T, backend=backend)
    return make


def parts(neuron, bn_mode):
    """The layer factories of a small network: `neuron` for every spiking layer, no dropout."""
    return Parts(neuron=neuron, norm=partial(SeqBatchNorm2d, bn_mode=bn_mode, T=T),
                 dropout=partial(SeqDropout, 0.0), classifier_dropout=partial(SeqDropout, 0.0))


class SmallResNet(nn.Module):
    """arlif's ResNet-18 at a small size: stem, two pre-activation blocks (one downsampling), head."""

    def __init__(self, neuron):
        super().__init__()
        blocks = parts(neuron, "per_step")
        self.stem = DirectEncoder(nn.Conv2d(2, 8, 3, 1, 1, bias=False))
        self.blocks = nn.Sequential(PreActBlock(8, 8, 1, blocks), PreActBlock(8, 16, 2, blocks))
        self.bn = SeqBatchNorm2d(16)
        self.act = neuron(16)
        self.pool = SeqToANN(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.fc = nn.Linear(16, 3)
        init_weights(self)

    def forward(self, x, T=None):
        return self.fc(self.pool(self.act(self.bn(self.blocks(self.stem(x, T))))))


MODELS = {"resnet": lambda: SmallResNet(in_turn(RESNET_NEURONS)),
          "vgg": lambda: SpikingVGG((8, 8, "M", 16), "flatten", 3, 2, 8, parts(in_turn(VGG_NEURONS), "shared"))}


def step(model, x):
    """Logits and every parameter's gradient of one training step (gradients left cleared)."""
    out = model(x, T=T)
    out.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return out.detach(), grads


# Whole networks compiled (the ResNet runs every backend; the VGG shared BN, a flatten head, CLIF compiled): `-m slow`,
# 10-90 s each; test_trainer_compile.py compiles a model in a training run in the default suite.
@pytest.fixture(scope="module", params=[pytest.param("resnet", marks=pytest.mark.slow), pytest.param("vgg", marks=pytest.mark.slow)])
def eager_and_compiled(request):
    torch.manual_seed(0)
    model = MODELS[request.param]().to(DEVICE).train()
    x = (torch.rand(2, 2, 8, 8) * 2).to(DEVICE)
    eager = step(model, x)
    compiled = step(torch.compile(model, fullgraph=True), x)
    return eager, compiled


def test_compiled_network_matches_eager(eager_and_compiled):
    (out, grads), (out_c, grads_c) = eager_and_compiled
    assert 0 < out.abs().max() and torch.allclose(out_c, out, rtol=1e-5, atol=1e-6)
    # Batch norm cancels a conv bias's gradient to rounding noise: compare against the largest gradient.
    scale = max(g.abs().max().item() for g in grads)
    for mine, theirs in zip(grads_c, grads):
        assert (mine - theirs).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize("engine", ["cpu", "triton"] if triton_installed() else ["cpu"])
@pytest.mark.parametrize("reset", ["adaptive", "soft"])
def test_custom_operators_pass_opcheck(engine, reset):
    from arlif.kernels import triton_neuron

    name = register(cpu_engine if engine == "cpu" else triton_neuron)
    device = "cuda" if engine == "triton" and CUDA else "cpu"
    x = (torch.randn(3, 40, device=device) + 0.5).requires_grad_()
    alpha = torch.tensor(1.3, device=device, requires_grad=True) if reset == "adaptive" else None
    beta = torch.tensor(0.2, device=device, requires_grad=True) if reset == "adaptive" else None
    constants = (name, reset, 0.5, 1.0, 1.0)
    forward = (x, alpha, beta, *constants)
    torch.library.opcheck(torch.ops.arlif.neuron_forward, forward)
    _, flags = torch.ops.arlif.neuron_forward(*forward)
    detached = [t.detach() if t is not None else None for t in (x, alpha, beta)]
    backward = (None if reset == "soft" else detached[0], flags, torch.randn(3, 40, device=device), *detached[1:],
                *constants, alpha is not None, False)
    torch.library.opcheck(torch.ops.arlif.neuron_backward, backward)


def traced(backend, x):
    """One neuron layer's spikes through a freshly traced graph (aot_eager: Dynamo and AOT autograd);
    these use the CPU engine, on CPU tensors, on every machine."""
    torch._dynamo.reset()
    layer = build_neuron("arlif", backend=backend)
    return torch.compile(layer, backend="aot_eager", fullgraph=True)(x)


@pytest.fixture
def faulty_cpu(monkeypatch):
    selfcheck.forget()
    engine = Faulty(cpu_engine, "spike")
    monkeypatch.setattr(arlif.kernels, "_cpu_engine", lambda: engine)
    yield engine
    selfcheck.forget()


def test_the_self_check_runs_before_a_traced_first_use(faulty_cpu):
    x = torch.randn(4, 3, 50) + 0.5
    with pytest.warns(RuntimeWarning, match="fused cpu neuron kernel failed its self-check"):
        spikes = traced("auto", x)
    assert faulty_cpu.shapes == [selfcheck.check_shape()], "the faulty engine ran inside the graph"
    assert torch.equal(spikes, build_neuron("arlif", backend="reference")(x))
    with pytest.raises(Exception) as raised:  # torch.compile wraps it: entry points unwrap (run_cli)
        traced("cpu", x)
    assert isinstance(user_error_in(raised.value), KernelCheckError)
    assert "fused cpu neuron kernel failed its self-check" in str(user_error_in(raised.value))


def test_a_healthy_engine_is_checked_once_at_trace_time_and_runs_in_the_graph():
    selfcheck.forget()
    x = torch.randn(4, 3, 50) + 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spikes = traced("cpu", x)
    assert len(selfcheck._verdicts) == 1 and None in selfcheck._verdicts.values()
    assert torch.equal(spikes, build_neuron("arlif", backend="reference")(x))


def test_the_engine_choice_is_handed_plain_constants_while_tracing(monkeypatch):
    """Dynamo calls `choose_engine` eagerly while it traces and must turn every argument into a Python
    constant; torch 2.11's Dynamo (the GPU machines' torch) cannot do that for a frozen dataclass such as
    NeuronSpec, so every torch.compile of a fused neuron failed there.  Only plain values may reach it."""
    seen = []
    choose = arlif.kernels.choose_engine

    @constant_to_dynamo
    def spy(*args):
        seen.append(args)
        return choose(*args)

    monkeypatch.setattr(arlif.kernels, "choose_engine", spy)
    x = torch.randn(4, 3, 50) + 0.5
    assert torch.equal(traced("cpu", x), build_neuron("arlif", backend="reference")(x))
    plain = (type(None), bool, int, float, str, torch.device, torch.dtype)

    def is_plain(value):
        return isinstance(value, plain) or (type(value) is tuple and all(map(is_plain, value)))
    assert seen and all(is_plain(arg) for args in seen for arg in args), seen


def test_a_spec_is_rebuilt_from_its_constants():
    from arlif.spikes.dynamics import NeuronSpec

    for spec in (NeuronSpec(), NeuronSpec("soft", 0.25, 1.5, 0.75, "sigmoid", 4.0, False)):
        assert NeuronSpec(*spec.constants) == spec


def test_constant_to_dynamo_marks_a_function_as_torchs_decorator_does():
    """The dispatch functions are marked constant without importing Dynamo; the mark must stay torch's own."""
    def theirs():
        return None

    def ours():
        return None

    torch.compiler.assume_constant_result(theirs)
    constant_to_dynamo(ours)
    assert vars(ours) == vars(theirs) == {"_dynamo_marked_constant": True}
