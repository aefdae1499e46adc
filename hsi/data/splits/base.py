"""What every split strategy is: `SplitStrategy`, the checks its settings share, and its report.

A strategy is a dataclass of its settings (built from `conf/data/split/<name>.yaml`,
`data/split=<name>`) that checks them once, when built. Called with the scene's labels and its
labelled pixels, it returns indices into those pixels for "train", "val" and "test", and a
report; `config()` gives it back as a plain dict with `_target_`, so a checkpoint's
hyperparameters rebuild it. Each strategy lives in its own module of `hsi.data.splits` with the
function that does its work; `hsi.data.splits.registry` finds them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hsi.errors import ConfigError

SplitIndices = dict[str, np.ndarray]
SplitResult = tuple[SplitIndices, dict[str, Any]]


class SplitStrategy:
    """A way to split the labelled pixels; subclasses are dataclasses of their settings.

    `strategy(labels, coords, patch_size, seed, class_names)`: `labels` is the (H, W) ground
    truth (0 = unlabelled, k = class k - 1), `coords` the (N, 2) labelled pixels, `patch_size`
    the window side (a window reaches `patch_size // 2` pixels out). Returns indices into
    `coords` for "train", "val" and "test", and the split's report.

    `method` names it (`data/split=<method>`, the report's "method"); `no_test_fix` says in one
    line how to get test pixels back when its settings leave none.
    """

    method: ClassVar[str]
    no_test_fix: ClassVar[str] = "change the settings of data.split"

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Plain values and `_target_`: `hydra.utils.instantiate(strategy.config())` rebuilds it."""
        cls = type(self)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"_target_": target_of(cls), **fields}

    def no_validation(self) -> tuple[str, str] | None:
        """(the setting, its fix) when these settings leave no validation pixels, else None; a
        strategy with a `val_ratio` has none at 0."""
        if getattr(self, "val_ratio", None) == 0:
            return (f"data.split.val_ratio={self.val_ratio:g}",  # type: ignore[attr-defined]
                    "the split needs validation pixels, e.g. data.split.val_ratio=0.05; test pixels "
                    "are never the objective")
        return None


def target_of(cls: type) -> str:
    """The `_target_` that names `cls` (its module and name)."""
    return f"{cls.__module__}.{cls.__qualname__}"


# -- checks the strategies share ---------------------------------------------------------------
def check_ratios(test_ratio: float, val_ratio: float) -> None:
    """`test_ratio` of the labelled pixels held out, `val_ratio` of them drawn from the held-out ones."""
    if not 0 < test_ratio < 1:
        raise ConfigError(f"data.split.test_ratio={test_ratio} must lie strictly between 0 and 1.")
    if not 0 <= val_ratio < test_ratio:
        raise ConfigError(f"data.split.val_ratio={val_ratio} must be >= 0 and below "
                         f"data.split.test_ratio={test_ratio}: validation pixels are drawn from "
                         f"the held-out ones.")


def check_flag(value: bool, key: str) -> None:
    """`data.split.<key>` must be a boolean."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"data.split.{key}={value!r} must be true or false.")


def absolute_path(path: str | Path | None) -> str | None:
    """Paths on the command line are relative to where the command runs."""
    return None if path is None else str(Path(path).expanduser().resolve())


# -- what the strategies share in their work and reports --------------------------------------------
def pixel_targets(labels: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Class (0-based) of each labelled pixel (row, col) in `coords`."""
    coords = np.asarray(coords)
    return labels[coords[:, 0], coords[:, 1]] - 1


def class_names_or_numbers(class_names: Sequence[str] | None, n_classes: int) -> list[str]:
    """The classes' names, or their numbers when the scene gives none."""
    return list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]


def class_report(targets: np.ndarray, split: dict[str, np.ndarray], names: list[str],
                 dropped: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Pixels and shares of each class in each subset (shares of the class's labelled pixels)."""
    rows = []
    for c, name in enumerate(names):
        total = int((targets == c).sum())
        row: dict[str, Any] = {"name": name, "pixels": total}
        for k, idx in split.items():
            n = int((targets[idx] == c).sum())
            row[k] = n
            row[f"{k}_share"] = n / total if total else 0.0
        if dropped is not None:
            row["dropped"] = int((targets[dropped] == c).sum())
        rows.append(row)
    return rows
