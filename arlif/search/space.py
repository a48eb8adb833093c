"""The search space: Hydra sweep expressions become Optuna distributions, sampled values become overrides.

A dimension is written as on Hydra's command line (the syntax Hydra's own sweepers use):
`interval(0.5, 1.0)` a float, `int(interval(1, 8))` an integer, `tag(log, interval(1e-4, 1e-1))` on
a log scale, `range(2, 10, 2)` a stepped integer (or float), `a,b,c` or `choice(a, b, c)` a category.
Dimensions come from `hydra.sweeper.params` and from sweep overrides on the command line (which win);
a plain `key=value` on the command line fixes that key for every trial and removes it from the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from arlif.errors import ConfigError


def hydra_value(value: Any) -> str:
    """`value` (None, bool, number, string, list, dict) written in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return "[" + ",".join(hydra_value(v) for v in value) + "]"


def _is_int(*values) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def distribution(override: Override, where: str) -> BaseDistribution:
    """The Optuna distribution of one sweep override; `where` names its source in errors."""
    sweep, log = override.value(), "log" in (getattr(override.value(), "tags", None) or ())
    if isinstance(sweep, ChoiceSweep) and not log:
        return CategoricalDistribution(sweep.list)
    if isinstance(sweep, IntervalSweep) and sweep.start < sweep.end:
        kind = IntDistribution if _is_int(sweep.start, sweep.end) else FloatDistribution
        return kind(sweep.start, sweep.end, log=log)
    if isinstance(sweep, RangeSweep) and sweep.step > 0 and sweep.start < sweep.stop and not log:
        steps = -(-(sweep.stop - sweep.start) // sweep.step)  # values start, start+step, ... below stop
        high = sweep.start + (steps - 1) * sweep.step
        kind = IntDistribution if _is_int(sweep.start, sweep.stop, sweep.step) else FloatDistribution
        return kind(sweep.start, high, step=sweep.step)
    raise ConfigError(f"{where}: {override.input_line!r} is not a search dimension; use interval(low, high) "
                      "(int(...) for integers, tag(log, ...) for a log scale), range(start, stop, step) or "
                      "choice(a, b, ...) / a,b,...")


def _parse(line: str, where: str) -> Override:
    try:
        return OverridesParser.create().parse_overrides([line])[0]
    except HydraException as exc:
        raise ConfigError(f"{where}: cannot parse {line!r}: {str(exc).splitlines()[0]}") from exc


@dataclass
class SearchSpace:
    """The dimensions to sample, the overrides every trial shares, and the keys set to 1 − a dimension."""

    dimensions: dict[str, BaseDistribution]
    fixed: list[str]
    fixed_values: dict[str, Any]
    complements: dict[str, str]

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's overrides for its sampled `params`, complements included (e.g. paper λ and 1 − λ)."""
        out = [f"{key}={hydra_value(value)}" for key, value in params.items()]
        values = {**self.fixed_values, **params}
        out += [f"{key}={hydra_value(round(1 - values[source], 12))}" for key, source in self.complements.items()]
        return out

    def describe(self) -> dict:
        """The space as plain text (stored with the study, to refuse a rerun with another space)."""
        return {"fixed": list(self.fixed), "dimensions": {k: repr(v) for k, v in self.dimensions.items()},
                "complements": dict(self.complements)}


def search_space(params: Mapping[str, str], complements: Mapping[str, str], arguments: Sequence[str]) -> SearchSpace:
    """The space of `hydra.sweeper.params` and `.complements` (target key -> searched key), given the sweep's
    command-line `arguments`."""
    dimensions = {key: distribution(_parse(f"{key}={expr}", f"hydra.sweeper.params.{key}"),
                                    f"hydra.sweeper.params.{key}") for key, expr in params.items()}
    fixed, fixed_values = [], {}
    for arg in arguments:
        override = _parse(arg, "command line")
        key = override.get_key_element()
        if override.is_sweep_override():
            dimensions[key] = distribution(override, "command line")
        else:
            dimensions.pop(key, None)
            fixed.append(arg)
            fixed_values[key] = override.value()
    for target, source in complements.items():
        where = f"hydra.sweeper.complements.{target}"
        if target in dimensions or target in fixed_values:
            raise ConfigError(f"{where}: {target} is set to 1 - {source}, so it cannot also be searched or set "
                              "on the command line; drop one of them")
        searched, fixed_value = dimensions.get(source), fixed_values.get(source)
        fixed_number = isinstance(fixed_value, (int, float)) and not isinstance(fixed_value, bool)
        if not isinstance(searched, (FloatDistribution, IntDistribution)) and not (searched is None and fixed_number):
            raise ConfigError(f"{where}={source}: {source} must be a searched number or set to a number on "
                              "the command line")
    return SearchSpace(dimensions, fixed, fixed_values, dict(complements))
