"""arlif's CLIF, PLIF, GLIF and PSN family against SpikingJelly 2.0.0 (a test-only oracle).

Same options and the same surrogate on both sides: identical spikes, gradients for the
input and every parameter within 1e-5 relative in fp32, and state dicts that load
one-to-one in both directions.
"""

import pytest
import torch

import spikingjelly.activation_based.neuron as sj  # test-only dependency, pinned in requirements.txt
from spikingjelly.activation_based import surrogate as sj_surrogate

from arlif.neurons import CLIF, GLIF, PLIF, PSN, MaskedPSN, SlidingPSN

T = 4
SHAPE = (T, 3, 4, 2, 2)  # [T, B, C, H, W]: GatedLIFNode needs 4-d steps
TOLERANCE = 1e-5

# Our (surrogate, width-or-slope) -> SpikingJelly's surrogate with the same derivative.
SURROGATES = {
    ("rectangle", 1.0): lambda: sj_surrogate.Rect(alpha=1.0),
    ("rectangle", 0.5): lambda: sj_surrogate.Rect(alpha=2.0),
    ("triangle", 1.0): lambda: sj_surrogate.PiecewiseQuadratic(alpha=1.0),
    ("arctangent", 2.0): lambda: sj_surrogate.ATan(alpha=2.0),
    ("sigmoid", 4.0): lambda: sj_surrogate.Sigmoid(alpha=4.0),
}


def ours_kwargs(kind, size):
    size_key = "surrogate_width" if kind in ("rectangle", "triangle") else "surrogate_slope"
    return {"surrogate": kind, size_key: size, "fire_at_threshold": True}


def relative_error(got, ref):
    return ((got - ref).abs().max() / ref.abs().max().clamp(min=1e-12)).item()


def compare(ours, theirs, scale=1.0, shift=0.5):
    """Load our parameters into theirs, run both on one input, compare spikes and all gradients."""
    theirs.load_state_dict(ours.state_dict())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=gen) * scale + shift
    grad = torch.randn(SHAPE, generator=gen)
    outs = []
    for module in (ours, theirs):
        module.zero_grad()
        xs = x.clone().requires_grad_()
        spikes = module(xs)
        spikes.backward(grad)
        outs.append((spikes.detach(), xs.grad, {n: p.grad for n, p in module.named_parameters()}))
    (s1, gx1, gp1), (s2, gx2, gp2) = outs
    assert 0 < s1.mean() < 1, "the input must make some neurons fire and others not"
    assert torch.equal(s1, s2)
    assert relative_error(gx1, gx2) < TOLERANCE
    assert gp1.keys() == gp2.keys()
    for name in gp1:
        assert gp2[name].abs().max() > 0, f"no gradient reaches {name}: the comparison would be empty"
        assert relative_error(gp1[name], gp2[name]) < TOLERANCE, name


def check_state_dicts(ours, theirs):
    """A SpikingJelly state dict loads into ours one-to-one, and ours into theirs."""
    mine, other = ours.state_dict(), theirs.state_dict()
    assert {k: tuple(v.shape) for k, v in mine.items()} == {k: tuple(v.shape) for k, v in other.items()}
    for key in other:
        other[key] = other[key] + 0.25
    ours.load_state_dict(other)  # strict
    assert all(torch.equal(ours.state_dict()[k], other[k]) for k in other)
    theirs.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("kind,size", [("rectangle", 1.0), ("rectangle", 0.5), ("sigmoid", 4.0)])
def test_clif(kind, size):
    ours = CLIF(**ours_kwargs(kind, size))
    theirs = sj.ComplementaryLIFNode(surrogate_function=SURROGATES[kind, size](), step_mode="m")
    compare(ours, theirs, shift=0.8)
    check_state_dicts(ours, theirs)


@pytest.mark.parametrize("kind,size,detach_reset", [("arctangent", 2.0, True), ("sigmoid", 4.0, False),
                                                    ("triangle", 1.0, False)])
