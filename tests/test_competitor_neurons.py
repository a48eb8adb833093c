"""The competitor neurons (CLIF, PLIF, GLIF, PSN family, TET's LIF, the authors' CIFAR10-DVS neuron) and the
surrogate choice: hand-worked sequences, hand-derived gradients, the API they share, and every model."""

import math

import pytest
import torch

from arlif.models import create_model
from arlif.neurons import (CLIF, GLIF, NEURONS, PLIF, PSN, ARLIFPSNCode, MaskedPSN, SlidingPSN, Surrogate,
                           build_neuron, neuron_layers)

NEW = ("tet_lif", "clif", "plif", "glif", "psn", "masked_psn", "sliding_psn", "arlif_psn_code")


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def seq(*values, requires_grad=False):
    """A [T, 1] fp64 input."""
    return torch.tensor(values, dtype=torch.float64).unsqueeze(1).requires_grad_(requires_grad)


def run(neuron, x):
    """Spikes [T] and states {name: [T]} of one neuron on a [T, 1] input, in fp64."""
    neuron = neuron.double()
    neuron.store_v = True
    spikes = neuron(x)
    return spikes[:, 0].tolist(), {k: v[:, 0].tolist() for k, v in neuron.states.items()}


# ---------------------------------------------------------------- surrogates

PRIMITIVES = {  # antiderivatives of each surrogate, written from its definition
    ("rectangle", 0.8): lambda z: (z / 0.8 + 0.5).clamp(0.0, 1.0),
    ("triangle", 1.5): lambda z: torch.where(z < 0, (1.5 + z).clamp(min=0) ** 2 / (2 * 1.5 ** 2),
                                             1 - (1.5 - z).clamp(min=0) ** 2 / (2 * 1.5 ** 2)),
    ("arctangent", 3.0): lambda z: torch.atan(math.pi / 2 * 3.0 * z) / math.pi + 0.5,
    ("sigmoid", 5.0): lambda z: torch.sigmoid(5.0 * z),
}


@pytest.mark.parametrize("kind,size", list(PRIMITIVES))
def test_surrogate_is_the_derivative_of_its_primitive(kind, size):
    """The backward equals autograd's derivative of a smooth primitive (fp64), away from kinks."""
    spike = Surrogate(kind, size) if kind in ("rectangle", "triangle") else Surrogate(kind, slope=size)
    z = torch.linspace(-2.3, 2.3, 461, dtype=torch.float64)
    z = z[(z.abs() - {"rectangle": 0.4, "triangle": 1.5}.get(kind, -1)).abs() > 1e-6]  # off the kinks
    z0 = z.clone().requires_grad_()
    PRIMITIVES[kind, size](z0).sum().backward()
    z1 = z.clone().requires_grad_()
    spike(z1).sum().backward()
    torch.testing.assert_close(z1.grad, z0.grad, rtol=1e-10, atol=1e-12)
    prim = PRIMITIVES[kind, size]
    assert float(prim(torch.tensor(9.0, dtype=torch.float64)) - prim(torch.tensor(-9.0, dtype=torch.float64))) \
        == pytest.approx(1.0, abs=2e-2)  # each integrates to (about) 1


def test_fire_at_threshold_or_strictly_above():
    z = torch.tensor([-0.1, 0.0, 0.1])
    assert Surrogate("triangle").__call__(z).tolist() == [0, 1, 1]
    assert Surrogate("triangle", fire_at_threshold=False)(z).tolist() == [0, 0, 1]


def test_surrogate_options_are_checked():
    assert Surrogate("sigmoid").slope == 4.0 and Surrogate("arctangent").slope == 2.0
    for bad in (dict(kind="gaussian"), dict(kind="rectangle", width=0.0), dict(kind="triangle", slope=2.0),
                dict(kind="sigmoid", slope=-1.0), dict(fire_at_threshold="yes")):
        with pytest.raises(ValueError):
            Surrogate(**bad)


def test_arlif_and_lif_take_any_surrogate():
    """Another spike function runs the loop (the fused kernels implement the rectangle at ≥ only)."""
    arlif = build_neuron("arlif", surrogate="sigmoid", backend="auto")
    assert not arlif.fused_kernel and build_neuron("arlif").fused_kernel
    x = seq(1.0, 1.0, requires_grad=True)
    spikes, _ = run(build_neuron("lif_hard", fire_at_threshold=False), x)
    assert spikes == [0, 1]  # h = 1 does not fire, then h = 0.5 + 1 does
    with pytest.raises(ValueError, match="no fused kernel"):
        build_neuron("arlif", surrogate="triangle", backend="cpu")


