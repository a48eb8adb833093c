"""TET + MSE loss against a computation by hand (plain Python math, no torch losses)."""

import math

import pytest
import torch

from arlif.runner.build import build_loss
from arlif.runner.config import compose
from arlif.errors import ConfigError
from arlif.loss import TETMSELoss

# logits O[t][b][k] for T = 2 steps, B = 2 samples, K = 3 classes
O = [[[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]],
     [[2.0, 0.1, -0.3], [-0.2, 0.4, 0.9]]]
LABELS = [0, 2]
SOFT = [[0.7, 0.0, 0.3], [0.0, 0.4, 0.6]]  # e.g. mixup of classes (0, 2) and (2, 1)


def cross_entropy(row, probs, smoothing=0.0):
    lse = math.log(sum(math.exp(v) for v in row))
    k = len(row)
    probs = [(1 - smoothing) * p + smoothing / k for p in probs]
    return -sum(p * (v - lse) for p, v in zip(probs, row))


def onehot(label, k=3):
    return [1.0 if i == label else 0.0 for i in range(k)]


def tet_by_hand(targets, smoothing=0.0):
    steps = [sum(cross_entropy(O[t][b], targets[b], smoothing) for b in range(2)) / 2 for t in range(2)]
    return sum(steps) / 2


def mse_by_hand(target_of):  # target_of(b, k) -> Y
    errs = [(O[t][b][k] - target_of(b, k)) ** 2 for t in range(2) for b in range(2) for k in range(3)]
    return sum(errs) / len(errs)


def loss(target, **kw):
    return TETMSELoss(**kw)(torch.tensor(O), target).item()


def test_constant_target_with_labels():
    expected = 0.95 * tet_by_hand([onehot(y) for y in LABELS]) + 0.05 * mse_by_hand(lambda b, k: 1.0)
    assert loss(torch.tensor(LABELS), tet_weight=0.95, mse_weight=0.05) == pytest.approx(expected, rel=1e-6)


def test_onehot_target_with_labels():
    expected = 0.8 * tet_by_hand([onehot(y) for y in LABELS]) + 0.2 * mse_by_hand(lambda b, k: onehot(LABELS[b])[k])
    got = loss(torch.tensor(LABELS), tet_weight=0.8, mse_weight=0.2, mse_target="onehot")
    assert got == pytest.approx(expected, rel=1e-6)


def test_soft_targets_both_mse_targets():
    soft = torch.tensor(SOFT)
    expected_const = 0.7 * tet_by_hand(SOFT) + 0.3 * mse_by_hand(lambda b, k: 0.5)
    assert loss(soft, tet_weight=0.7, mse_weight=0.3, phi=0.5) == pytest.approx(expected_const, rel=1e-6)
    expected_onehot = 0.7 * tet_by_hand(SOFT) + 0.3 * mse_by_hand(lambda b, k: SOFT[b][k])
    got = loss(soft, tet_weight=0.7, mse_weight=0.3, mse_target="onehot")
    assert got == pytest.approx(expected_onehot, rel=1e-6)


def test_label_smoothing():
    expected = tet_by_hand([onehot(y) for y in LABELS], smoothing=0.1)
    got = loss(torch.tensor(LABELS), tet_weight=1.0, mse_weight=0.0, label_smoothing=0.1)
    assert got == pytest.approx(expected, rel=1e-6)


def test_half_precision_logits_give_fp32_loss():
    out = TETMSELoss()(torch.tensor(O, dtype=torch.bfloat16), torch.tensor(LABELS))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("override, key", [
    ("loss.mse_target=zero", "loss.mse_target"),
    ("loss.tet_weight=-1", "loss.tet_weight"),
    ("loss.label_smoothing=1.0", "loss.label_smoothing"),
])
def test_bad_loss_values(override, key):
    with pytest.raises(ConfigError, match=key):
        build_loss(compose([override]))
