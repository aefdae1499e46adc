"""`hsi.predict model_path=<export> data=custom data.cube_path=<raster>`: a window graph (hybridsn_se)
streams in row blocks with the same labels and confidence as in memory, and a given ground truth
gives the map's accuracy. Real Salinas-A made into a GeoTIFF and polygons here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from tests.conftest import compose_config, compose_train  # noqa: E402
from tests.data.geo_scenes import salinas_a_files  # noqa: E402

NODATA_ROWS = 3


@pytest.fixture(scope="module")
def window_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """hybridsn_se (a window graph: squeeze-excitation in its trunk) trained a few batches on the
    GeoTIFF from polygons, exported."""
    from hsi.deploy.export import export
    from hsi.train import train
    base = tmp_path_factory.mktemp("onnx_raster")
    files = salinas_a_files(base, NODATA_ROWS)
    metrics = train(compose_train([
        "data=custom", f"data.cube_path={files['tif']}", f"data.gt_path={files['gpkg']}",
        "data.gt_field=crop", "data.patch_size=9", "data.pca.components=15", "model=hybridsn_se",
        "trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=10", "logger=none", "map=false",
        "callbacks.progress_bar.refresh_rate=0"], base / "run"))
    meta = export(compose_config("export", [f"ckpt_path={metrics['checkpoint']}", "inference.batch_size=200"],
                                 base / "export"))
    assert meta["eval_path"] == "window"
    return files | {"model": base / "export" / "model.onnx"}


def _maps(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(folder / "prediction.tif") as a, rasterio.open(folder / "confidence.tif") as b:
        return a.read(1), b.read(1)


def test_a_window_graph_streams_with_the_in_memory_labels(window_export: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """83 rows of 86 pixels in blocks of 10 rows requested (rounded to whole 50-pixel batches: 25)."""
    from hsi.predict import predict

    common = [f"model_path={window_export['model']}", "data=custom", f"data.cube_path={window_export['tif']}",
              "inference.progress=false", "inference.batch_size=50", "inference.tile_rows=7"]
    memory = predict(compose_config("predict", [*common, "inference.stream=false"], tmp_path / "memory"))
    streamed = predict(compose_config("predict", [*common, "inference.stream=true",
                                      "inference.block_rows=10"],
                                      tmp_path / "stream"))
    assert memory["streamed"] is False and streamed["streamed"] is True
    assert streamed["eval_path"].startswith("onnx-window") and streamed["block_rows"] == 25
    assert 83 % streamed["block_rows"] != 0
    labels, confidence = _maps(tmp_path / "stream")
    reference, reference_confidence = _maps(tmp_path / "memory")
    assert (labels[:NODATA_ROWS] == 0).all() and len(np.unique(reference)) >= 3
    np.testing.assert_array_equal(labels, reference)
    np.testing.assert_array_equal(confidence, reference_confidence)


def test_an_exported_graph_reports_the_accuracy_on_given_labels(window_export: dict[str, Path],
                                                                tmp_path: Path) -> None:
    from hsi.data.scenes.loading import load_custom_scene
    from hsi.predict import predict

    summary = predict(compose_config("predict", [
        f"model_path={window_export['model']}", "data=custom", f"data.cube_path={window_export['tif']}",
        f"data.gt_path={window_export['gpkg']}", "data.gt_field=crop", "inference.progress=false",
        "inference.stream=true",
        "inference.batch_size=50"], tmp_path))
    assert json.loads((tmp_path / "prediction.json").read_text()) == summary
    truth = load_custom_scene(window_export["tif"], window_export["gpkg"], gt_field="crop").labels
    labels, _ = _maps(tmp_path)
    labelled = truth > 0
    assert summary["labelled_pixels"] == int(labelled.sum())
    assert summary["oa"] == pytest.approx(float((labels[labelled] == truth[labelled]).mean()))
