"""One invalid-pixel rule (`hsi.data.scenes.invalid_pixels`) for every path that reads a raster: training
in memory (`load_custom_scene`), training streamed (`load_streamed_scene` + `sample_pixels`) and
prediction (`hsi.run.raster_driver`, in memory or streamed, checkpoint or ONNX) fill the same
pixels with the same values, on real Salinas-A with a nodata block and partly NaN pixels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from hsi.data.readers.raster import open_raster, read_block_masks
from hsi.data.scenes.large_scene import load_streamed_scene, sample_pixels
from hsi.data.scenes.loading import load_custom_scene
from hsi.run.raster_driver import RasterRows, raster_fill_values
from tests.data.geo_scenes import shared_salinas_a, write_geotiff, write_polygons


@pytest.fixture(scope="module")
def holes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("fill_rule")
    cube, gt = shared_salinas_a()
    cube = cube.astype(np.float32)
    cube[10:14, 5:40, 3:7] = np.nan  # partly NaN pixels
    cube[:, :60, 50] = np.nan  # one band NaN over most of the scene
    cube[30:42, 25:45] = -9999  # a nodata block
    tif = write_geotiff(base / "holes.tif", cube)
    write_polygons(base / "fields.gpkg", gt)
    return {"tif": tif, "gpkg": base / "fields.gpkg"}


def test_training_in_memory_streamed_and_prediction_fill_alike(holes: dict[str, Path]) -> None:
    memory = load_custom_scene(holes["tif"], holes["gpkg"], gt_field="crop", nan_policy="fill")
    streamed = load_streamed_scene(holes["tif"], holes["gpkg"], gt_field="crop", nan_policy="fill",
                                   block_rows=5)
    trained = memory.cube.reshape(-1, memory.raw_bands)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_raster(holes["tif"]) as ds:
            _, nodata, nonfinite = read_block_masks(ds, 0, ds.height)
            rows = RasterRows(ds, raster_fill_values(ds))
            predicted = np.concatenate([rows.read(start, min(start + 7, ds.height))[0]
                                        for start in range(0, ds.height, 7)], axis=1)  # (bands, H, W)
    assert nodata.sum() == 12 * 20 and nonfinite[10:14, 5:40].all() and nonfinite[:30, :60].all()
    holes_filled = trained[nonfinite.ravel()]
    assert np.isfinite(trained).all() and np.ptp(holes_filled[:, 50]) == 0  # NaN values: one band mean
    assert np.ptp(holes_filled[:, 0]) > 0  # ... their finite values kept
    assert np.ptp(trained[nodata.ravel()], axis=0).max() == 0  # nodata pixels: the band means
    np.testing.assert_array_equal(sample_pixels(streamed, None, block_rows=6), trained)
    np.testing.assert_array_equal(predicted.reshape(memory.raw_bands, -1).T, trained)
