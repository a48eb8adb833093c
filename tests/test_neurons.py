"""The neuron family against hand-worked sequences, an independent autograd
implementation and finite differences (paper eq. 9 and 12)."""

import math

import pytest
import torch

from arlif.neurons import (ARLIF, LIF, NEURONS, NeuronSpec, RectangleSpike, build_neuron, neuron_layers,
                           reference_multistep)


# The AR-LIF family with the paper's spike (rectangle, firing at the threshold); the other neurons, TET's
# LIF among them, are tested in test_competitor_neurons.py and test_spikingjelly_equality.py.
FAMILY = ("arlif", "arlif_fixed_alpha", "arlif_fixed_both", "arlif_fixed_threshold", "lif_hard", "lif_soft")
assert set(FAMILY) <= set(NEURONS)


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def run(neuron, xs):
    neuron.store_v = True
    spikes = neuron(torch.tensor(xs, dtype=torch.float64).unsqueeze(1))
    st = neuron.states
    out = {"s": spikes[:, 0].tolist(), "u": st["u"][:, 0].tolist(), "h": st["h"][:, 0].tolist()}
    if "r" in st:
        out["r"] = st["r"][:, 0].tolist()
    return out


# ---------------------------------------------------------------- hand-worked sequences

def test_lif_hard_by_hand():
    got = run(LIF("hard", backend="reference"), [1.5, 0.2, 1.0, -0.5])
    # h = 1.5 fires -> u = 0; h = 0.2 -> u = 0.2; h = 0.1 + 1.0 = 1.1 fires -> 0; h = -0.5
    assert got["s"] == [1, 0, 1, 0]
    assert got["u"] == pytest.approx([0.0, 0.2, 0.0, -0.5], abs=1e-12)


def test_lif_soft_by_hand():
    got = run(LIF("soft", backend="reference"), [1.5, 0.2, 1.0, -0.5])
    # h = 1.5 -> u = 0.5; h = 0.25 + 0.2 = 0.45; h = 0.225 + 1 = 1.225 -> u = 0.225; h = 0.1125 - 0.5
    assert got["s"] == [1, 0, 1, 0]
    assert got["u"] == pytest.approx([0.5, 0.45, 0.225, -0.3875], abs=1e-12)


def test_arlif_at_init_by_hand():
    """α = 1, β = 0 (the initial values); visits both branches of the memory leak."""
    got = run(ARLIF(backend="reference"), [1.5, 0.2, 1.2, -0.5])
    # t=0: h=1.5 >= 1 fires; r = 0 + σ(1.5); u = h - (1 + σ(r))
    r0 = sig(1.5)
    u0 = 1.5 - (1 + sig(r0))
    # t=1: h = u0/2 + 0.2 < 1, silent; r0 >= 0 so R = σ(0.2)·r0; r = R - σ(0.2)
    h1 = 0.5 * u0 + 0.2
    r1 = sig(0.2) * r0 - sig(0.2)
    # t=2: h = h1/2 + 1.2 fires; r1 < 0 so R = (1 - σ(1.2))·r1; r = R + σ(1.2)
    h2 = 0.5 * h1 + 1.2
    r2 = (1 - sig(1.2)) * r1 + sig(1.2)
    u2 = h2 - (1 + sig(r2))
    # t=3: silent; r2 >= 0
    h3 = 0.5 * u2 - 0.5
    r3 = sig(-0.5) * r2 - sig(-0.5)
    assert got["s"] == [1, 0, 1, 0]
    assert got["r"] == pytest.approx([r0, r1, r2, r3], abs=1e-12)
    assert got["u"] == pytest.approx([u0, h1, u2, h3], abs=1e-12)
    # the same values rounded by hand
    assert got["r"] == pytest.approx([0.817574, -0.100304, 0.745307, -0.096157], abs=2e-6)
    assert got["u"] == pytest.approx([-0.193721, 0.103139, -0.426586, -0.713293], abs=2e-6)


