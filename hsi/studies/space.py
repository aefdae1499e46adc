"""A search space in Hydra's override syntax, as Optuna distributions.

`conf/hparams_search/*.yaml` lists `search.params` as `key: <sweep>`, the syntax Hydra's Optuna
sweeper read: `interval(a, b)` (a float, or an int when both ends are ints), `tag(log, interval(a, b))`
(sampled on a log scale), `choice(a, b, ...)` or `a,b,...` (categorical), `range(start, stop[, step])`
(ints or floats from start up to, not including, stop, as Hydra's `range` means). A key given on the
command line with a fixed value leaves the space; one given as a sweep replaces the config's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hsi.errors import ConfigError, first_line

__all__ = ["distribution", "is_sweep", "override_line", "search_space", "split_sweeps"]


def _parse(line: str) -> Override:
    try:
        return OverridesParser.create().parse_override(line)
    except Exception as error:  # noqa: BLE001 - Hydra's parser raises several kinds
        raise ConfigError(f"Cannot read the search-space entry {line!r} ({error}); write it as "
                          f"interval(a, b), tag(log, interval(a, b)), choice(a, b) or range(a, b).") from None


def is_sweep(line: str) -> bool:
    """Whether a command-line override is a range to search (`choice(...)`, `a,b`, `interval(...)`)."""
    if "=" not in line or line.startswith(("hydra.", "~")):
        return False
    try:
        return OverridesParser.create().parse_override(line).is_sweep_override()
    except Exception:  # noqa: BLE001 - not ours to judge: Hydra reports it when composing
        return False


def split_sweeps(arguments: Iterable[str]) -> tuple[list[str], list[str]]:
    """(search-space overrides, other arguments) of a command line."""
    sweeps: list[str] = []
    rest: list[str] = []
    for argument in arguments:
        (sweeps if is_sweep(argument) else rest).append(argument)
    return sweeps, rest


def distribution(key: str, value: str) -> BaseDistribution:
    """The Optuna distribution of one search-space entry `key: value`; an empty or reversed range
    is refused in one line naming the key."""
    try:
        return _distribution(key, value)
    except ConfigError:
        raise
    except ValueError as error:  # Optuna's checks: low <= high, step > 0, low > 0 on a log scale
        raise ConfigError(f"search.params.{key}={value!r} is an empty or reversed range "
                          f"({first_line(error)}): "
                          f"write the low end first and a positive step, e.g. interval(1e-4, 1e-2) or "
                          f"range(8, 33, 8); a log scale needs a low end above 0.") from None


def _distribution(key: str, value: str) -> BaseDistribution:
    override = _parse(f"{key}={value}")
    if not override.is_sweep_override():
        raise ConfigError(f"search.params.{key}={value!r} is a single value, not a range; write "
                          f"interval(a, b), tag(log, interval(a, b)), choice(a, b) or range(a, b), or "
                          f"fix it on the command line ({key}={value}).")
    sweep = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and sweep.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        return CategoricalDistribution(choices)
    if override.is_range_sweep():
        start, stop, step = sweep.start, sweep.stop, sweep.step
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"search.params.{key}={value!r} holds no value (range(start, stop, step) "
                              f"counts from start up to, not including, stop): write e.g. range(8, 33, 8).")
        if any(isinstance(v, float) for v in (start, stop, step)):
            return FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
        return IntDistribution(int(start), int(stop) - int(step), step=int(step))  # stop excluded
    if override.is_interval_sweep():
        log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(int(sweep.start), int(sweep.end), log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise ConfigError(f"search.params.{key}={value!r}: only interval, tag(log, interval), choice and "
                      f"range are searched.")


def search_space(params: Mapping[str, Any], command_line: Iterable[str] = ()) -> dict[str, BaseDistribution]:
    """The space of `search.params`, updated by the command line's sweeps and fixed keys."""
    space = {str(key): str(value) for key, value in (params or {}).items()}
    for line in command_line:
        if "=" not in line:
            continue
        key = line.split("=", 1)[0].lstrip("+~")
        if is_sweep(line):
            space[key] = line.split("=", 1)[1]
        else:
            space.pop(key, None)  # fixed on the command line: not searched
    if not space:
        raise ConfigError("The search space is empty: list keys under search.params (see "
                          "conf/hparams_search/), or give one as a range on the command line, e.g. "
                          "'model.optimizer.lr=interval(1e-4,1e-2)'.")
    return {key: distribution(key, value) for key, value in space.items()}


def override_line(key: str, value: Any) -> str:
    """`key=value` as a command-line override (what a trial's .hydra/overrides.yaml holds)."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value}"
