"""Multi-step architectures: parameter counts, shapes, direct encoding, BN modes, dropout."""

import pytest
import timm
import torch
from torch import nn

from arlif.models import MODELS, create_model
from arlif.models.layers import SeqBatchNorm2d, SeqDropout
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


@pytest.mark.parametrize("name,size", [("resnet18", 16), ("vgg11", 32), ("vgg13", 32), ("vggsnn", 16), ("quickcnn", 8)])
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


def test_bad_names_and_values():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet50", num_classes=10, in_channels=3, image_size=32)
    with pytest.raises(ValueError, match="unknown neuron"):
        create_model("vgg11", num_classes=10, in_channels=3, image_size=32, neuron="izhikevich")
    with pytest.raises(ValueError, match="bn_mode"):
        create_model("vgg11", num_classes=10, in_channels=3, image_size=32, bn_mode="tebn")
    with pytest.raises(ValueError, match="too small"):
        create_model("vggsnn", num_classes=10, in_channels=3, image_size=8)


def test_timm_registry():
    model = timm.create_model("arlif_vggsnn", num_classes=7, in_chans=2, img_size=32, neuron="lif_soft")
    assert model(torch.rand(2, 1, 2, 32, 32)).shape == (2, 1, 7)
    assert "arlif_resnet18" in timm.list_models("arlif_*")