# ---------------------------------------------------------------- hand-worked sequences

def test_tet_lif_by_hand():
    spikes, st = run(build_neuron("tet_lif"), seq(1.0, 0.6, 1.2, 0.5))
    # h = 1.0 is not above 1: silent, u = 1; h = 0.5 + 0.6 = 1.1 fires -> 0; h = 1.2 fires -> 0; h = 0.5
    assert spikes == [0, 1, 1, 0]
    assert st["u"] == pytest.approx([1.0, 0.0, 0.0, 0.5], abs=1e-12)


def test_tet_lif_gradient_by_hand():
    """Triangle, width 1: f'(z) = max(0, 1 - |z|); hard reset u0 = h0·(1 - s0)."""
    x = seq(0.8, 0.7, requires_grad=True)
    spikes = build_neuron("tet_lif").double()(x)
    assert spikes[:, 0].tolist() == [0, 1]  # h1 = 0.4 + 0.7 = 1.1
    spikes.sum().backward()
    du0 = 1 - 0.8 * 0.8  # (1 - s0) - h0·f'(-0.2)
    assert x.grad[:, 0].tolist() == pytest.approx([0.8 + 0.9 * 0.5 * du0, 0.9], abs=1e-12)


def test_clif_by_hand():
    spikes, st = run(CLIF(), seq(1.5, 0.2, 1.4))
    # t0: h = 1.5 fires; m = 0·σ(.75) + 1 = 1; v = 1.5 - (1 + σ(1))
    v0 = 1.5 - (1 + sig(1.0))
    # t1: h = v0 - v0/2 + 0.2, silent; m = 1·σ(h/2)
    h1 = v0 / 2 + 0.2
    m1 = sig(h1 / 2)
    # t2: h = h1/2 + 1.4 fires; m = m1·σ(h2/2) + 1
    h2 = h1 / 2 + 1.4
    assert spikes == [1, 0, 1]
    assert st["h"] == pytest.approx([1.5, h1, h2], abs=1e-12)
    assert st["m"] == pytest.approx([1.0, m1, m1 * sig(h2 / 2) + 1], abs=1e-12)


def test_clif_gradient_by_hand():
    """T = 1, rectangle width 1: ds/dx = 1 inside |h - 1| ≤ 0.5."""
    x = seq(1.3, requires_grad=True)
    CLIF().double()(x).sum().backward()
    assert x.grad.item() == 1.0


def test_plif_by_hand():
    assert run(PLIF(), seq(1.5, 0.8, 1.4))[0] == [0, 0, 1]  # h = .75, .775, 1.0875 (k = 1/2)
    spikes, st = run(PLIF(decay_input=False), seq(1.5, 0.8, 1.4))  # h = 1.5 -> 0; 0.8; 0.4 + 1.4
    assert spikes == [1, 0, 1] and st["h"] == pytest.approx([1.5, 0.8, 1.8], abs=1e-12)


def test_plif_gradient_by_hand():
    """T = 1: h = σ(w)·x, dh/dw = x·k(1 - k); arctangent slope 2: f'(z) = 1/(1 + (πz)²)."""
    plif = PLIF(init_tau=2.0).double()
    x = seq(1.5, requires_grad=True)
    plif(x).sum().backward()
    fz = 1 / (1 + (math.pi * -0.25) ** 2)
    assert x.grad.item() == pytest.approx(fz * 0.5, abs=1e-12)
    assert plif.w.grad.item() == pytest.approx(fz * 1.5 * 0.25, abs=1e-12)
    assert plif.w.item() == pytest.approx(0.0) and PLIF(init_tau=3.0).decay.item() == pytest.approx(1 / 3)


def glif_at_half(**kw):
    """GLIF with every logit 0: all gates and constants σ(0) = 1/2."""
    glif = GLIF(T=2, channel_wise=False, **kw).double()
    with torch.no_grad():
        for p in glif.parameters():
            p.zero_()
    return glif


