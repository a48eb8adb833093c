"""The training step's fast paths (issue 27) give today's numbers: per-step batch norm as one call, the
fused optimizer (also after resuming a checkpoint written without it), channels_last, and the step
benchmark that measures them."""

import copy
import sys

import pytest
import torch

from arlif.models.layers import SeqBatchNorm2d
from arlif.neurons.family import FamilyNeuron
from arlif.runner.build import build_loss, build_model, memory_format
from arlif.runner.config import compose
from arlif.runner.steps import StepRunner
from arlif.runner.optim import build_optimizer
from arlif.runner.runtime import resolve_precision
from helpers import tiny_run

CPU = torch.device("cpu")


def bn_pair(**kwargs):
    """A per-step SeqBatchNorm2d with non-trivial affine values and running statistics, and its looped twin."""
    torch.manual_seed(0)
    batched = SeqBatchNorm2d(6, **kwargs)
    with torch.no_grad():
        batched.weight.uniform_(0.5, 1.5)
        batched.bias.uniform_(-1, 1)
        if batched.track_running_stats:
            batched.running_mean.uniform_(-1, 1)
            batched.running_var.uniform_(0.5, 2)
    looped = copy.deepcopy(batched)
    looped.batched = False
    return batched, looped


@pytest.mark.parametrize("momentum", [0.1, 0.7])
def test_batched_per_step_batch_norm_equals_the_loop(momentum):
    """One call over T·C channels: the loop's outputs (to the bit), gradients and running statistics (to fp32
    rounding) over three training calls, then the same eval output; the same state dict keys."""
    batched, looped = bn_pair(momentum=momentum)
    assert batched.batched and not looped.batched
    for step in range(3):
        x = torch.randn(4, 3, 6, 5, 5) * 2 + step
        xb, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
        yb, yl = batched(xb), looped(xl)
        assert torch.equal(yb, yl)
        grad = torch.randn_like(yb)
        yb.backward(grad)
        yl.backward(grad)
        torch.testing.assert_close(xb.grad, xl.grad, rtol=1e-5, atol=1e-6)
        for name in ("weight", "bias"):
            torch.testing.assert_close(getattr(batched, name).grad, getattr(looped, name).grad, rtol=1e-5, atol=1e-5)
    for (name, b), (_, l) in zip(batched.state_dict().items(), looped.state_dict().items()):
        torch.testing.assert_close(b, l, rtol=1e-6, atol=1e-6, msg=name)
    assert batched.state_dict().keys() == looped.state_dict().keys()
    assert int(batched.num_batches_tracked) == 12
    batched.eval(), looped.eval()
    x = torch.randn(4, 3, 6, 5, 5)
    torch.testing.assert_close(batched(x), looped(x))


def test_batched_per_step_batch_norm_of_channels_last_steps_equals_the_loop(monkeypatch):
    """Steps laid out channels_last [T, B, C, H, W] take one batch-norm call too: the loop's outputs, gradients
    for the input, weight and bias and running statistics after two training calls (to fp32 rounding), the
    output and the input's gradient channels_last per step as the input, the same state dict."""
    import arlif.models.layers as layers

    batched, looped = bn_pair(momentum=0.1)
    calls = []
    real = layers.F.batch_norm
    monkeypatch.setattr(layers.F, "batch_norm", lambda x, *a, **k: calls.append(x.shape) or real(x, *a, **k))
    T, B, C, H, W = 4, 3, 6, 5, 7
    for step in range(2):
        x = (torch.randn(T * B, C, H, W) * 2 + step).contiguous(memory_format=torch.channels_last).unflatten(0, (T, B))
        assert x[0].is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        xb, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
        arriving = []  # the strides of the gradient the layer hands its input's producer (a leaf's .grad is
        inb = xb.clone()  # made to match the leaf's layout by autograd whatever arrives)
        inb.register_hook(lambda g: arriving.append(g.stride()))
        calls.clear()
        yb = batched(inb)
        assert calls == [(B, T * C, H, W)], "not one batched call"
        yl = looped(xl)
        assert yb.stride() == x.stride() == yl.stride(), "the output is not channels_last per step"
        torch.testing.assert_close(yb, yl, rtol=1e-5, atol=1e-6)
        grad = torch.randn_like(yb)
        yb.backward(grad)
        yl.backward(grad)
        assert arriving == [x.stride()], "the input's gradient is not in the input's layout"
        torch.testing.assert_close(xb.grad, xl.grad, rtol=1e-5, atol=1e-6)
        for name in ("weight", "bias"):
            torch.testing.assert_close(getattr(batched, name).grad, getattr(looped, name).grad, rtol=1e-5, atol=1e-5)
    assert batched.state_dict().keys() == looped.state_dict().keys()
    for (name, b), (_, l) in zip(batched.state_dict().items(), looped.state_dict().items()):
        torch.testing.assert_close(b, l, rtol=1e-6, atol=1e-6, msg=name)
    assert int(batched.num_batches_tracked) == 8


