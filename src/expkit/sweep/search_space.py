"""The search space of an Optuna search, written in Hydra's own override grammar.

``choice(a, b)`` or ``a,b`` -> categorical; ``range(start, stop[, step])`` -> a stepped int
(or float) range, stop excluded as in Hydra; ``interval(low, high)`` -> a float range,
``tag(int, interval(...))`` an int one, ``tag(log, ...)`` sampled on a log scale; anything
else is a fixed value passed to every trial unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from expkit.errors import ConfigError

_PRIMITIVES = (str, int, float, bool, type(None))


@dataclass
class SearchSpace:
    """What the sampler chooses (``distributions``) and what every trial gets (``fixed``)."""

    distributions: dict[str, Any] = field(default_factory=dict)  # name -> optuna distribution
    encoded: dict[str, dict[Any, str]] = field(default_factory=dict)  # categorical value -> override text
    fixed: list[str] = field(default_factory=list)  # override lines, as written

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The job's overrides for one trial's parameters, then the fixed values."""
        lines = []
        for name, value in params.items():
            text = self.encoded.get(name, {}).get(value)
            lines.append(f"{name}={text if text is not None else _encode(value)}")
        return lines + self.fixed

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every parameter, for the grid sampler (no continuous ranges)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        grid: dict[str, list[Any]] = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                grid[name] = list(dist.choices)
            elif isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None and not dist.log:
                count = int(round((dist.high - dist.low) / dist.step)) + 1
                grid[name] = [_as_type(dist.low + i * dist.step, dist) for i in range(count)]
            else:
                raise ConfigError(f"hydra.sweeper.params.{name}: the grid sampler needs a finite set of values "
                                  f"(choice(...) or range(...)), got a continuous range")
        return grid


def _as_type(value: float, dist: Any) -> Any:
    from optuna.distributions import IntDistribution

    return int(value) if isinstance(dist, IntDistribution) else round(value, 12)


def _encode(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _range(name: str, sweep: RangeSweep, log: bool) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    start, stop, step = sweep.start, sweep.stop, sweep.step if sweep.step is not None else 1
    if step <= 0 or stop <= start:
        raise ConfigError(f"hydra.sweeper.params.{name}=range({start}, {stop}, {step}): "
                          "needs start < stop and a positive step")
    count = math.ceil((stop - start) / step)
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntDistribution(int(start), int(start + (count - 1) * step), log=log, step=int(step))
    return FloatDistribution(float(start), float(start + (count - 1) * step), log=log, step=float(step))


def _distribution(name: str, override: Override) -> tuple[Any, dict[Any, str]]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    log = "log" in tags
    if isinstance(sweep, ChoiceSweep):
        values = list(override.sweep_iterator())
        texts = list(override.sweep_string_iterator())
        choices = [v if isinstance(v, _PRIMITIVES) else t for v, t in zip(values, texts)]
        return CategoricalDistribution(choices), dict(zip(choices, texts))
    if isinstance(sweep, RangeSweep):
        return _range(name, sweep, log), {}
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if not low < high or (log and low <= 0):
            raise ConfigError(f"hydra.sweeper.params.{name}={override.input_line.partition('=')[2]}: "
                              f"needs low < high{' and low > 0 on a log scale' if log else ''}")
        if "int" in tags:
            return IntDistribution(int(low), int(high), log=log), {}
        return FloatDistribution(float(low), float(high), log=log), {}
    raise ConfigError(f"hydra.sweeper.params.{name}={override.input_line.partition('=')[2]}: "
                      "not a search space; use choice(...), range(...), interval(...) or tag(log, interval(...))")


def parse(params: dict[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """``hydra.sweeper.params`` and the command line's overrides (which win on the same key)."""
    lines = {str(k): f"{k}={v}" for k, v in (params or {}).items()}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        lines[override.get_key_element()] = override.input_line
    space = SearchSpace()
    parser = OverridesParser.create()
    for name, line in lines.items():
        try:
            override = parser.parse_override(line)
        except Exception as e:  # noqa: BLE001 - Hydra's grammar errors, as one line
            raise ConfigError(f"hydra.sweeper.params.{name}: cannot parse {line!r}: {' '.join(str(e).split())}")
        if override.is_sweep_override():
            space.distributions[name], encoded = _distribution(name, override)
            if encoded:
                space.encoded[name] = encoded
        else:
            space.fixed.append(line)
    return space
