"""Multi-step architectures: parameter counts, shapes, direct encoding, BN modes, dropout."""

import math

import pytest
import timm
import torch
from torch import nn

from arlif.models import MODELS, create_model
from arlif.models.layers import SeqBatchNorm2d, SeqDropout
from arlif.models.resnet_postact import RESIDUAL_ALPHA
from arlif.neurons import NEURONS, build_neuron, neuron_layers


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,classes,channels,size,expected", [
    ("resnet18", 10, 3, 32, 11.18e6), ("resnet18", 100, 3, 32, 11.22e6),
    ("vgg13", 200, 3, 64, 14.43e6), ("vggsnn", 200, 3, 64, 10.86e6),
    ("vggsnn", 10, 2, 48, 9.27e6), ("vgg11", 11, 2, 128, 9.50e6)])
def test_parameter_counts_match_published(name, classes, channels, size, expected):
    model = create_model(name, num_classes=classes, in_channels=channels, image_size=size)
    assert n_params(model) == pytest.approx(expected, rel=0.01)


def test_resnet19_has_tets_parameter_count():
    """TET's resnet19 (models/resnet_models.py) has 12,630,858 parameters for 10 classes and 12,653,988 for 100."""
    for classes, published in ((10, 12_630_858), (100, 12_653_988)):
        model = create_model("resnet19", num_classes=classes, in_channels=3, image_size=32, neuron="lif_hard")
        assert n_params(model) == published


@pytest.mark.parametrize("name,size", [("resnet18", 16), ("resnet19", 8), ("resnet18_glif", 8), ("vgg11", 32),
                                       ("vgg13", 32), ("vggsnn", 16), ("quickcnn", 8)])
def test_forward_backward_each_architecture(name, size):
    model = create_model(name, num_classes=5, in_channels=2, image_size=size, neuron_kwargs={"backend": "reference"})
    x = torch.rand(3, 2, 2, size, size)
    out = model(x)
    assert out.shape == (3, 2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters()), "every parameter must get a gradient"
    assert len(neuron_layers(model)) > 0


@pytest.mark.parametrize("neuron", sorted(NEURONS))
@pytest.mark.parametrize("name", MODELS)
def test_every_architecture_builds_with_every_neuron(name, neuron):
    model = create_model(name, num_classes=10, in_channels=3, image_size=32, neuron=neuron, T=4)
    kinds = {type(m) for _, m in neuron_layers(model)}
    assert kinds == {type(build_neuron(neuron, channels=3, T=4))}


@pytest.mark.parametrize("name", ["resnet18", "vggsnn"])
def test_direct_encoding_equals_repeated_input(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, in_channels=3, image_size=16, neuron_kwargs={"backend": "reference"})
    x = torch.randn(2, 3, 16, 16)
    for mode in (model.train(), model.eval()):
        torch.manual_seed(1)
        static = model(x, T=3)
        torch.manual_seed(1)
        repeated = model(x.unsqueeze(0).repeat(3, 1, 1, 1, 1))
        torch.testing.assert_close(static, repeated)


def test_static_input_needs_T():
    model = create_model("quickcnn", num_classes=3, in_channels=1, image_size=8)
    with pytest.raises(ValueError, match="T"):
        model(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="time steps"):
        model(torch.randn(4, 2, 1, 8, 8), T=3)


def test_per_step_bn_equals_single_step_bn_called_T_times():
    torch.manual_seed(0)
    seq = SeqBatchNorm2d(3, "per_step")
    ref = nn.BatchNorm2d(3)
    x = torch.randn(4, 5, 3, 2, 2) * 3 + 1
    out = seq(x)
    expected = torch.stack([ref(xt) for xt in x])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(seq.running_mean, ref.running_mean)
    torch.testing.assert_close(seq.running_var, ref.running_var)
    assert seq.num_batches_tracked.item() == 4
    seq.eval(), ref.eval()
    torch.testing.assert_close(seq(x), torch.stack([ref(xt) for xt in x]))


def test_shared_bn_normalises_over_all_steps():
    seq = SeqBatchNorm2d(3, "shared")
    ref = nn.BatchNorm2d(3)
    x = torch.randn(4, 5, 3, 2, 2)
    torch.testing.assert_close(seq(x), ref(x.flatten(0, 1)).unflatten(0, (4, 5)))
    assert seq.num_batches_tracked.item() == 1


def test_bn_modes_differ_in_training():
    x = torch.randn(4, 8, 3, 2, 2) + torch.arange(4.0).view(4, 1, 1, 1, 1)
    assert not torch.allclose(SeqBatchNorm2d(3, "per_step")(x), SeqBatchNorm2d(3, "shared")(x))