def test_batched_batch_norm_without_running_statistics():
    batched, looped = bn_pair(track_running_stats=False)
    x = torch.randn(2, 3, 6, 4, 4)
    assert torch.equal(batched(x), looped(x))


def small_trainer(*overrides, fused=False):
    """A StepRunner over the tiny quickcnn run's model, loss and optimizer, as a TrainingRun builds them."""
    cfg = compose(tiny_run("optimizer=sgd", f"optimizer.fused={str(fused).lower()}", *overrides))
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg)
    model.to(CPU, memory_format=memory_format(cfg))
    return StepRunner(model, build_loss(cfg), optimizer, CPU, resolve_precision("fp32", CPU), cfg.T, False,
                      progress_bar=False), cfg


def batches(cfg, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    d = cfg.dataset
    return [(torch.randn(cfg.batch_size, d.in_channels, d.image_size, d.image_size, generator=gen),
             torch.randint(0, d.num_classes, (cfg.batch_size,), generator=gen)) for _ in range(n)]


def test_resume_of_an_old_checkpoint_keeps_the_fused_optimizer():
    """A checkpoint written before `optimizer.fused` existed (param groups without the key, as torch wrote
    them then, or with fused=None) loads into a fused optimizer that stays fused and steps as the unfused
    one would have."""
    old, cfg = small_trainer()
    old.train_epoch(batches(cfg, 2))
    state = copy.deepcopy(old.state_dict())
    for group in state["optimizer"]["param_groups"]:
        group.pop("fused", None)
    new, _ = small_trainer(fused=True)
    new.load_state_dict(state)
    assert [g["fused"] for g in new.optimizer.param_groups] == [True] * len(new.optimizer.param_groups)
    batch = batches(cfg, 1, seed=1)
    old.train_epoch(batch)
    new.train_epoch(batch)
    for (name, a), b in zip(old.model.state_dict().items(), new.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_channels_last_trains_as_contiguous():
    """trainer.channels_last: the model's weights channels_last, the neurons' outputs too, and two training
    steps give the contiguous model's parameters to rounding."""
    plain, cfg = small_trainer()
    cl, _ = small_trainer("trainer.channels_last=true")
    convs = [m for m in cl.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o)) for m in cl.model.modules()
             if isinstance(m, FamilyNeuron)]
    data = batches(cfg, 2)
    plain.train_epoch(data)
    cl.train_epoch(data)
    for h in hooks:
        h.remove()
    assert any(o.dim() == 5 and o[0].is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous()
               for o in seen)
    for (name, a), b in zip(plain.model.state_dict().items(), cl.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_union_of_intervals():
    from arlif.runner.profiling import _union_us

    assert _union_us([(20, 30), (0, 10), (5, 15), (6, 7)]) == 25


def test_step_breakdown_of_real_steps():
    """The profile of two real training steps: busy within wall time, conv, BN and neuron ops all seen, and
    the host reads the loop makes at the end of a pass (its loss and accuracy sums) counted as syncs."""
    from arlif.runner.profiling import FAMILIES, format_breakdown, step_breakdown

    trainer, cfg = small_trainer("neuron.backend=cpu")
    trainer.train_epoch(batches(cfg, 1))
    report = step_breakdown(lambda: trainer.train_epoch(batches(cfg, 2)), 2, CPU)
    assert 0 < report["busy_ms"] <= report["wall_ms"] and 0 <= report["idle_pct"] < 100
    assert report["kernels"] > 10 and report["family_ms"].keys() == set(FAMILIES)
    assert all(report["family_ms"][f] > 0 for f in ("convolution", "batch norm", "neuron", "optimizer"))
    assert 1 <= report["host_syncs"] < 10
    assert "host syncs per step" in format_breakdown(report)


def test_bench_step_runs_today_and_the_new_step(capsys, monkeypatch):
    """scripts/bench_step.py on the tiny run's shapes: both variants timed, and profiled."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_step.py"
    spec = importlib.util.spec_from_file_location("bench_step", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_step", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    overrides = [o for o in tiny_run() if not o.startswith(("model=", "T=", "batch_size="))]
    assert bench.main(["--experiment", "", "--model", "quickcnn", "--T", "2", "--batch", "4",
                       "--device", "cpu", "--fused-optimizer", "--baseline", "--steps", "1", "--repeats", "1",
                       "--warmup", "1", "--profile", "1", "--override", *overrides]) == 0
    printed = capsys.readouterr()
    out = printed.out
    assert printed.err.count("ready: ") == 2  # each variant's progress, before the table
    compose([f"experiment={bench.parse_args([]).experiment}"])  # the default preset exists (it composes)
    assert "| before issue 27: foreach optimizer, looped BN, custom-op neurons" in out
    assert "| chosen: fused optimizer, batched BN, lean neurons" in out
    assert out.count("busy ms/step") == 2