def test_arlif_learned_alpha_beta_by_hand():
    """α = 2, β = 0.5: the adaptive threshold suppresses a spike plain LIF would fire."""
    n = ARLIF(backend="reference")
    with torch.no_grad():
        n.alpha.fill_(2.0)
        n.beta_raw.fill_(math.atanh(0.5))
    got = run(n, [0.8, 0.9, 0.7])
    v0, v1, v2 = (1 + 0.5 * math.tanh(i) for i in (0.8, 0.9, 0.7))
    # t=0: h = 0.8 < v0 = 1.332; r = -σ(0.8)
    r0 = -sig(0.8)
    # t=1: h = 0.4 + 0.9 = 1.3 < v1 = 1.358 (would fire at Vth = 1); r0 < 0: R = (1 - σ(2·0.9))·r0
    r1 = (1 - sig(1.8)) * r0 - sig(0.9)
    # t=2: h = 0.65 + 0.7 = 1.35 >= v2 = 1.302 fires; R = (1 - σ(1.4))·r1
    r2 = (1 - sig(1.4)) * r1 + sig(0.7)
    u2 = 1.35 - (v2 + sig(r2))
    assert got["s"] == [0, 0, 1]
    assert got["h"] == pytest.approx([0.8, 1.3, 1.35], abs=1e-12)
    assert got["r"] == pytest.approx([r0, r1, r2], abs=1e-12)
    assert got["u"] == pytest.approx([0.8, 1.3, u2], abs=1e-12)
    assert got["r"] == pytest.approx([-0.689974, -0.808823, 0.508190], abs=2e-6)
    assert u2 == pytest.approx(-0.576566, abs=2e-6)


@pytest.mark.parametrize("name", FAMILY)
def test_fires_at_exact_threshold(name):
    """Θ(z) = 1 at z = 0: an input equal to the threshold fires."""
    assert run(build_neuron(name, backend="reference"), [1.0])["s"] == [1]


@pytest.mark.parametrize("name", ["arlif_fixed_threshold", "arlif_fixed_both"])
def test_fixed_threshold_ablation_is_plain_threshold(name):
    got = run(build_neuron(name, backend="reference"), [0.9, 0.9])
    # Vth = 1: h = 0.9 silent; h = 0.45 + 0.9 = 1.35 fires
    assert got["s"] == [0, 1]


def test_surrogate_rectangle():
    z = torch.tensor([-0.6, -0.5, -0.2, 0.0, 0.5, 0.6], requires_grad=True)
    s = RectangleSpike.apply(z, 1.0)
    s.sum().backward()
    assert s.tolist() == [0, 0, 0, 1, 1, 1]
    assert z.grad.tolist() == [0, 1, 1, 1, 1, 0]
    z2 = torch.tensor([-0.9, 0.5, 1.1], requires_grad=True)
    RectangleSpike.apply(z2, 2.0).sum().backward()
    assert z2.grad.tolist() == [0.5, 0.5, 0.0]


# ---------------------------------------------------------------- gradients

def independent_arlif(x, alpha, beta, reset, decay=0.5, vth0=1.0, a=1.0):
    """A second, independently written implementation: straight-through surrogate and
    the ReLU form of the two-sided memory leak."""
    u = torch.zeros_like(x[0])
    r = torch.zeros_like(x[0])
    out = []
    for i in x:
        h = decay * u + i
        vth = vth0 + beta * torch.tanh(i) if reset == "adaptive" else torch.full_like(i, vth0)
        z = h - vth
        ramp = torch.clamp(z / a + 0.5, 0.0, 1.0)
        s = (z >= 0).to(z.dtype) + ramp - ramp.detach()
        if reset == "hard":
            u = h * (1 - s)
        elif reset == "soft":
            u = h - s * vth
        else:
            g = torch.sigmoid(alpha * i)
            r = torch.relu(r) * g - torch.relu(-r) * (1 - g) + (2 * s - 1) * torch.sigmoid(i)
            u = h - s * (vth + torch.sigmoid(r))
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("T", [1, 4, 8])
def test_gradients_match_independent_implementation(name, T):
    g = torch.Generator().manual_seed(T)
    x = (torch.randn(T, 64, generator=g, dtype=torch.float64) * 0.8 + 0.6)
    n = build_neuron(name, backend="reference").double()
    if isinstance(n, ARLIF):
        with torch.no_grad():  # away from the initial values so every term is exercised
            n.alpha.fill_(1.7)
            n.beta_raw.fill_(0.4)
    w = torch.randn(T, 64, generator=g, dtype=torch.float64)

    x1 = x.clone().requires_grad_()
    (n(x1) * w).sum().backward()
    alpha, beta = n.scalars()
    x2 = x.clone().requires_grad_()
    a2 = alpha.detach().clone().requires_grad_() if alpha is not None else None
    b2 = n.beta_raw.detach().clone().requires_grad_() if isinstance(n, ARLIF) else None
    s2 = independent_arlif(x2, a2, torch.tanh(b2) if b2 is not None else None, n.spec.reset)
    (s2 * w).sum().backward()

    assert torch.equal(n(x), s2.detach())
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-12)
    for pname, p, ref in (("alpha", getattr(n, "alpha", None), a2), ("beta_raw", getattr(n, "beta_raw", None), b2)):
        if p is None:
            continue
        if p.requires_grad:
            torch.testing.assert_close(p.grad, ref.grad, rtol=1e-10, atol=1e-12)
        else:
            assert p.grad is None, f"{pname} is fixed but got a gradient"


