"""One invalid-pixel rule (`hsi.data.scenes.invalid_pixels`): a checkpoint and its ONNX export give the
same labels on every pixel of real Salinas-A with a nodata block, nodata neighbours included,
streamed and in memory (the checkpoint path once zeroed invalid pixels after PCA while the ONNX
path filled band means before it, so the maps differed beside nodata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from tests.conftest import compose_config, compose_train  # noqa: E402
from tests.data.geo_scenes import shared_salinas_a, write_geotiff, write_polygons  # noqa: E402

BLOCK = (slice(30, 42), slice(25, 45))  # nodata rows x columns, inside the scene


@pytest.fixture(scope="module")
def model_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cnn2d trained one epoch on Salinas-A, its ONNX export, and the scene with a nodata block to
    predict (its band means are not the training scene's, so a fill before PCA is not zero after)."""
    from hsi.deploy.export import export
    from hsi.train import train

    base = tmp_path_factory.mktemp("nodata_pair")
    cube, gt = shared_salinas_a()
    cube = cube.astype(np.float32)
    trained_on = write_geotiff(base / "salinas_a.tif", cube)
    write_polygons(base / "fields.gpkg", gt)
    cube[BLOCK] = -9999
    tif = write_geotiff(base / "salinas_a_nodata.tif", cube)
    metrics = train(compose_train([
        "data=custom", f"data.cube_path={trained_on}", f"data.gt_path={base / 'fields.gpkg'}",
        "data.gt_field=crop",
        "data.patch_size=7", "data.pca.components=10", "model=cnn2d", "trainer=cpu", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=10", "logger=none", "map=false",
        "callbacks.progress_bar.refresh_rate=0"], base / "run"))
    export(compose_config("export", [f"ckpt_path={metrics['checkpoint']}"], base / "export"))
    return {"tif": tif, "ckpt": Path(metrics["checkpoint"]), "onnx": base / "export" / "model.onnx"}


def _maps(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(folder / "prediction.tif") as a, rasterio.open(folder / "confidence.tif") as b:
        return a.read(1), b.read(1)


@pytest.mark.parametrize("stream", ["false", "true"])
def test_checkpoint_and_export_agree_beside_nodata(model_pair: dict[str, Path], tmp_path: Path,
                                                   stream: str) -> None:
    from hsi.predict import predict

    common = ["data=custom", f"data.cube_path={model_pair['tif']}", "inference.progress=false",
              f"inference.stream={stream}", "inference.block_rows=20"]
    maps = {}
    for name, source in (("ckpt", [f"ckpt_path={model_pair['ckpt']}", "inference.precision=32-true"]),
                         ("onnx", [f"model_path={model_pair['onnx']}"])):  # the export is float32
        summary = predict(compose_config("predict", [*source, *common], tmp_path / name))
        assert summary["streamed"] is (stream == "true")
        maps[name] = _maps(tmp_path / name)
    (labels, confidence), (exported, exported_confidence) = maps["ckpt"], maps["onnx"]
    assert (labels[BLOCK] == 0).all() and len(np.unique(labels)) >= 3
    beside = np.zeros(labels.shape, bool)
    beside[27:45, 22:48] = True  # the block and the pixels whose 7x7 window reaches into it
    assert (labels[beside] > 0).sum() > 100
    np.testing.assert_array_equal(labels, exported)
    np.testing.assert_allclose(confidence[beside], exported_confidence[beside], atol=1e-4)