def test_glif_by_hand():
    # Every σ = 1/2 but γ = σ(ln 3) = 3/4.  d = 1 - α(1 - τ) = 3/4; I = x·(1 - β(1 - c)) = 3x/4; (1 - α)·l = 1/4
    # t0: u = -1/4 + 0.9 = 0.65 > 0.5 fires
    # t1: u = 3/4·0.65 - 1/4 + 3/4·0.9 - 3/4·0.65·3/4 (hard part, γ) - 1/4·1/2 (soft part, 1 - γ) = 0.421875
    glif = glif_at_half()
    with torch.no_grad():
        glif.gamma.fill_(math.log(3.0))
    spikes, st = run(glif, seq(1.2, 0.9))
    assert spikes == [1, 0]
    assert st["h"] == pytest.approx([0.65, 0.421875], abs=1e-12)


def test_glif_fires_strictly_above_and_per_channel():
    glif = glif_at_half()
    with torch.no_grad():
        glif.linear_decay.fill_(-50.0)  # no leak: u0 = 3x/4
    assert run(glif, seq(2 / 3, 0.0))[0][0] == 0  # u0 = 0.5 = V: silent (original: strictly above)
    cw = GLIF(T=2, channels=2).double()
    with torch.no_grad():
        for p in cw.parameters():
            p.zero_()
        cw.v_threshold[1] = 3.0  # channel 1's threshold σ(3) ≈ 0.95
    x = torch.full((2, 1, 2, 1, 1), 1.2, dtype=torch.float64)
    assert cw(x)[0, 0, :, 0, 0].tolist() == [1, 0]  # u0 = 0.65 for both channels


def test_glif_gradient_by_hand():
    """T = 1, every σ = 1/2: u0 = -(1 - α)l + x(1 - β(1 - c)), rectangle width 1 so f' = 1 at z = 0.15."""
    glif = glif_at_half()
    x = seq(1.2, 0.0, requires_grad=True)
    glif(x)[0].sum().backward()
    assert x.grad[0].item() == pytest.approx(0.75)
    quarter = 0.25  # dσ/dlogit at 0
    grads = {n: p.grad for n, p in glif.named_parameters()}
    assert grads["v_threshold"].item() == pytest.approx(-quarter)
    assert grads["linear_decay"].item() == pytest.approx(-0.5 * quarter)
    assert grads["alpha"].item() == pytest.approx(0.5 * quarter)  # d/dα of -(1 - α)l, u[-1] = 0
    assert grads["beta"].item() == pytest.approx(-1.2 * 0.5 * quarter)
    assert grads["conduct"].tolist() == pytest.approx([1.2 * 0.5 * quarter, 0.0])


def test_glif_initial_values():
    glif = GLIF(T=4, channels=3)
    values = glif.parameter_values()
    for name, want in (("tau", 0.25), ("v_threshold", 0.5), ("linear_decay", 0.5 / 8), ("v_subreset", 0.5),
                       ("conduct", 0.5)):
        torch.testing.assert_close(values[name], torch.full_like(values[name], want))
    assert glif.conduct.shape == (4, 3)
    assert all((getattr(glif, g).abs() <= 0.1).all() for g in ("alpha", "beta", "gamma"))


def psn_with(weight, T=2):
    psn = PSN(T=T).double()
    with torch.no_grad():
        psn.weight.copy_(torch.tensor(weight))
    return psn


def test_psn_by_hand_and_gradient():
    psn = psn_with([[1.0, 0.0], [0.5, 2.0]])
    x = seq(0.8, 0.3, requires_grad=True)
    spikes = psn(x)
    assert spikes[:, 0].tolist() == [0, 1]  # H = (-0.2, 0.4 + 0.6 - 1 = 0): fires at 0
    spikes.sum().backward()
    f = lambda z: 1 / (1 + (math.pi * z) ** 2)  # arctangent, slope 2  # noqa: E731
    assert x.grad[:, 0].tolist() == pytest.approx([f(-0.2) + 0.5 * f(0.0), 2 * f(0.0)], abs=1e-12)
    assert psn.weight.grad.flatten().tolist() == pytest.approx([f(-0.2) * 0.8, f(-0.2) * 0.3, 0.8, 0.3], abs=1e-12)
    assert psn.bias.grad[:, 0].tolist() == pytest.approx([f(-0.2), 1.0], abs=1e-12)


