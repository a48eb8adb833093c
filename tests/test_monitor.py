"""The firing-rate monitor against hand-counted spikes of real neuron layers.

Input currents of +10 or -10 make a neuron with threshold 1 and decay 0.5 spike exactly where
the current is +10 (after a spike its membrane stays below 19, so a later -10 keeps it below
threshold).  Layer `a` gets the currents and layer `b` their negation, so the spikes, and the
rates, can be counted by hand from the signs of the data.
"""

import multiprocessing

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from arlif.runner.steps import StepRunner
from arlif.instruments.firing_rates import FiringRateMonitor, mean_rate
from arlif.neurons import ARLIF, LIF
from arlif.runner.runtime import resolve_precision

CPU = torch.device("cpu")
# five static samples of 4 currents with 4, 3, 4, 1 and 0 positive ones: 12 of 20 entries
STATIC = torch.tensor([[1, 1, 1, 1], [1, 1, 1, -1], [1, 1, 1, 1], [-1, 1, -1, -1], [-1, -1, -1, -1]]) * 10.0
# three temporal samples [T=2, 3 currents]: 1 + 3 + 2 = 6 positive at t=0, 0 + 2 + 1 = 3 at t=1: 9 of 18
TEMPORAL = torch.tensor([[[1, -1, -1], [-1, -1, -1]],
                         [[1, 1, 1], [1, -1, 1]],
                         [[-1, 1, 1], [-1, -1, 1]]]) * 10.0


class TwoLayers(nn.Module):
    """Currents straight into two real neuron layers; the logits [T, B, 2] are each layer's spike counts."""

    def __init__(self):
        super().__init__()
        self.a = ARLIF()
        self.b = LIF("soft")

    def forward(self, x, T=None):
        if T is not None:  # a static sample: the same current at every step, as the models repeat images
            x = x.unsqueeze(0).expand(T, *x.shape)
        a, b = self.a(x), self.b(-x)
        assert torch.equal(a, (x > 0).float()) and torch.equal(b, (x < 0).float())  # the hand count holds
        return torch.stack([a.sum(-1), b.sum(-1)], dim=-1)


def evaluate(data, temporal, batch_size, T=3):
    """StepRunner.evaluate (the loop every run uses) over `data` in batches of `batch_size`, the last one smaller."""
    loader = DataLoader(TensorDataset(data, torch.zeros(len(data), dtype=torch.long)), batch_size=batch_size)
    trainer = StepRunner(TwoLayers(), lambda logits, y: logits.sum() * 0, None, CPU, resolve_precision("fp32", CPU), T,
                      temporal, progress_bar=False)
    return trainer.evaluate(loader)


def test_rates_are_counted_over_every_step_and_sample_of_unequal_batches():
    # batches of 2, 2 and 1 samples: the mean of the batches' rates (7/8, 5/8, 0) would be 0.5, not 12/20
    static = evaluate(STATIC, temporal=False, batch_size=2)
    assert static["firing_rates"] == {"a": 12 / 20, "b": 8 / 20} and static["firing_rate"] == 0.5
    assert static["samples"] == 5
    temporal = evaluate(TEMPORAL, temporal=True, batch_size=2)  # [B, T, ...] batches, moved to [T, B, ...]
    assert temporal["firing_rates"] == {"a": 9 / 18, "b": 9 / 18} and temporal["firing_rate"] == 0.5
    one_sided = evaluate(TEMPORAL[1:2], temporal=True, batch_size=1)
    assert one_sided["firing_rates"] == {"a": 5 / 6, "b": 1 / 6}


def test_monitor_counts_each_call_and_only_while_attached():
    model = TwoLayers()
    model.b(-torch.full((2, 3), 10.0))  # before the monitor: not counted
    with FiringRateMonitor(model) as monitor:
        assert monitor.rates() == {} and monitor.mean_rate() == 0.0
        model.a(torch.full((4, 2), 10.0))             # 8 spikes of 8
        model.a(torch.full((2, 6), -10.0))            # 0 of 12
        model.b(-STATIC[:2].T)                        # [T=4, 2]: spikes where STATIC < 0, 1 of 8
    model.a(torch.full((4, 2), 10.0))  # after: not counted
    rates = monitor.rates()
    assert rates == {"a": 8 / 20, "b": 1 / 8}
    assert monitor.mean_rate() == mean_rate(rates) == (8 / 20 + 1 / 8) / 2
    assert all(0.0 <= r <= 1.0 for r in rates.values())
    monitor.reset()
    assert monitor.rates() == {}


def test_sums_are_buffers_outside_the_state_dict():
    """The sums live on the neuron layers as buffers (module state a compiled graph updates in place, which
    CUDA graphs replay), zeroed in place by `reset`, and never in the state dict (checkpoints unchanged)."""
    model = TwoLayers()
    keys = set(model.state_dict())
    monitor = FiringRateMonitor(model)
    buffers = dict(model.named_buffers())
    assert {"a.firing_spike_sum", "a.firing_element_count", "b.firing_spike_sum"} <= set(buffers)
    assert set(model.state_dict()) == keys
    with monitor:
        model.a(torch.full((4, 2), 10.0))
    assert float(buffers["a.firing_spike_sum"]) == 8 and int(buffers["a.firing_element_count"]) == 8
    monitor.reset()
    assert dict(model.named_buffers())["a.firing_spike_sum"] is buffers["a.firing_spike_sum"]
    assert float(buffers["a.firing_spike_sum"]) == 0


def test_sums_have_one_element_in_one_dim():
    """Not 0-d: torch 2.11's Dynamo (the GPU machines' torch) drops an in-place add to a 0-d fp64 CPU buffer
    from the graph it traces, so a compiled evaluation there reported every layer's firing rate as 0."""
    model = TwoLayers()
    FiringRateMonitor(model)
    sums = {name: b for name, b in model.named_buffers() if name.split(".")[-1].startswith("firing_")}
    assert len(sums) == 4 and all(b.shape == (1,) for b in sums.values()), {n: b.shape for n, b in sums.items()}


def _evaluate_rank(rank, init_file, results):
    """One of two Gloo processes: evaluate this rank's share of STATIC (3 and 2 samples) and report."""
    torch.set_num_threads(1)  # first, as in a forked DataLoader worker
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        out = evaluate(STATIC[:3] if rank == 0 else STATIC[3:], temporal=False, batch_size=2)
        results.put((rank, out["firing_rates"], out["firing_rate"], out["samples"]))
    finally:
        dist.destroy_process_group()


def test_two_processes_combine_rates_weighted_by_samples(tmp_path):
    """StepRunner._combine over a real process group: rank 0 sees 11/12 and rank 1 1/8 of layer a spiking;
    together 12/20 (the unweighted mean of the two ranks would be 0.52).  Forked: no second import."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    procs = [context.Process(target=_evaluate_rank, args=(r, tmp_path / "store", results)) for r in range(2)]
    for p in procs:
        p.start()
    out = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert out == [(r, {"a": pytest.approx(12 / 20, abs=1e-15), "b": pytest.approx(8 / 20, abs=1e-15)},
                    pytest.approx(0.5, abs=1e-15), 5) for r in range(2)]