def test_sequence_dropout_shares_mask_over_time():
    torch.manual_seed(0)
    drop = SeqDropout(0.5)
    y = drop(torch.ones(6, 4, 50))
    assert torch.equal(y[0], y[5]) and torch.equal(y[2], y[3])
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(torch.ones(2, 3)), torch.ones(2, 3))


# One channel whose 8 values have mean 2 and biased variance 1, one with mean 2 and variance 4:
# [T=2, B=2, C=2, H=1, W=2].
HAND = torch.tensor([[[[[1.0, 3.0]], [[0.0, 4.0]]], [[[3.0, 1.0]], [[4.0, 0.0]]]],
                     [[[[1.0, 1.0]], [[0.0, 0.0]]], [[[3.0, 3.0]], [[4.0, 4.0]]]]])
EPS = 1e-5


def hand_bn(mode, **kwargs):
    bn = SeqBatchNorm2d(2, mode, eps=EPS, **kwargs)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5]))
        bn.bias.copy_(torch.tensor([0.25, 1.0]))
    return bn


def by_channel(a, b):
    """[C] values broadcast over [T, B, C, H, W]."""
    return torch.tensor([a, b]).view(1, 1, 2, 1, 1)


def test_hand_tensor_has_the_statistics_the_tests_use():
    assert torch.equal(HAND.mean((0, 1, 3, 4)), torch.tensor([2.0, 2.0]))
    assert torch.equal(HAND.var((0, 1, 3, 4), unbiased=False), torch.tensor([1.0, 4.0]))


def test_tdbn_equals_hand_computed_normalisation():
    """y = γ·α·V_th·(x − μ)/√(σ² + ε) + β over all T·B samples; running statistics as torch's BN (unbiased
    variance, momentum 0.1); eval uses them."""
    gain = RESIDUAL_ALPHA * 0.5
    bn = hand_bn("tdbn", alpha=RESIDUAL_ALPHA, v_threshold=0.5)
    y = bn(HAND)
    x_hat = (HAND - 2.0) / torch.sqrt(by_channel(1.0, 4.0) + EPS)
    torch.testing.assert_close(y, by_channel(1.5, -0.5) * gain * x_hat + by_channel(0.25, 1.0))
    torch.testing.assert_close(bn.running_mean, torch.tensor([0.2, 0.2]))
    torch.testing.assert_close(bn.running_var, torch.tensor([0.9 + 0.1 * 8 / 7, 0.9 + 0.1 * 4 * 8 / 7]))
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    x = torch.full((3, 1, 2, 1, 1), 1.0)
    expected = by_channel(1.5, -0.5) * gain * (1.0 - 0.2) / torch.sqrt(bn.running_var.view(1, 1, 2, 1, 1) + EPS)
    torch.testing.assert_close(bn(x), (expected + by_channel(0.25, 1.0)).expand(3, 1, 2, 1, 1))


def test_tebn_equals_hand_computed_normalisation():
    """y_t = p_t·(γ·(x − μ)/√(σ² + ε) + β), statistics over all T·B samples, one scale p_t per time step."""
    bn = hand_bn("tebn", T=2)
    with torch.no_grad():
        bn.scale.copy_(torch.tensor([0.5, 2.0]))
    y = bn(HAND)
    x_hat = (HAND - 2.0) / torch.sqrt(by_channel(1.0, 4.0) + EPS)
    affine = by_channel(1.5, -0.5) * x_hat + by_channel(0.25, 1.0)
    torch.testing.assert_close(y, affine * torch.tensor([0.5, 2.0]).view(2, 1, 1, 1, 1))
    torch.testing.assert_close(bn.running_mean, torch.tensor([0.2, 0.2]))
    torch.testing.assert_close(bn.running_var, torch.tensor([0.9 + 0.1 * 8 / 7, 0.9 + 0.1 * 4 * 8 / 7]))
    bn.eval()
    x = torch.full((2, 1, 2, 1, 1), 1.0)
    normalised = by_channel(1.5, -0.5) * 0.8 / torch.sqrt(bn.running_var.view(1, 1, 2, 1, 1) + EPS) + \
        by_channel(0.25, 1.0)
    torch.testing.assert_close(bn(x), normalised * torch.tensor([0.5, 2.0]).view(2, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="T=2"):
        bn(torch.zeros(3, 1, 2, 1, 1))


def test_tebn_equals_spikingjelly():
    """Same outputs, running statistics and gradients (input, γ, β, scale) as SpikingJelly 2.0's
    TemporalEffectiveBatchNorm2d, whose state dict loads one-to-one."""
    layer = pytest.importorskip("spikingjelly.activation_based.layer")
    torch.manual_seed(0)
    T, C = 3, 4
    theirs = layer.TemporalEffectiveBatchNorm2d(T, C)  # multi-step only
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p))
    ours = SeqBatchNorm2d(C, "tebn", T=T)
    ours.load_state_dict(theirs.state_dict())
    for step in range(2):  # two training calls: the running statistics move twice
        x = (torch.randn(T, 5, C, 3, 3) * 2 + 1).requires_grad_()
        x_theirs = x.detach().clone().requires_grad_()
        y, y_theirs = ours(x), theirs(x_theirs)
        torch.testing.assert_close(y, y_theirs)
        g = torch.randn_like(y)
        (y * g).sum().backward()
        (y_theirs * g).sum().backward()
        torch.testing.assert_close(x.grad, x_theirs.grad)
    for name, p in theirs.named_parameters():
        torch.testing.assert_close(dict(ours.named_parameters())[name].grad, p.grad)
    for name, buffer in theirs.named_buffers():
        torch.testing.assert_close(dict(ours.named_buffers())[name], buffer)
    ours.eval(), theirs.eval()
    x = torch.randn(T, 2, C, 3, 3)
    torch.testing.assert_close(ours(x), theirs(x))