def test_masked_psn_mask_and_schedule():
    psn = MaskedPSN(T=3, order=1, lambda_init=1.0, lambda_rate=0.0).double()
    with torch.no_grad():
        psn.weight.fill_(1.0)
    x = seq(0.6, 0.7, 1.1)
    assert run(psn, x)[1]["h"] == pytest.approx([-0.4, -0.3, 0.1], abs=1e-12)  # λ = 1: diagonal only
    psn._lambda_.fill_(0.0)  # no mask: every step sees all inputs (sum 2.4)
    assert run(psn, x)[1]["h"] == pytest.approx([1.4] * 3, abs=1e-12)
    psn._lambda_.fill_(0.5)  # off-band entries weigh 1/2
    assert run(psn, x)[1]["h"] == pytest.approx([-0.4 + 0.9, -0.3 + 0.85, 0.1 + 0.65], abs=1e-12)
    scheduled = MaskedPSN(T=3)  # λ = min(1, 8·e/(E - 1)), as the paper's script
    lams = []
    for epoch in range(17):
        scheduled.on_epoch(epoch, 17)
        lams.append(float(scheduled._lambda_))
    assert lams[:3] == [0.0, 0.5, 1.0] and lams[-1] == 1.0


def test_sliding_psn_by_hand():
    psn = SlidingPSN(order=2).double()  # weights (1/2, 1), bias -1: H[t] = x[t-1]/2 + x[t] - 1
    assert psn.weight.tolist() == [0.5, 1.0]
    spikes, st = run(psn, seq(0.9, 0.6, 0.5))
    assert spikes == [0, 1, 0] and st["h"] == pytest.approx([-0.1, 0.05, -0.2], abs=1e-12)
    assert run(psn, seq(0.9, 0.6, 0.5, 2.0))[0] == [0, 1, 0, 1]  # any T


def test_arlif_psn_code_by_hand():
    """Section 8 of the published-code facts: decay 0.2, strictly above, no memory carry-over."""
    spikes, st = run(ARLIFPSNCode(), seq(1.5, 0.9, 1.0))
    u0 = 1.5 - (1 + sig(sig(1.5)))          # spike: reset V + σ(σ(x)), memory (2s - 1)σ(x) = σ(1.5)
    h1 = 0.2 * u0 + 0.9                      # silent: memory -σ(0.9), not σ(0.9)·σ(1.5) - σ(0.9)
    h2 = 0.2 * h1 + 1.0                      # fires
    assert spikes == [1, 0, 1]
    assert st["h"] == pytest.approx([1.5, h1, h2], abs=1e-12)
    assert st["r"] == pytest.approx([sig(1.5), -sig(0.9), sig(1.0)], abs=1e-12)
    assert st["u"] == pytest.approx([u0, h1, h2 - (1 + sig(sig(1.0)))], abs=1e-12)
    assert run(ARLIFPSNCode(), seq(1.0))[0] == [0]  # h = 1 is not above the threshold


def test_arlif_psn_code_gradient_by_hand():
    """β = 1/2: z = x - 1 - β·tanh(x); triangle f'(z) = 1 - |z|; the second step (h ≈ -0.06) is outside the
    triangle, so only the first counts.  α is in the graph (through the reset) with a gradient of exactly 0."""
    neuron = ARLIFPSNCode().double()
    with torch.no_grad():
        neuron.beta_raw.fill_(math.atanh(0.5))
    x = seq(1.9, 0.0, requires_grad=True)
    neuron(x).sum().backward()
    z = 1.9 - 1 - 0.5 * math.tanh(1.9)
    fz = 1 - abs(z)
    assert x.grad[0].item() == pytest.approx(fz * (1 - 0.5 * (1 - math.tanh(1.9) ** 2)), abs=1e-12)
    assert neuron.beta_raw.grad.item() == pytest.approx(-fz * math.tanh(1.9) * (1 - 0.25), abs=1e-12)
    assert neuron.alpha.grad is not None and neuron.alpha.grad.item() == 0.0


# ---------------------------------------------------------------- the shared API

def test_defaults_follow_the_original_code():
    want = {"tet_lif": ("triangle", False), "clif": ("rectangle", True), "plif": ("arctangent", True),
            "glif": ("rectangle", False), "psn": ("arctangent", True), "masked_psn": ("arctangent", True),
            "sliding_psn": ("arctangent", True), "arlif_psn_code": ("triangle", False)}
    for name, (kind, at) in want.items():
        s = build_neuron(name, channels=2, T=4).surrogate
        assert (s.kind, s.fire_at_threshold) == (kind, at), name
    assert build_neuron("arlif_psn_code").decay == 0.2 and build_neuron("tet_lif").spec.decay == 0.5


