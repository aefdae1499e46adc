"""`hsi.predict ckpt_path=... data=custom data.cube_path=<raster> data.gt_path=<labels>` reports the map's
accuracy on the labelled pixels, in memory and streamed, as a prediction of an in-memory scene does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from hsi.data.scenes.loading import load_custom_scene
from tests.conftest import compose_config, compose_train
from tests.data.geo_scenes import salinas_a_files

NODATA_ROWS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Salinas-A as a GeoTIFF with polygons, and cnn2d trained on it for a few batches."""
    from hsi.train import train
    base = tmp_path_factory.mktemp("predict_raster")
    files = salinas_a_files(base, NODATA_ROWS)
    metrics = train(compose_train([
        "data=custom", f"data.cube_path={files['tif']}", f"data.gt_path={files['gpkg']}",
        "data.gt_field=crop", "data.patch_size=9", "data.pca.components=15", "model=cnn2d", "trainer=cpu",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=20", "logger=none", "map=false",
        "callbacks.progress_bar.refresh_rate=0"], base / "run"))
    return files | {"ckpt": Path(metrics["checkpoint"])}


@pytest.mark.parametrize("stream", ["false", "true"])
def test_predict_on_a_raster_with_labels_reports_the_accuracy(trained: dict[str, Path], tmp_path: Path,
                                                             stream: str) -> None:
    from hsi.predict import predict

    summary = predict(compose_config("predict", [
        f"ckpt_path={trained['ckpt']}", "data=custom", f"data.cube_path={trained['tif']}",
        f"data.gt_path={trained['gpkg']}", "data.gt_field=crop", "inference.progress=false",
        f"inference.stream={stream}",
        "inference.block_rows=10", "inference.tile_rows=5"], tmp_path))
    assert summary["streamed"] is (stream == "true")
    assert json.loads((tmp_path / "prediction.json").read_text()) == summary
    truth = load_custom_scene(trained["tif"], trained["gpkg"], gt_field="crop").labels
    with rasterio.open(tmp_path / "prediction.tif") as ds:
        labels = ds.read(1).astype(np.int64)
    labelled = truth > 0
    assert summary["labelled_pixels"] == int(labelled.sum()) > 5000
    assert summary["oa"] == pytest.approx(float((labels[labelled] == truth[labelled]).mean()))
    assert {"aa", "kappa"} <= set(summary) and 0 < summary["oa"] <= 1


def test_predict_on_a_raster_without_labels_reports_none(trained: dict[str, Path], tmp_path: Path) -> None:
    from hsi.predict import predict

    summary = predict(compose_config("predict", [
        f"ckpt_path={trained['ckpt']}", "data=custom", f"data.cube_path={trained['tif']}",
        "inference.progress=false"],
        tmp_path))
    assert "oa" not in summary and summary["streamed"] is False


def test_predict_on_its_own_raster_reports_the_accuracy_on_its_labels(trained: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """Without data=, the raster and the polygons the model was trained on, as for an in-memory scene."""
    from hsi.predict import predict

    summary = predict(compose_config("predict", [f"ckpt_path={trained['ckpt']}", "inference.progress=false",
                                                 "inference.stream=true"], tmp_path))
    assert summary["streamed"] and summary["labelled_pixels"] > 5000 and 0 < summary["oa"] <= 1


def test_moved_training_labels_only_cost_the_accuracy(trained: dict[str, Path], tmp_path: Path) -> None:
    """Without data=, labels that are no longer where the model was trained from: a map, no accuracy."""
    from hsi.predict import predict

    moved = trained["gpkg"].rename(trained["gpkg"].with_suffix(".moved"))
    try:
        summary = predict(compose_config("predict", [f"ckpt_path={trained['ckpt']}",
                                         "inference.progress=false"],
                                         tmp_path))
    finally:
        moved.rename(trained["gpkg"])
    assert "oa" not in summary and (tmp_path / "prediction.tif").is_file()