def test_tdbn_scales_the_residual_branches_of_a_postact_block_by_one_over_root_two():
    model = create_model("resnet19", num_classes=10, in_channels=3, image_size=32, bn_mode="tdbn",
                         tdbn_threshold=0.5)
    block = model.blocks[0]
    assert (block.bn1.alpha, block.bn2.alpha, block.shortcut[1].alpha) == (1.0, RESIDUAL_ALPHA, RESIDUAL_ALPHA)
    assert {m.v_threshold for m in model.modules() if isinstance(m, SeqBatchNorm2d)} == {0.5}
    glif = create_model("resnet18_glif", num_classes=10, in_channels=3, image_size=32, bn_mode="tdbn")
    assert glif.blocks[0].shortcut.alpha == RESIDUAL_ALPHA and math.isclose(RESIDUAL_ALPHA ** 2, 0.5)


def test_step_dropout_draws_a_mask_per_step_and_the_classifier_dropout_is_wired():
    torch.manual_seed(0)
    drop = SeqDropout(0.5, "step")
    y = drop(torch.ones(6, 4, 50))
    assert not torch.equal(y[0], y[1]) and set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(torch.ones(2, 3)), torch.ones(2, 3))
    model = create_model("vggsnn", num_classes=10, in_channels=2, image_size=48, classifier_dropout=0.25,
                         dropout_mask="step")
    drops = [m for m in model.modules() if isinstance(m, SeqDropout)]
    assert (model.dropout.p, model.dropout.mask) == (0.25, "step")
    assert [m.p for m in drops if m is not model.dropout] == [0.0] * 8
    resnet = create_model("resnet18", num_classes=10, in_channels=3, image_size=32, dropout=0.3)
    assert resnet.dropout.p == 0.3 and resnet.dropout.mask == "sequence"  # published: the head drops out as the blocks


def test_bad_names_and_values():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet50", num_classes=10, in_channels=3, image_size=32)
    with pytest.raises(ValueError, match="unknown neuron"):
        create_model("vgg11", num_classes=10, in_channels=3, image_size=32, neuron="izhikevich")
    with pytest.raises(ValueError, match="bn_mode"):
        create_model("vgg11", num_classes=10, in_channels=3, image_size=32, bn_mode="global")
    with pytest.raises(ValueError, match="needs the number of time steps"):
        create_model("vgg11", num_classes=10, in_channels=3, image_size=32, bn_mode="tebn")
    with pytest.raises(ValueError, match="dropout_mask"):
        create_model("vgg11", num_classes=10, in_channels=3, image_size=32, dropout_mask="sample")
    with pytest.raises(ValueError, match="too small"):
        create_model("vggsnn", num_classes=10, in_channels=3, image_size=8)


def test_timm_registry():
    model = timm.create_model("arlif_vggsnn", num_classes=7, in_chans=2, img_size=32, neuron="lif_soft")
    assert model(torch.rand(2, 1, 2, 32, 32)).shape == (2, 1, 7)
    assert {"arlif_resnet18", "arlif_resnet19", "arlif_resnet18_glif"} <= set(timm.list_models("arlif_*"))
    tebn = timm.create_model("arlif_resnet19", num_classes=10, neuron="lif_hard", bn_mode="tebn", T=2)
    assert n_params(tebn) == 12_630_858 + 2 * 20  # two scales in each of the 20 batch norms
