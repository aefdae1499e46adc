"""The split strategies, found by their modules, and a strategy built from its config.

Every module of `hsi.data.splits` that defines a `SplitStrategy` subclass with a `method`
adds it: a new strategy is one new module here (and its `conf/data/split/<name>.yaml`); nothing
else names the strategies.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

import hsi.data.splits as package
from hsi.data.splits.base import SplitStrategy, target_of
from hsi.errors import ConfigError


def strategies() -> dict[str, type[SplitStrategy]]:
    """Every strategy of the package's modules, by `method` (`random`, `disjoint`, ...)."""
    found: dict[str, type[SplitStrategy]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, SplitStrategy) and value is not SplitStrategy
                    and value.__module__ == module.__name__ and "method" in vars(value)):
                if value.method in found:
                    raise TypeError(f"{target_of(value)} and {target_of(found[value.method])} are both "
                                    f"split method {value.method!r}; give one another name.")
                found[value.method] = value
    return found


def strategy_named(class_name: str) -> type[SplitStrategy] | None:
    """The strategy whose class is called `class_name` (e.g. "RandomSplit"), or None."""
    return next((cls for cls in strategies().values() if cls.__name__ == class_name), None)


def build_strategy(split: SplitStrategy | Mapping[str, Any] | None) -> SplitStrategy:
    """A split strategy from itself, a plain mapping with its `_target_` (`data.split`), or None
    (random).

    The `_target_` must name a `SplitStrategy` subclass: hyperparameters read from a checkpoint
    never call anything else. Hydra's recursive instantiation of `data` passes the strategy
    already built.
    """
    from hydra.utils import get_class

    if split is None:
        return strategies()["random"]()
    if isinstance(split, SplitStrategy):
        return split
    if isinstance(split, str):
        raise ConfigError(f"data.split={split!r}: choose the split with data/split={split} and set "
                         f"its keys as data.split.<key> (e.g. data.split.test_ratio=0.8).")
    if not isinstance(split, Mapping) or "_target_" not in split:
        raise ConfigError(f"data.split must be a split config with a _target_ (data/split=<one of "
                         f"conf/data/split/>: the strategies {', '.join(strategies())}); got {split!r}.")
    target = split["_target_"]
    try:
        cls = get_class(target)
    except Exception as error:  # noqa: BLE001 - Hydra raises several kinds
        raise ConfigError(f"data.split._target_={target!r} does not name a class ({error}).") from None
    if not (isinstance(cls, type) and issubclass(cls, SplitStrategy)):
        raise ConfigError(f"data.split._target_={target!r} is not a {target_of(SplitStrategy)}.")
    settings = {k: v for k, v in split.items() if not (k.startswith("_") and k.endswith("_"))}
    known = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else None
    unknown = [] if known is None else sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"data.split.{unknown[0]} is not a setting of {cls.__name__} "
                         f"(data/split={getattr(cls, 'method', '?')}); it takes "
                         f"{', '.join(known or []) or 'none'}.")
    return cls(**settings)  # what hydra.utils.instantiate does, without wrapping its errors
