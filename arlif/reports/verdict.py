"""A seed-aware verdict on two sets of runs: the difference of their means with Welch's t interval.

For accuracies a (AR-LIF's seeds) and b (another neuron's seeds under the same recipe):

- difference d = mean(a) − mean(b);
- with at least two runs on each side: standard error se = √(s_a²/n_a + s_b²/n_b) (s the sample standard
  deviation), Welch–Satterthwaite degrees of freedom df = se⁴ / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1)),
  and the interval d ± t(0.975, df)·se (95 %);
- verdict "ahead" when the whole interval is above 0 (a's mean is higher), "behind" when it is below 0,
  "not distinguishable" when it contains 0;
- with fewer than two runs on a side there is no interval: the difference is a single difference, and
  the verdict says so;
- seeds to resolve: the smallest number of seeds n per side (at least 2) whose interval, at the spreads
  observed (s_a, s_b) and the same difference, would exclude 0; none when d = 0 or there is no spread
  estimate.  Both spreads 0 and d ≠ 0: the interval is the point d (df undefined), resolved at 2 seeds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

from scipy.stats import t as student_t

LEVEL = 0.95
AHEAD, BEHIND, UNRESOLVED = "ahead", "behind", "not distinguishable"
SINGLE = "single difference, no interval (fewer than 2 seeds on a side)"
MOST_SEEDS = 10_000  # seeds to resolve: searched up to here


@dataclass(frozen=True)
class Verdict:
    """The comparison of a with b (see the module docstring); None where it is not defined."""

    diff: Optional[float]
    low: Optional[float]
    high: Optional[float]
    df: Optional[float]
    verdict: str
    seeds_to_resolve: Optional[int]


def compare(a: Sequence[float], b: Sequence[float]) -> Verdict:
    """a against b: the difference of the means, its 95 % Welch interval and the verdict."""
    if not a or not b:
        return Verdict(None, None, None, None, "no runs on a side", None)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Verdict(diff, None, None, None, SINGLE, None)
    var_a, var_b = statistics.variance(a), statistics.variance(b)
    low, high, df = interval(diff, var_a, len(a), var_b, len(b))
    verdict = AHEAD if low > 0 else BEHIND if high < 0 else UNRESOLVED
    return Verdict(diff, low, high, df, verdict, seeds_to_resolve(diff, var_a, var_b))


def interval(diff: float, var_a: float, n_a: int, var_b: float, n_b: int) -> tuple[float, float, Optional[float]]:
    """(low, high, df) of the 95 % Welch interval of `diff`; df None when both variances are 0."""
    va, vb = var_a / n_a, var_b / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, None
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    half = float(student_t.ppf(0.5 + LEVEL / 2, df)) * se
    return diff - half, diff + half, df


def seeds_to_resolve(diff: float, var_a: float, var_b: float) -> Optional[int]:
    """The fewest seeds per side whose interval excludes 0 at these variances and this difference (the interval
    narrows as n grows, so a doubling then a bisection finds it)."""

    def resolved(n: int) -> bool:
        low, high, _ = interval(diff, var_a, n, var_b, n)
        return low > 0 or high < 0

    if diff == 0:
        return None
    fewest, most = 2, 2
    while not resolved(most):
        if most >= MOST_SEEDS:
            return None
        fewest, most = most + 1, min(2 * most, MOST_SEEDS)
    while fewest < most:
        middle = (fewest + most) // 2
        fewest, most = (fewest, middle) if resolved(middle) else (middle + 1, most)
    return most
