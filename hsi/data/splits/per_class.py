"""`data/split=per_class`: a fixed number of training pixels per class (capped at half a small
class's pixels), `val_ratio` of each class for validation, the rest tested."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hsi.data.splits.base import (
    SplitResult,
    SplitStrategy,
    class_names_or_numbers,
    class_report,
    pixel_targets,
)
from hsi.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class PerClassSplit(SplitStrategy):
    """`train_per_class` training pixels per class (capped at half a small class); `val_ratio`
    of each class for validation."""

    train_per_class: int = 20
    val_ratio: float = 0.05
    method: ClassVar[str] = "per_class"
    no_test_fix: ClassVar[str] = "lower data.split.train_per_class or data.split.val_ratio"

    def __post_init__(self) -> None:
        if self.train_per_class != int(self.train_per_class) or self.train_per_class < 1:
            raise ConfigError(f"data.split.train_per_class={self.train_per_class} must be an integer >= 1.")
        if not 0 <= self.val_ratio < 1:
            raise ConfigError(f"data.split.val_ratio={self.val_ratio} must lie in [0, 1).")
        self.train_per_class, self.val_ratio = int(self.train_per_class), float(self.val_ratio)

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        return per_class_split(pixel_targets(labels, coords), self.train_per_class, self.val_ratio, seed,
                               class_names)


def per_class_split(targets: np.ndarray, train_per_class: int, val_ratio: float = 0.0, seed: int = 0,
                    class_names: Sequence[str] | None = None) -> SplitResult:
    """`train_per_class` training pixels per class; `val_ratio` of all pixels for validation.

    A class with fewer than 2 * `train_per_class` pixels gets half of them (rounded down) for
    training, so it keeps test pixels; such caps are logged and listed in the report. The
    validation pixels are drawn per class (`val_ratio` of each class, rounded) from the
    non-training pixels, always leaving at least one test pixel per class.
    """
    targets = np.asarray(targets)
    n_classes = int(targets.max()) + 1 if len(targets) else 0
    names = class_names_or_numbers(class_names, n_classes)
    counts = np.bincount(targets, minlength=n_classes)
    small = [f"{names[c]} ({k} pixels)" for c, k in enumerate(counts) if 0 < k < 2]
    if small:
        raise ConfigError(f"Too few labelled pixels to split: {', '.join(small)}; each class needs at "
                         f"least 2 (one to train, one to test). Leave such classes out "
                         f"(data.ignore_labels) or merge them.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    capped: dict[str, int] = {}
    for c in range(n_classes):
        members = rng.permutation(np.flatnonzero(targets == c))
        k = len(members)
        if k == 0:
            continue
        n_train = min(train_per_class, k // 2)
        if n_train < train_per_class:
            capped[names[c]] = n_train
        n_val = min(int(round(val_ratio * k)), k - n_train - 1)
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train:n_train + n_val])
        parts["test"].append(members[n_train + n_val:])
    if capped:
        log.warning("data/split=per_class: %d training pixels per class requested, but these classes "
                    "have fewer than twice that and were capped at half their pixels: %s",
                    train_per_class, ", ".join(f"{k} -> {v}" for k, v in capped.items()))
    split = {k: np.sort(np.concatenate(v)) if v else np.zeros(0, dtype=np.int64) for k, v in parts.items()}
    report = {"method": "per_class", "train_per_class": int(train_per_class), "capped": capped,
              "classes": class_report(targets, split, names)}
    return split, report
