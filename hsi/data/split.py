"""Stratified train / validation / test split of the labelled pixels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(targets: np.ndarray, test_ratio: float, val_ratio: float = 0.0,
                     seed: int = 0,
                     class_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Indices into `targets` (class per labelled pixel) for "train", "val" and "test".

    `test_ratio` of all pixels are held out from training, stratified by class (scikit-learn's
    `train_test_split`, as the notebook recipe does); `val_ratio` of all pixels are then drawn
    from the held-out ones, also stratified; the rest is the test set.
    """
    from sklearn.model_selection import train_test_split

    targets = np.asarray(targets)
    n = len(targets)
    if not 0 < test_ratio < 1:
        raise ValueError(f"data.test_ratio={test_ratio} must lie strictly between 0 and 1.")
    if not 0 <= val_ratio < test_ratio:
        raise ValueError(f"data.val_ratio={val_ratio} must be >= 0 and below data.test_ratio="
                         f"{test_ratio}: validation pixels are drawn from the held-out ones.")
    classes, counts = np.unique(targets, return_counts=True)
    names = list(class_names) if class_names is not None else [str(c) for c in range(classes.max() + 1)]
    needed = 3 if val_ratio > 0 else 2
    small = [f"{names[c]} ({k} pixels)" for c, k in zip(classes, counts) if k < needed]
    if small:
        raise ValueError(f"Too few labelled pixels to split: {', '.join(small)}; each class needs "
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
        raise ValueError(f"With data.test_ratio={test_ratio} no training pixel is left for "
                         f"{', '.join(names[c] for c in missing)} (too few pixels); lower "
                         f"data.test_ratio or leave those classes out.")
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
