"""Energy counter (Table 3): a hand count on a tiny network, torch's FLOP counter, the paper's constants."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from arlif.instruments.energy import E_AC_PJ, E_MAC_PJ, SynapticOpCounter
from arlif.models import create_model
from arlif.models.layers import DirectEncoder, SeqToANN
from arlif.neurons import NEURONS, build_neuron
from arlif.reports.paper import TABLE3


class Tiny(nn.Module):
    """1x1 conv (1->2) -> LIF -> 3x3 conv (2->3) -> LIF -> avg pool 2 -> linear (12->5), on 4x4 images.

    With an all-ones image: conv1 drives channel 0 with 2 and channel 1 with 0, so LIF 1
    spikes on channel 0 at every step (h = 2 >= 1, hard reset to 0) and never on channel 1:
    rate 1/2.  conv2 (zero weights, bias [2, 0, 0]) makes LIF 2 spike on channel 0 only: rate 1/3.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = DirectEncoder(nn.Conv2d(1, 2, 1, bias=False))
        self.lif1 = build_neuron("lif_hard")
        self.conv2 = SeqToANN(nn.Conv2d(2, 3, 3, padding=1))
        self.lif2 = build_neuron("lif_hard")
        self.pool = SeqToANN(nn.AvgPool2d(2))
        self.fc = nn.Linear(12, 5)
        with torch.no_grad():
            self.conv1.module.weight.copy_(torch.tensor([2.0, 0.0]).view(2, 1, 1, 1))
            self.conv2.module.weight.zero_()
            self.conv2.module.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))

    def forward(self, x, T=None):
        s = self.lif2(self.conv2(self.lif1(self.conv1(x, T))))
        return self.fc(self.pool(s).flatten(2))


def test_tiny_network_against_hand_count():
    model, T = Tiny().eval(), 3
    with torch.no_grad(), SynapticOpCounter(model) as ops:
        for batch in (2, 3):  # totals are per sample over everything seen
            model(torch.ones(batch, 1, 4, 4), T=T)
    report = ops.report()
    # per step: conv1 2·16·1 = 32, conv2 3·16·(2·9) = 864, fc 12·5 = 60 multiply-accumulates
    assert [(lay.name, lay.ops_per_step, lay.steps) for lay in report.layers] == [
        ("conv1.module", 32, 1), ("conv2.module", 864, T), ("fc", 60, T)]
    assert [lay.input_rate for lay in report.layers[1:]] == pytest.approx([1 / 2, 1 / 3])
    assert [lay.spike_input for lay in report.layers] == [False, True, True]
    assert report.macs == 32  # the direct-encoded first conv runs once per sample
    assert report.acs == pytest.approx(1 / 2 * T * 864 + 1 / 3 * T * 60)  # 1296 + 60
    assert report.flops == 2 * (32 + 864 + 60)
    assert report.params == 2 + (3 * 2 * 9 + 3) + (12 * 5 + 5)
    assert report.samples == 5 and report.time_steps == T
    assert report.energy_uj == pytest.approx((4.6 * 32 + 0.9 * 1356) * 1e-6)
    assert report.as_dict()["energy_uJ"] == report.energy_uj


@pytest.mark.parametrize("name,channels,size,temporal", [("resnet18", 3, 16, False), ("resnet19", 3, 8, False),
                                                         ("vggsnn", 2, 16, True)])
def test_executed_operations_match_torch_flop_counter(name, channels, size, temporal):
    """Σ steps·FLOPs over the layers equals what torch's FLOP counter sees executed (2 FLOPs per MAC)."""
    T = 2
    model = create_model(name, num_classes=10, in_channels=channels, image_size=size).eval()
    x = torch.rand(T, 2, channels, size, size) if temporal else torch.rand(2, channels, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as flops, SynapticOpCounter(model) as ops:
        model(x, T=T)
    report = ops.report()
    executed = sum(lay.steps * lay.ops_per_step for lay in report.layers) * report.samples
    assert 2 * executed == flops.get_total_flops()
    first = report.layers[0]
    assert first.steps == (T if temporal else 1)  # event frames run the first layer at every step
    assert report.macs == first.steps * first.ops_per_step == channels * 9 * 64 * size * size * first.steps


@pytest.mark.parametrize("neuron", sorted(NEURONS))
def test_every_neuron_drives_the_later_layers_with_spikes(neuron):
    """Whatever the neuron, every layer after the first gets spikes (or pooled spikes) and costs ACs."""
    torch.manual_seed(0)
    model = create_model("quickcnn", num_classes=4, in_channels=2, image_size=8, neuron=neuron, T=3).eval()
    with torch.no_grad(), SynapticOpCounter(model) as ops:
        model(torch.rand(3, 2, 2, 8, 8) * 4)
    report = ops.report()
    assert [lay.spike_input for lay in report.layers] == [False] + [True] * (len(report.layers) - 1)
    assert report.macs == report.layers[0].steps * report.layers[0].ops_per_step
    assert report.acs == pytest.approx(sum(lay.input_rate * lay.steps * lay.ops_per_step for lay in report.layers[1:]))


def test_a_layer_fed_real_values_costs_macs():
    """GLIF's ResNet-18 head is Linear(512, 256) -> Linear(256, K) with no neuron between: the second Linear
    multiplies real values."""
    T = 2
    torch.manual_seed(0)
    model = create_model("resnet18_glif", num_classes=10, in_channels=3, image_size=8, neuron="glif", T=T)
    with torch.no_grad(), SynapticOpCounter(model) as ops:  # training mode: batch statistics make it spike
        model(torch.randn(4, 3, 8, 8), T=T)
    layers = {lay.name: lay for lay in ops.report().layers}
    assert layers["hidden.0.module"].input_rate > 0
    assert not layers["fc"].spike_input and layers["fc"].macs == T * 256 * 10 and layers["fc"].acs == 0
    assert layers["hidden.0.module"].spike_input and layers["hidden.0.module"].macs == 0
    assert [lay.spike_input for name, lay in layers.items() if name not in ("stem.module", "fc")] == \
        [True] * (len(layers) - 2)
    assert ops.report().macs == layers["stem.module"].macs + layers["fc"].macs


def test_counter_needs_input():
    with SynapticOpCounter(Tiny()) as ops:
        pass
    with pytest.raises(RuntimeError, match="saw no input"):
        ops.report()


def test_published_table3_obeys_the_energy_model():
    """The paper's rows satisfy E[µJ] = 4.6·MACs[M] + 0.9·ACs[M] (e.g. 4.6·1.77 + 0.9·95.65 = 94.22)."""
    for row in TABLE3:
        assert E_MAC_PJ * row.macs_m + E_AC_PJ * row.acs_m == pytest.approx(row.energy_uj, abs=0.05)
