"""Leakage between subsets: evaluation pixels that lie inside some training window."""

from __future__ import annotations

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