@pytest.mark.parametrize("name", NEW)
def test_state_starts_at_zero_and_dtypes(name):
    torch.manual_seed(0)
    neuron = build_neuron(name, channels=3, T=4)
    x = torch.randn(4, 2, 3, 5) + 0.8
    first = neuron(x)
    assert torch.equal(neuron(x), first) and first.shape == x.shape and 0 < first.mean() < 1
    assert neuron(x.half()).dtype == torch.float16
    neuron.store_v = True
    assert torch.equal(neuron(x), first) and neuron.v_seq.shape == x.shape


@pytest.mark.parametrize("name", ["glif", "psn", "masked_psn"])
def test_sizes_are_checked(name):
    neuron = build_neuron(name, channels=3, T=4)
    with pytest.raises(ValueError, match="T=4"):
        neuron(torch.randn(3, 2, 3))
    if name == "glif":
        with pytest.raises(ValueError, match="3 channels"):
            neuron(torch.randn(4, 2, 5))


def test_build_neuron_options():
    with pytest.raises(ValueError, match="has no option decay"):
        build_neuron("psn", T=4, decay=0.5)
    with pytest.raises(ValueError, match="no fused kernel"):
        build_neuron("clif", backend="cpu")
    with pytest.raises(ValueError, match="needs the number of channels"):
        build_neuron("glif", T=4)
    with pytest.raises(ValueError, match="needs the number of time steps"):
        build_neuron("psn")
    assert build_neuron("lif_soft", channels=3, T=4).spec.reset == "soft"  # sizes ignored where not taken


SIZES = {"resnet18": 8, "vgg11": 32, "vgg13": 32, "vggsnn": 16}  # the smallest each model takes


