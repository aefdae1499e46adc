"""Pools of unlabelled pixels for pretraining: which window centres each pool allows."""

from __future__ import annotations

import numpy as np
import pytest

from hsi.data.sampling.pools import pool_coords, pool_mask
from hsi.errors import ConfigError


def test_train_side_leaves_out_every_window_that_reaches_a_val_or_test_pixel() -> None:
    split = {"train": np.array([[1, 1]]), "val": np.array([[5, 5]]), "test": np.array([[0, 9]])}
    mask = pool_mask((10, 10), split, 3, "train_side")
    expected = np.ones((10, 10), dtype=bool)
    expected[4:7, 4:7] = False  # 3x3 windows around the validation pixel
    expected[0:2, 8:10] = False  # ... and around the test pixel, cut by the border
    assert (mask == expected).all()
    # windows of 5 px reach two pixels further
    wide = pool_mask((10, 10), split, 5, "train_side")
    assert not wide[3, 3] and wide[2, 2] and not wide[2, 7] and wide[3, 2]


def test_all_is_every_pixel_and_coords_are_row_major() -> None:
    split = {"train": np.array([[0, 0]]), "val": np.empty((0, 2)), "test": np.array([[2, 2]])}
    assert pool_mask((4, 5), split, 3, "all").all()
    coords = pool_coords((4, 5), split, 1, "train_side")
    assert len(coords) == 19 and [2, 2] not in coords.tolist()
    assert coords.tolist() == sorted(coords.tolist())


def test_an_unknown_pool_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="all, train_side"):
        pool_mask((4, 4), {}, 3, "everything")
