"""Leakage between subsets: evaluation pixels that lie inside some training window, and the split
audit (`split_audit`) every run records in metrics.json and `hsi.summarize` reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def window_mask(shape: tuple[int, int], coords: np.ndarray, patch_size: int) -> np.ndarray:
    """(H, W) bool: pixels within `patch_size // 2` (Chebyshev) of any pixel in `coords`."""
    from scipy.ndimage import maximum_filter

    mask = np.zeros(shape, dtype=bool)
    coords = np.asarray(coords).reshape(-1, 2)
    mask[coords[:, 0], coords[:, 1]] = True
    if patch_size > 1 and mask.any():
        mask = maximum_filter(mask, size=2 * (patch_size // 2) + 1, mode="constant", cval=False)
    return mask


def leakage(shape: tuple[int, int], train_coords: np.ndarray, test_coords: np.ndarray,
            patch_size: int) -> float:
    """Fraction of `test_coords` inside some training window (0.0 when there are no test pixels)."""
    test_coords = np.asarray(test_coords).reshape(-1, 2)
    if len(test_coords) == 0:
        return 0.0
    near = window_mask(shape, train_coords, patch_size)
    return float(near[test_coords[:, 0], test_coords[:, 1]].mean())


# windows a reader of a paper compares against: SpectralFormer's 7x7, 9x9, HybridSN's 25x25
AUDIT_WINDOWS = (7, 9, 25)


def split_audit(shape: tuple[int, int], split: Mapping[str, np.ndarray], patch_size: int,
                windows: Sequence[int] = AUDIT_WINDOWS) -> dict[str, float | int | None]:
    """The share of test and validation pixels inside a training window, for the run's window
    (`test_in_window`, `val_in_window`) and for each of `windows` (`test_in_7x7`, ...).

    A pixel is inside a training window when it lies within `w // 2` (Chebyshev) of a training
    pixel for a w x w window: a network trained on that window saw its spectrum. Shares are of the
    subset's pixels (None for an empty subset, e.g. no validation pixels); `window` records the
    run's window.
    """
    out: dict[str, float | int | None] = {"window": int(patch_size)}
    train = split["train"]
    for subset in ("test", "val"):
        coords = np.asarray(split.get(subset, np.zeros((0, 2), dtype=np.int64))).reshape(-1, 2)
        empty = len(coords) == 0
        out[f"{subset}_in_window"] = None if empty else leakage(shape, train, coords, patch_size)
        for w in windows:
            out[f"{subset}_in_{w}x{w}"] = None if empty else leakage(shape, train, coords, w)
    return out


def audit_split_file(path: str | Path, patch_size: int) -> dict[str, float | int | None]:
    """`split_audit` of a run's `split.npz` (train / val / test coordinates and the labels):
    audits runs that were written before metrics.json held the audit."""
    with np.load(path) as split:
        subsets = {k: split[k] for k in ("train", "val", "test") if k in split.files}
        shape = tuple(split["labels"].shape)
    return split_audit(shape, subsets, patch_size)