@pytest.mark.parametrize("decay_input", [True, False])
def test_plif(kind, size, detach_reset, decay_input):
    ours = PLIF(init_tau=3.0, decay_input=decay_input, detach_reset=detach_reset, **ours_kwargs(kind, size))
    with torch.no_grad():
        ours.w.add_(0.3)  # off the initial value
    theirs = sj.ParametricLIFNode(init_tau=3.0, decay_input=decay_input, detach_reset=detach_reset,
                                  surrogate_function=SURROGATES[kind, size](), step_mode="m")
    compare(ours, theirs, scale=1.5, shift=1.0 if decay_input else 0.6)
    check_state_dicts(ours, theirs)


@pytest.mark.parametrize("kind,size", [("sigmoid", 4.0), ("rectangle", 1.0), ("arctangent", 2.0)])
@pytest.mark.parametrize("channel_wise", [True, False])
def test_glif(kind, size, channel_wise):
    torch.manual_seed(1)
    ours = GLIF(T=T, channels=SHAPE[2], channel_wise=channel_wise, **ours_kwargs(kind, size))
    with torch.no_grad():
        for p in ours.parameters():  # every gate and constant off its start, per channel
            p.add_(torch.rand(p.shape) * 0.6 - 0.3)
    theirs = sj.GatedLIFNode(T=T, inplane=SHAPE[2] if channel_wise else None,
                             surrogate_function=SURROGATES[kind, size]())
    compare(ours, theirs, shift=0.4)
    check_state_dicts(ours, theirs)


@pytest.mark.parametrize("kind,size", [("arctangent", 2.0), ("rectangle", 1.0)])
def test_psn(kind, size):
    torch.manual_seed(2)
    ours = PSN(T=T, **ours_kwargs(kind, size))
    theirs = sj.PSN(T=T, surrogate_function=SURROGATES[kind, size]())
    compare(ours, theirs, shift=1.0)
    check_state_dicts(ours, theirs)


@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("order", [1, 2])
def test_masked_psn(order, lam):
    torch.manual_seed(3)
    ours = MaskedPSN(T=T, order=order, lambda_init=lam, lambda_rate=0.0)
    theirs = sj.MaskedPSN(k=order, T=T, lambda_init=lam, surrogate_function=SURROGATES["arctangent", 2.0](),
                          step_mode="m")
    compare(ours, theirs, scale=3.0, shift=1.0)
    check_state_dicts(ours, theirs)


@pytest.mark.parametrize("order,exp_init", [(1, True), (2, True), (3, False), (6, False)])
@pytest.mark.parametrize("kind,size", [("arctangent", 2.0), ("sigmoid", 4.0)])
def test_sliding_psn(order, exp_init, kind, size):
    torch.manual_seed(4)
    ours = SlidingPSN(order=order, exp_init=exp_init, **ours_kwargs(kind, size))
    theirs = sj.SlidingPSN(k=order, exp_init=exp_init, surrogate_function=SURROGATES[kind, size](), step_mode="m")
    with torch.no_grad():
        fresh = SlidingPSN(order=order, exp_init=exp_init)
    assert torch.equal(fresh.weight, theirs.weight) if exp_init else fresh.weight.shape == theirs.weight.shape
    with torch.no_grad():
        ours.weight.copy_(torch.linspace(-0.5, 1.0, order))  # mixed signs, the newest input weighing most
    compare(ours, theirs, scale=2.0, shift=1.0)
    check_state_dicts(ours, theirs)


def test_initial_values_match_spikingjelly():
    """Deterministic starts agree (random ones, the gates and the PSN weights, are drawn alike in shape)."""
    torch.manual_seed(5)
    for ours, theirs in ((PLIF(), sj.ParametricLIFNode()), (PSN(T=T), sj.PSN(T=T)),
                         (GLIF(T=T, channels=3), sj.GatedLIFNode(T=T, inplane=3)),
                         (MaskedPSN(T=T, order=2), sj.MaskedPSN(k=2, T=T))):
        mine, other = ours.state_dict(), theirs.state_dict()
        for key in mine:
            if key in ("weight", "alpha", "beta", "gamma"):
                continue
            assert torch.allclose(mine[key], other[key]), (type(ours).__name__, key)
