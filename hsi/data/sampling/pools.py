"""Pools of unlabelled pixels for self-supervised pretraining (`pretrain.pool`).

A pool is the set of window centres whose windows a pretext task may read; labels are never read.

- `all`: every pixel of the scene (transductive, as the semi-supervised literature does: the
  validation and test pixels' spectra are read, never their labels).
- `train_side`: every pixel whose window holds no validation or test pixel, so not one spectrum
  of a pixel that is ever evaluated is read (windows are zero-padded at the scene's border, so a
  window reads exactly the scene pixels it covers).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.ndimage import maximum_filter

from hsi.errors import ConfigError, DataError

POOLS = ("all", "train_side")
EVALUATED = ("val", "test")


def evaluated_mask(shape: tuple[int, int], split: Mapping[str, np.ndarray]) -> np.ndarray:
    """(H, W) bool: the pixels of the validation and test subsets."""
    mask = np.zeros(shape, dtype=bool)
    for subset in EVALUATED:
        coords = np.asarray(split.get(subset, np.empty((0, 2))), dtype=np.int64).reshape(-1, 2)
        mask[coords[:, 0], coords[:, 1]] = True
    return mask


def check_pool(key: str, pool: str) -> None:
    """`pool` must be one of POOLS (`key` names the setting in the message)."""
    if pool not in POOLS:
        raise ConfigError(f"{key}={pool!r} is not one of {', '.join(POOLS)} (all: every pixel, labels never "
                          f"read; train_side: no window reads a validation or test pixel).")


def pool_mask(shape: tuple[int, int], split: Mapping[str, np.ndarray], patch_size: int,
              pool: str) -> np.ndarray:
    """(H, W) bool: the window centres of `pool` for windows of `patch_size` pixels."""
    check_pool("pool", pool)
    if pool == "all":
        return np.ones(shape, dtype=bool)
    evaluated = evaluated_mask(shape, split)
    # a window centred at c reads a val/test pixel iff one lies within patch_size // 2 of c
    reach = maximum_filter(evaluated.astype(np.uint8), size=patch_size, mode="constant", cval=0)
    return reach == 0


def pool_coords(shape: tuple[int, int], split: Mapping[str, np.ndarray], patch_size: int,
                pool: str) -> np.ndarray:
    """(N, 2) int64 (row, col) window centres of `pool`, row-major."""
    rows, cols = np.nonzero(pool_mask(shape, split, patch_size, pool))
    return np.stack([rows, cols], axis=1).astype(np.int64)


def check_pool_pca(key: str, pool: str, pca_fit: str, components: int | None) -> None:
    """`train_side` promises that no validation or test spectrum is read: PCA must then be fitted
    on the training pixels (or be off)."""
    if pool == "train_side" and components is not None and pca_fit != "train":
        raise ConfigError(f"{key}=train_side promises that no validation or test spectrum is read, but "
                          f"data.pca.fit={pca_fit} fits PCA on every pixel: set data.pca.fit=train (or use "
                          f"{key}=all and declare it).")


def require_pool(mask: np.ndarray, key: str, pool: str, scene: str, patch_size: int) -> np.ndarray:
    """The (N, 2) window centres of a pool's `mask`; an empty pool is refused with the fix."""
    coords = np.argwhere(mask).astype(np.int64)
    if len(coords) == 0:
        raise DataError(f"{key}={pool}: no pixel of {scene} has a {patch_size}x{patch_size} window free of "
                        f"validation and test pixels; use a smaller data.patch_size or {key}=all.")
    return coords