def check_runs_in(model, name, backend="auto"):
    """Forward and backward at a tiny shape; every neuron parameter gets a gradient."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, SIZES[model], SIZES[model])
    net = create_model(model, num_classes=3, in_channels=3, image_size=SIZES[model], neuron=name, T=2,
                       neuron_kwargs={"backend": backend})
    net(x, T=2).sum().backward()
    assert all(p.grad is not None for _, layer in neuron_layers(net) for p in layer.parameters()), (model, name)


@pytest.mark.parametrize("model,name", [(model, NEW[i + 4 * j]) for i, model in enumerate(SIZES) for j in (0, 1)])
def test_each_new_neuron_runs_in_a_model(model, name):
    """Every neuron in one model and every model with two neurons, on the readable loop (the full grid with
    `auto`, which compiles the loop of the larger layers, is `-m slow`)."""
    check_runs_in(model, name, backend="reference")


@pytest.mark.slow
@pytest.mark.parametrize("model", list(SIZES))
@pytest.mark.parametrize("name", NEW)
def test_every_new_neuron_runs_in_every_model(model, name):
    check_runs_in(model, name)


def test_registry_lists_the_new_neurons():
    assert set(NEW) <= set(NEURONS)


def test_parameter_log_handles_vectors():
    """Per-layer scalars log as floats, per-channel and per-step values as mean/min/max, in metrics.jsonl's
    nested form and W&B's flat one; Fig. 3's reader gets the mean and the range from both."""
    from arlif.reports.analysis import parameter_history
    from arlif.runner.steps import neuron_parameters
    from arlif.runner.tracking import flatten

    net = create_model("quickcnn", num_classes=3, in_channels=1, image_size=8, neuron="glif", T=4)
    logged = neuron_parameters(net)
    layers = [name for name, _ in neuron_layers(net)]
    assert set(logged) == {"alpha", "beta", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset", "conduct"}
    tau = logged["tau"][layers[0]]
    assert tau == {"mean": pytest.approx(0.25), "min": pytest.approx(0.25), "max": pytest.approx(0.25)}
    gate = logged["alpha"][layers[1]]
    values = torch.sigmoid(neuron_layers(net)[1][1].alpha.detach())
    assert gate == {"mean": pytest.approx(values.mean().item()), "min": pytest.approx(values.min().item()),
                    "max": pytest.approx(values.max().item())}
    assert 0.475 < gate["min"] < gate["mean"] < gate["max"] < 0.525  # σ of U(-0.1, 0.1), 64 channels
    history = parameter_history([{"epoch": 1, **logged}])
    assert history == parameter_history([{"epoch": 1, **flatten(logged)}])
    assert history["alpha"][layers[1]] == [gate["mean"]] and history["range"]["alpha"][layers[1]] == [
        (gate["min"], gate["max"])]
    arlif = neuron_parameters(create_model("quickcnn", num_classes=3, in_channels=1, image_size=8))
    assert set(arlif) == {"alpha", "beta"} and arlif["alpha"][layers[0]] == 1.0  # scalars stay floats
    plif = neuron_parameters(create_model("quickcnn", num_classes=3, in_channels=1, image_size=8, neuron="plif"))
    assert plif["decay"][layers[0]] == pytest.approx(0.5) and plif["alpha"] == {}


# ---------------------------------------------------------------- from the config

WIRING = {  # overrides of conf/neuron/<name>.yaml keys, and what the built layers must show for them
    "tet_lif": (["neuron.decay=0.25", "neuron.surrogate=sigmoid", "neuron.surrogate_slope=3.0"],
                lambda m: (m.spec.decay, m.surrogate.kind, m.surrogate.slope) == (0.25, "sigmoid", 3.0)),
    "clif": (["neuron.tau=3.0", "neuron.fire_at_threshold=false"],
             lambda m: (m.tau, m.surrogate.fire_at_threshold) == (3.0, False)),
    "plif": (["neuron.init_tau=4.0", "neuron.detach_reset=false", "neuron.decay_input=false"],
             lambda m: (round(m.decay.item(), 6), m.detach_reset, m.decay_input) == (0.25, False, False)),
    "glif": (["neuron.channel_wise=false", "neuron.init_tau=0.3", "neuron.surrogate_width=0.5"],
             lambda m: m.tau.shape == () and round(torch.sigmoid(m.tau).item(), 6) == 0.3
             and m.surrogate.width == 0.5 and m.conduct.shape == (3,)),
    "psn": (["neuron.surrogate=triangle"], lambda m: m.weight.shape == (3, 3) and m.surrogate.kind == "triangle"),
    "masked_psn": (["neuron.order=3", "neuron.lambda_init=0.25"],
                   lambda m: (m.order, float(m._lambda_)) == (3, 0.25) and m.mask0.sum() == 6),
    "sliding_psn": (["neuron.order=3", "neuron.exp_init=false"],
                    lambda m: m.order == 3 and m.weight.tolist() != [0.25, 0.5, 1.0]),
    "arlif_psn_code": (["neuron.decay=0.3", "neuron.v_threshold=0.8"],
                       lambda m: (m.decay, m.v_threshold) == (0.3, 0.8)),
}


@pytest.mark.parametrize("name", NEW)
def test_every_config_key_reaches_the_neuron(name):
    from arlif.runner.build import build_model
    from arlif.runner.config import compose, resolve
    from helpers import tiny_run

    overrides, check = WIRING[name]
    model = build_model(resolve(compose([*tiny_run("T=3"), f"neuron={name}", *overrides])))
    layers = [m for _, m in neuron_layers(model)]
    assert layers and all(check(m) for m in layers)


def test_unknown_or_bad_neuron_keys_are_config_errors():
    from arlif.errors import ConfigError
    from arlif.runner.build import build_model
    from arlif.runner.config import compose, resolve, validate
    from helpers import tiny_run

    for overrides, message in ((["neuron=psn", "+neuron.decay=0.5"], "has no option decay"),
                               (["neuron=masked_psn", "neuron.order=9"], "order must lie in"),
                               (["neuron=clif", "neuron.backend=cpu"], "no fused kernel")):
        with pytest.raises(ConfigError, match=message):
            build_model(resolve(compose([*tiny_run("T=3"), *overrides])))
    with pytest.raises(ConfigError, match="neuron.surrogate='box'"):
        validate(resolve(compose([*tiny_run(), "neuron=glif", "neuron.surrogate=box"])))


def test_training_runs_the_masked_psn_schedule(tmp_path):
    """The loop calls on_epoch before each epoch: with lambda_rate 1 over 2 epochs, λ is 0 then 1."""
    from arlif.runner.config import compose, resolve
    from arlif.runner.training import TrainingRun
    from helpers import tiny_run

    cfg = resolve(compose([*tiny_run("trainer.epochs=2"), "neuron=masked_psn", "neuron.lambda_rate=1.0"]))
    run = TrainingRun(cfg, tmp_path, torch.device("cpu"))
    layers = [m for _, m in neuron_layers(run.trainer.model)]
    assert {float(m._lambda_) for m in layers} == {0.0}
    run.fit()
    assert {float(m._lambda_) for m in layers} == {1.0}
