"""`data/split=random`: stratified by class, `test_ratio` held out, `val_ratio` drawn from them
(the notebook recipe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hsi.data.splits.base import (
    SplitResult,
    SplitStrategy,
    check_ratios,
    class_names_or_numbers,
    pixel_targets,
)
from hsi.errors import ConfigError


@dataclass
class RandomSplit(SplitStrategy):
    """Stratified by class: `test_ratio` held out, `val_ratio` drawn from them (the recipe)."""

    test_ratio: float = 0.9
    val_ratio: float = 0.05
    method: ClassVar[str] = "random"
    no_test_fix: ClassVar[str] = "raise data.split.test_ratio"

    def __post_init__(self) -> None:
        self.test_ratio, self.val_ratio = float(self.test_ratio), float(self.val_ratio)
        check_ratios(self.test_ratio, self.val_ratio)

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        return stratified_split(pixel_targets(labels, coords), self.test_ratio, self.val_ratio, seed,
                                class_names)


def stratified_split(targets: np.ndarray, test_ratio: float, val_ratio: float = 0.0,
                     seed: int = 0,
                     class_names: Sequence[str] | None = None) -> SplitResult:
    """Indices into `targets` (class per labelled pixel) for "train", "val" and "test", and the report.

    `test_ratio` of all pixels are held out from training, stratified by class (scikit-learn's
    `train_test_split`, as the notebook recipe does); `val_ratio` of all pixels are then drawn
    from the held-out ones, also stratified; the rest is the test set.
    """
    from sklearn.model_selection import train_test_split

    targets = np.asarray(targets)
    n = len(targets)
    classes, counts = np.unique(targets, return_counts=True)
    names = class_names_or_numbers(class_names, classes.max() + 1)
    needed = 3 if val_ratio > 0 else 2
    small = [f"{names[c]} ({k} pixels)" for c, k in zip(classes, counts) if k < needed]
    if small:
        raise ConfigError(f"Too few labelled pixels to split: {', '.join(small)}; each class needs "
                         f"at least {needed}. Leave such classes out or merge them.")
    index = np.arange(n)
    train, held = train_test_split(index, test_size=test_ratio, random_state=seed,
                                   stratify=targets)
    if val_ratio > 0:
        n_val = int(round(val_ratio * n))
        val, test = train_test_split(held, train_size=n_val, random_state=seed,
                                     stratify=targets[held])
    else:
        val, test = held[:0], held
    missing = sorted(set(classes) - set(targets[train]))
    if missing:
        raise ConfigError(f"With data.split.test_ratio={test_ratio} no training pixel is left for "
                         f"{', '.join(names[c] for c in missing)} (too few pixels); lower "
                         f"data.split.test_ratio or leave those classes out.")
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}, {"method": "random"}
