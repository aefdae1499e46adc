"""An exported model on GIS inputs (issue 29): model.json records the training raster's band
centres and the classes' codes; `hsi.predict model_path=...` writes the codes as prediction.tif's
pixels (in memory and streamed) and refuses a raster whose band centres differ. Real Salinas-A
made into a GeoTIFF and polygons with numeric codes here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from hsi.errors import DataError  # noqa: E402
from tests.conftest import compose_config, compose_train  # noqa: E402
from tests.data.geo_scenes import envi_copy, salinas_a_files, write_code_polygons  # noqa: E402

CODES = [1, 10, 11, 12, 13, 14]  # Salinas-A's source values


@pytest.fixture(scope="module")
def coded_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cnn2d (a dense graph) trained a few batches on the GeoTIFF from polygons coded 1, 10..14."""
    from hsi.data.readers.io import read_array
    from hsi.deploy.export import export
    from hsi.train import train
    from tests.conftest import SHARED_DATA

    base = tmp_path_factory.mktemp("gis_export")
    files = salinas_a_files(base, 3)
    gt = read_array(SHARED_DATA / "salinas_a" / "SalinasA_gt.mat", None, 2, "ground truth")
    write_code_polygons(base / "codes.gpkg", gt)
    metrics = train(compose_train([
        "data=custom", f"data.cube_path={files['tif']}", f"data.gt_path={base / 'codes.gpkg'}",
        "data.gt_field=code", "data.patch_size=9", "data.pca.components=15", "model=cnn2d",
        "trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=10", "logger=none", "map=false",
        "callbacks.progress_bar.refresh_rate=0"], base / "run"))
    meta = export(compose_config("export", [f"ckpt_path={metrics['checkpoint']}"], base / "export"))
    assert meta["label_values"] == CODES and meta["wavelengths"][:2] == [410.0, 420.0]
    assert meta["wavelength_units"] == "nm"
    return files | {"model": base / "export" / "model.onnx", "base": base}


def test_an_export_writes_the_codes_and_refuses_other_band_centres(coded_export: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    from hsi.predict import predict

    maps = []
    for stream in ("false", "true"):
        predict(compose_config("predict", [
            f"model_path={coded_export['model']}", "data=custom", f"data.cube_path={coded_export['tif']}",
            "inference.progress=false", f"inference.stream={stream}", "inference.block_rows=16"],
            tmp_path / stream))
        with rasterio.open(tmp_path / stream / "prediction.tif") as ds:
            maps.append(ds.read(1))
            assert ds.tags(1)["CLASS_10"] == "10"
    assert set(np.unique(maps[0])) <= {0, *CODES} and len(np.unique(maps[0])) >= 3
    np.testing.assert_array_equal(maps[0], maps[1])
    shifted = envi_copy(coded_export["tif"], tmp_path / "shifted", 1.5)
    with pytest.raises(DataError, match="band centres of .* differ from those the exported model"):
        predict(compose_config("predict", [
            f"model_path={coded_export['model']}", "data=custom", f"data.cube_path={shifted}",
            "inference.progress=false"], tmp_path / "refused"))