@pytest.mark.parametrize("reset", ["hard", "soft", "adaptive"])
def test_gradients_match_finite_differences(reset):
    """Where every |h - Vth| > a/2 the surrogate adds nothing, so the autograd gradient of
    the final state is the true derivative: check it with central differences."""
    spec = NeuronSpec(reset, surrogate_width=1.0)
    x = torch.tensor([[1.9, -0.6], [-1.2, 2.4], [2.6, -0.7], [-0.9, 2.4]], dtype=torch.float64)
    alpha = torch.tensor(1.3, dtype=torch.float64)
    beta_raw = torch.tensor(0.3, dtype=torch.float64)

    def final_state(x, alpha, beta_raw):
        _, st = reference_multistep(x, spec, alpha, torch.tanh(beta_raw), store_v=True)
        z = st["h"] - (1 + torch.tanh(beta_raw) * torch.tanh(x) if reset == "adaptive" else 1.0)
        assert bool((z.abs() > 0.6).all()), "test inputs must stay outside the surrogate window"
        loss = st["u"][-1].sum() + 0.5 * st["u"].sum()
        return loss + st["r"].sum() if reset == "adaptive" else loss

    inputs = (x, alpha, beta_raw) if reset == "adaptive" else (x,)
    fn = final_state if reset == "adaptive" else (lambda x: final_state(x, alpha, beta_raw))
    assert torch.autograd.gradcheck(fn, tuple(t.clone().requires_grad_() for t in inputs), eps=1e-6, atol=1e-7)


# ---------------------------------------------------------------- API and ablations

@pytest.mark.parametrize("name,alpha_learn,beta_learn", [
    ("arlif", True, True), ("arlif_fixed_alpha", False, True),
    ("arlif_fixed_threshold", True, False), ("arlif_fixed_both", False, False)])
def test_ablations_freeze_what_they_name(name, alpha_learn, beta_learn):
    n = build_neuron(name)
    params = dict(n.named_parameters())
    buffers = dict(n.named_buffers())
    assert ("alpha" in params) == alpha_learn and ("alpha" in buffers) == (not alpha_learn)
    assert ("beta_raw" in params) == beta_learn and ("beta_raw" in buffers) == (not beta_learn)
    assert n.alpha.item() == 1.0 and n.beta.item() == 0.0
    n(torch.rand(3, 10, requires_grad=True) * 2).sum().backward()
    assert (n.alpha.grad is not None) == alpha_learn
    assert (n.beta_raw.grad is not None) == beta_learn


def test_lif_has_no_parameters():
    assert list(build_neuron("lif_hard").parameters()) == []
    assert list(build_neuron("lif_soft").parameters()) == []


def test_build_neuron_rejects_unknown_names_and_values():
    with pytest.raises(ValueError, match="unknown neuron"):
        build_neuron("alif")
    with pytest.raises(ValueError, match="backend"):
        build_neuron("arlif", backend="cuda")
    with pytest.raises(ValueError, match="decay"):
        build_neuron("lif_soft", decay=1.5)


@pytest.mark.parametrize("name", FAMILY)
def test_shape_dtype_and_state_reset_between_calls(name):
    n = build_neuron(name, backend="reference")
    x = torch.rand(4, 2, 3, 5, 5) * 2
    first = n(x)
    assert first.shape == x.shape and first.dtype == x.dtype
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(n(x), first), "a new call must start from zero state"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_in_same_dtype_out(dtype):
    n = build_neuron("arlif", backend="reference")
    x = (torch.rand(4, 8, 16) * 2).to(dtype).requires_grad_()
    s = n(x)
    assert s.dtype == dtype
    s.float().sum().backward()
    assert x.grad.dtype == dtype
    # fp32 math inside: same spikes as the fp32 neuron on the same (rounded) input
    assert torch.equal(s.float(), n(x.detach().float()))


def test_autocast_keeps_dtype():
    conv = torch.nn.Linear(16, 16)
    n = build_neuron("arlif", backend="reference")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(torch.randn(4, 8, 16))
        s = n(y)
    assert y.dtype == torch.bfloat16 and s.dtype == torch.bfloat16


def test_neuron_layers_lists_all_neurons():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), build_neuron("arlif"), torch.nn.Sequential(build_neuron("lif_soft")))
    assert [name for name, _ in neuron_layers(model)] == ["1", "2.0"]
