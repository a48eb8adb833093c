"""backend="compiled": a neuron's own step loop compiled by torch.compile, against its eager loop.

Identical spikes and gradients for the input and every trainable parameter within 1e-5
relative; one compiled graph serves several layer shapes of one neuron kind, and kinds that
differ in a constant get a graph each; `auto` picks it for neurons without a fused kernel
(inputs that are not toys); a compile failure or a mismatch is caught by the
self-check (one warning and the eager loop under `auto`, KernelCheckError when explicit).
Compiling takes 5-20 s per neuron kind on 2 cores, so the default suite compiles two kinds
(AR-LIF's spec with its per-layer scalars; GLIF's per-channel and per-step parameters) and
the `slow` test every neuron.
"""

import warnings

import pytest
import torch
from torch._dynamo.utils import counters

from arlif.kernels import compiled
from arlif.kernels.selfcheck import KernelCheckError
from arlif.neurons import NEURONS, build_neuron

pytestmark = pytest.mark.usefixtures("fresh_verdicts")  # tests/conftest.py

T = 4
CHANNELS = 6
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # on a GPU (scripts/gpu_check.sh) Inductor writes Triton


def make(name, backend):
    """Neuron `name` with the same initial parameters whatever the backend, moved off their special
    initial values so that every term of the dynamics counts."""
    torch.manual_seed(0)
    neuron = build_neuron(name, channels=CHANNELS, T=T, backend=backend)
    with torch.no_grad():
        for p in neuron.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    return neuron.to(DEVICE)


def inputs(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen) * 0.9 + 0.6).to(DEVICE), torch.randn(shape, generator=gen).to(DEVICE)


def run(neuron, x, grad):
    """Spikes and the gradients of <spikes, grad> for x and every trainable parameter."""
    x = x.clone().requires_grad_()
    spikes = neuron(x)
    leaves = [x, *(p for p in neuron.parameters() if p.requires_grad)]
    return spikes.detach(), torch.autograd.grad(spikes, leaves, grad, materialize_grads=True)


def assert_same(name, shape, seed=0):
    x, grad = inputs(shape, seed)
    ref = run(make(name, "reference"), x, grad)
    got = run(make(name, "compiled"), x, grad)
    assert torch.equal(got[0], ref[0]), f"{(got[0] != ref[0]).sum().item()} spikes differ"
    assert 0 < ref[0].mean() < 1, "the input should make some neurons fire and others not"
    for mine, theirs in zip(got[1], ref[1]):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item() + 1e-7)


# GLIF repeats AR-LIF's path with another neuron's step loop (`-m slow`).
@pytest.mark.parametrize("name", ["arlif", pytest.param("glif", marks=pytest.mark.slow)])
def test_compiled_matches_the_eager_loop_with_one_graph_for_two_layer_shapes(name):
    before = counters["stats"]["unique_graphs"]
    assert_same(name, (T, 3, CHANNELS, 5, 5))
    assert_same(name, (T, 5, CHANNELS, 3, 7), seed=1)  # another layer of the same kind
    assert counters["stats"]["unique_graphs"] - before == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NEURONS))
def test_every_neuron_compiles_and_matches_its_eager_loop(name):
    assert_same(name, (T, 3, CHANNELS, 5, 5))


def test_auto_compiles_the_loop_of_a_neuron_without_a_fused_kernel_unless_the_input_is_a_toy():
    neuron = make("tet_lif", "auto")  # LIF with TET's triangle surrogate: no fused kernel
    assert not neuron.fused_kernel
    compiled._functions.pop(type(neuron).step_loop, None)
    toy = inputs((T, 2, CHANNELS, 3, 3), seed=0)
    run(neuron, *toy)
    assert type(neuron).step_loop not in compiled._functions, "auto compiled a toy input"
    x, grad = inputs((T, 2, CHANNELS, 80, 80), seed=0)  # 76,800 elements per step
    got = run(neuron, x, grad)
    assert type(neuron).step_loop in compiled._functions, "auto did not compile the step loop"
    ref = run(make("tet_lif", "reference"), x, grad)
    assert torch.equal(got[0], ref[0])


def test_kinds_that_differ_in_a_constant_each_get_a_graph():
    """A second surrogate slope would otherwise turn the first graph's constant symbolic, which
    Dynamo cannot trace through a custom backward."""
    x, grad = inputs((T, 2, CHANNELS, 3, 3), seed=0)
    for slope in (2.0, 3.0):
        torch.manual_seed(0)
        neuron = build_neuron("plif", backend="compiled", surrogate_slope=slope).to(DEVICE)
        reference = build_neuron("plif", backend="reference", surrogate_slope=slope).to(DEVICE)
        got, ref = run(neuron, x, grad), run(reference, x, grad)  # a failed check would raise
        assert torch.equal(got[0], ref[0])


def test_store_v_runs_the_eager_loop_and_keeps_the_states():
    neuron = make("plif", "compiled")
    neuron.store_v = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neuron(inputs((T, 2, CHANNELS, 3, 3), seed=0)[0])
    assert neuron.v_seq.shape == (T, 2, CHANNELS, 3, 3)


class BrokenCompile:
    """Stands in for torch.compile's wrapper: raises as a missing C++ compiler does, or flips a spike."""

    def __init__(self, fault):
        self.fault = fault

    def __call__(self, step_loop):
        def loop(neuron, x):
            if self.fault == "compiler":
                raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in cpp_builder")
            spikes, states = step_loop(neuron, x)
            spikes = spikes.clone()
            spikes.view(-1)[-1] = 1 - spikes.view(-1)[-1]
            return spikes, states
        return loop


NO_COMPILER = r"it failed to run \(RuntimeError: InvalidCxxCompiler: No working C\+\+ compiler found in cpp_builder\)"


@pytest.mark.parametrize("fault, problem", [("compiler", NO_COMPILER), ("spike", r"1 of \d+ spikes differ")])
def test_a_failed_check_falls_back_once_under_auto_and_stops_an_explicit_backend(monkeypatch, fault, problem):
    monkeypatch.setattr(compiled, "compiled_loop", BrokenCompile(fault))
    x, grad = inputs((T, 2, CHANNELS, 80, 80), seed=0)  # large enough for auto to compile
    with pytest.warns(RuntimeWarning, match=r"compiled step loop of PLIF\(.*\) failed its self-check against its "
                                            r"eager loop \(float32 on " + DEVICE + r".*, T=4, with gradients\): " + problem +
                                            r"; this process uses the eager step loop"):
        got = run(make("plif", "auto"), x, grad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the verdict is kept: a second layer says nothing
        again = run(make("plif", "auto"), x, grad)
    ref = run(make("plif", "reference"), x, grad)
    for mine in (got, again):
        assert torch.equal(mine[0], ref[0]) and all(torch.equal(a, b) for a, b in zip(mine[1], ref[1]))
    with pytest.raises(KernelCheckError, match=problem + r".*set neuron.backend=auto"):
        make("plif", "compiled")(x)
