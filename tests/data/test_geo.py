"""Real scenes in, GIS maps out: real Salinas-A as a georeferenced GeoTIFF (UTM zone 10N) and its
ground truth as polygons in EPSG:4326, both built here from the shared arrays; training from the
polygons, prediction.tif / confidence.tif read back, streamed == in-memory labels, bad inputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from hsi.data.readers.raster import raster_info
from hsi.data.readers.vector_labels import rasterize_labels
from hsi.data.scenes.loading import load_custom_scene
from hsi.data.scenes.scene import reindex_labels
from hsi.errors import DataError
from hsi.maps import class_colours
from hsi.run.checkpoint_raster import NetworkBackend
from hsi.run.raster_driver import RasterSettings, predict_raster
from hsi.utils.geotiff import read_class_names
from tests.conftest import compose_config, compose_train
from tests.data.geo_scenes import (
    NAMES,
    UTM,
    salinas_a_arrays,
    shared_salinas_a,
    write_geotiff,
    write_polygons,
)

NODATA_ROWS = 3  # the raster's first rows are nodata


@pytest.fixture(scope="module")
def geo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:

    base = tmp_path_factory.mktemp("geo")
    cube, gt = shared_salinas_a()
    files = {"tif": write_geotiff(base / "salinas_a.tif", cube, nodata_rows=NODATA_ROWS),
             "plain_tif": write_geotiff(base / "plain.tif", cube, crs=None),
             "gpkg": base / "fields.gpkg", "geojson": base / "fields.geojson",
             "no_crs": base / "no_crs.gpkg", "far": base / "far.gpkg", "base": base}
    write_polygons(files["gpkg"], gt)
    write_polygons(files["geojson"], gt, driver="GeoJSON")
    write_polygons(files["no_crs"], gt, crs=None)  # (a GeoJSON file is EPSG:4326 by definition)
    write_polygons(files["far"], gt, offset=(50_000.0, 0.0))
    np.save(base / "gt.npy", gt)
    return files


def _array_labels(shared: Path) -> tuple[np.ndarray, list[str]]:
    """The ground truth as hsi reads it from the array, class k = k-th sorted class name (the
    order polygons give), with the raster's nodata rows unlabelled."""
    _, gt = salinas_a_arrays(shared)
    gt = gt.astype(np.int64).copy()
    gt[:NODATA_ROWS] = 0
    names = sorted(NAMES.values())
    by_name = np.zeros(gt.max() + 1, dtype=np.int64)
    for value, name in NAMES.items():
        by_name[value] = names.index(name) + 1
    return np.where(gt > 0, by_name[gt], 0), names


# -- raster in, polygons in ---------------------------------------------------------------------------
@pytest.mark.parametrize("vector", ["gpkg", "geojson"])
def test_polygons_in_another_crs_rasterize_to_the_array_labels(geo_files: dict[str, Path], vector: str,
                                                               shared_data: Path) -> None:
    scene = load_custom_scene(geo_files["tif"], geo_files[vector], gt_field="crop")
    truth, names = _array_labels(shared_data)
    assert scene.class_names == names
    report = scene.geo["labels"]
    assert report["reprojected"] and report["vector_crs"] == "EPSG:4326" and report["overlap_pixels"] == 0
    differing = int((scene.labels != truth).sum())  # only boundary pixels may differ: counted
    assert differing <= 0.01 * int((truth > 0).sum()), differing
    assert (scene.labels > 0).sum() >= 0.99 * (truth > 0).sum()


def test_the_raster_keeps_its_georeference_and_nodata_is_unlabelled(geo_files: dict[str, Path]) -> None:
    scene = load_custom_scene(geo_files["tif"], geo_files["gpkg"], gt_field="crop")
    geo = scene.geo
    assert rasterio.crs.CRS.from_wkt(geo["crs"]) == rasterio.crs.CRS.from_string(UTM)
    assert geo["transform"] == [3.7, 0.0, 620000.0, 0.0, -3.7, 4063000.0]
    assert geo["nodata"] == -9999 and geo["wavelengths"][:2] == [410.0, 420.0]
    assert geo["wavelength_units"] == "nm" and geo["band_names"][0] == "band 1"
    assert scene.invalid[:NODATA_ROWS].all() and not scene.invalid[NODATA_ROWS:].any()
    assert not scene.labels[:NODATA_ROWS].any()
    assert np.isfinite(scene.cube).all() and scene.cube[0].max() < 1e4  # nodata filled, not -9999


def test_a_label_raster_on_the_same_grid_works_too(geo_files: dict[str, Path], shared_data: Path) -> None:
    _, gt = salinas_a_arrays(shared_data)
    info = raster_info(geo_files["tif"])
    path = geo_files["base"] / "gt.tif"
    with rasterio.open(path, "w", driver="GTiff", height=gt.shape[0], width=gt.shape[1], count=1,
                       dtype="uint8", crs=UTM, transform=info.affine()) as ds:
        ds.write(gt.astype(np.uint8), 1)
    scene = load_custom_scene(geo_files["tif"], path)
    expected, _ = reindex_labels(np.where(np.arange(gt.shape[0])[:, None] < NODATA_ROWS, 0, gt))
    np.testing.assert_array_equal(scene.labels, expected)


def test_overlapping_polygons_of_different_classes_are_left_unlabelled(geo_files: dict[str, Path],
                                                                      shared_data: Path) -> None:
    import pyogrio.raw
    import shapely
    from rasterio.warp import transform_geom

    meta, _, wkb, fields = pyogrio.raw.read(geo_files["gpkg"])
    # a square of 10 x 10 pixels, class "Zzz", over rows 40-49, cols 40-49 (partly labelled)
    x0, y0 = 620000.0 + 40 * 3.7, 4063000.0 - 40 * 3.7
    square = shapely.geometry.box(x0, y0 - 10 * 3.7, x0 + 10 * 3.7, y0)
    square = shapely.geometry.shape(transform_geom(UTM, "EPSG:4326", shapely.geometry.mapping(square)))
    path = geo_files["base"] / "overlap.gpkg"
    pyogrio.raw.write(path, np.array([*wkb, shapely.to_wkb(square)], dtype=object),
                      [np.array([*fields[0], "Zzz"], dtype=object)], fields=["crop"],
                      geometry_type="Polygon", crs="EPSG:4326")
    made = rasterize_labels(path, "crop", raster_info(geo_files["tif"]))
    truth, _ = _array_labels(shared_data)
    under = truth[40:50, 40:50] > 0
    assert made.report["overlap_pixels"] == int(under.sum()) > 50
    square_class = made.class_names.index("Zzz") + 1
    np.testing.assert_array_equal(made.labels[40:50, 40:50], np.where(under, 0, square_class))


@pytest.mark.parametrize(("case", "words"), [
    ("missing_field", ["no attribute 'class'", "attributes are: crop"]),
    ("no_overlap", ["None of the 6 polygons", "covers a pixel"]),
    ("raster_without_crs", ["no coordinate reference system", "georeferenced raster"]),
    ("vector_without_crs", ["has no coordinate reference system", "Set CRS"]),
])
def test_each_bad_vector_input_gives_one_line(geo_files: dict[str, Path], case: str,
                                              words: list[str]) -> None:
    cube, vector, field = {
        "missing_field": ("tif", "gpkg", "class"), "no_overlap": ("tif", "far", "crop"),
        "raster_without_crs": ("plain_tif", "gpkg", "crop"),
        "vector_without_crs": ("tif", "no_crs", "crop")}[case]
    with pytest.raises(DataError) as error:
        load_custom_scene(geo_files[cube], geo_files[vector], gt_field=field)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_a_bad_vector_input_is_one_line_from_the_command(geo_files: dict[str, Path], tmp_path: Path) -> None:
    from tests.test_bad_inputs import run

    result = run("hsi.train", "data=custom", f"data.cube_path={geo_files['tif']}",
                 f"data.gt_path={geo_files['gpkg']}", "data.gt_field=crops", run_dir=tmp_path / "run")
    assert result.returncode == 1 and "Traceback" not in result.output, result.output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no attribute 'crops'" in errors[0], result.stderr
    assert errors[0].endswith("its attributes are: crop.")
    assert not result.run_dir.exists()


# -- maps out ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def polygon_checkpoint(geo_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn2d trained for one short epoch on Salinas-A from its polygons."""
    from hsi.train import train

    run = tmp_path_factory.mktemp("geo_train")
    metrics = train(compose_train([
        "data=custom", f"data.cube_path={geo_files['tif']}", f"data.gt_path={geo_files['gpkg']}",
        "data.gt_field=crop", "data.patch_size=9", "data.pca.components=15", "model=cnn2d",
        "trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=20", "logger=none",
        "callbacks.progress_bar.refresh_rate=0"], run))
    for name in ("prediction.tif", "confidence.tif", "map.png"):  # the training run's own map
        assert (run / name).is_file(), name
    return Path(metrics["checkpoint"])


def _check_prediction_tif(out: Path, source: Path, class_names: list[str]) -> np.ndarray:
    with rasterio.open(source) as src, rasterio.open(out / "prediction.tif") as ds:
        assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == src.shape
        assert ds.count == 1 and ds.dtypes[0] == "uint8" and ds.nodata == 0
        colours = class_colours(len(class_names))
        table = ds.colormap(1)
        for k in range(1, len(class_names) + 1):
            assert table[k][:3] == tuple(colours[k])
        labels = ds.read(1)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert read_class_names(out / "prediction.tif") == class_names
    band = ET.parse(out / "prediction.tif.aux.xml").getroot().find("PAMRasterBand")
    assert [c.text for c in band.find("CategoryNames")] == ["no data", *class_names]
    assert band.find("GDALRasterAttributeTable") is not None
    assert (labels[:NODATA_ROWS] == 0).all() and (labels[NODATA_ROWS:] > 0).all()
    with rasterio.open(out / "confidence.tif") as ds:
        confidence = ds.read(1)
        assert ds.dtypes[0] == "float32" and ds.crs is not None and ds.nodata == 0
    assert (confidence[:NODATA_ROWS] == 0).all()
    assert (confidence[NODATA_ROWS:] >= 1 / len(class_names) - 1e-6).all() and confidence.max() <= 1
    return labels


def test_predict_writes_georeferenced_maps(polygon_checkpoint: Path, geo_files: dict[str, Path],
                                           tmp_path: Path) -> None:
    from hsi.predict import predict

    out = tmp_path / "pred"
    summary = predict(compose_config("predict", [
        f"ckpt_path={polygon_checkpoint}", "data=custom", f"data.cube_path={geo_files['tif']}",
        "inference.progress=false"], out))
    names = sorted(NAMES.values())
    labels = _check_prediction_tif(out, geo_files["tif"], names)
    assert summary["streamed"] is False and summary["nodata_pixels"] == NODATA_ROWS * 86
    assert json.loads((out / "prediction.json").read_text())["files"] == ["prediction.tif", "confidence.tif"]
    assert not (out / "prediction.npy").exists()
    with rasterio.open(polygon_checkpoint.parent.parent / "prediction.tif") as ds:  # the training map
        np.testing.assert_array_equal(ds.read(1), labels)
    streamed = tmp_path / "streamed"  # the checkpoint's own raster (no data=), streamed
    summary = predict(compose_config("predict", [
        f"ckpt_path={polygon_checkpoint}", "inference.stream=true", "inference.block_rows=7",
        "inference.tile_rows=7",
        "inference.progress=false"], streamed))
    assert summary["streamed"] is True
    np.testing.assert_array_equal(_check_prediction_tif(streamed, geo_files["tif"], names), labels)


def _random_net(bands: int, patch: int, classes: int) -> torch.nn.Module:
    from hsi.models import CNN2D

    torch.manual_seed(0)
    net = CNN2D(bands, patch, classes)
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():  # non-trivial running statistics, so eval-mode batch norm is exercised
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # spread the logits: a map of several classes with near ties among them
        last.weight.mul_(200)
    return net.eval()


@pytest.mark.parametrize(("eval_path", "tile_rows", "block_rows", "batch_size"),
                         [("dense", 6, 10, 64), ("window", 128, 10, 50)])
def test_streamed_labels_equal_in_memory_labels(geo_files: dict[str, Path], tmp_path: Path, eval_path: str,
                                                tile_rows: int, block_rows: int, batch_size: int) -> None:
    """83 rows: not a multiple of the block; the dense path and the window path."""
    from hsi.data.preprocessing import fit_pca

    scene = load_custom_scene(geo_files["tif"], geo_files["gpkg"], gt_field="crop")
    pca = fit_pca(scene.cube.reshape(-1, scene.raw_bands), 12)
    state = {"raw_bands": scene.raw_bands, "scene": "custom", "pca": pca.to_tensors(), "patch_size": 9,
             "class_names": scene.class_names}
    net = _random_net(12, 9, scene.num_classes)
    backend = NetworkBackend(net, state, eval_path)
    options = {"batch_size": batch_size, "tile_rows": tile_rows, "progress": False}
    memory = predict_raster(backend, geo_files["tif"], tmp_path / "memory", False, RasterSettings(**options))
    streamed = predict_raster(backend, geo_files["tif"], tmp_path, True,
                              RasterSettings(block_rows=block_rows, **options))
    assert streamed.block_rows < 83 and 83 % streamed.block_rows != 0
    assert memory.path == streamed.path == eval_path
    with rasterio.open(tmp_path / "prediction.tif") as ds:
        labels = ds.read(1)
    with rasterio.open(tmp_path / "confidence.tif") as ds:
        confidence = ds.read(1)
    assert len(np.unique(memory.labels)) >= 3  # a map with several classes, not a constant
    np.testing.assert_array_equal(labels, memory.labels)
    np.testing.assert_array_equal(confidence, memory.confidence)


@pytest.mark.slow
def test_training_from_polygons_matches_training_from_the_array(shared_data: Path,
                                                               tmp_path: Path) -> None:
    """Same OA from the polygons (EPSG:4326) on the GeoTIFF as from the .mat arrays, within the
    spread over seeds."""
    from hsi.train import train

    cube, gt = salinas_a_arrays(shared_data)
    raster = write_geotiff(tmp_path / "salinas_a.tif", cube)
    write_polygons(tmp_path / "fields.gpkg", gt)
    common = ["data.patch_size=9", "data.pca.components=15", "model=cnn2d", "trainer=cpu",
              "trainer.max_epochs=4", "logger=none", "map=false", "callbacks.progress_bar.refresh_rate=0"]
    sources = {
        "polygons": ["data=custom", f"data.cube_path={raster}", f"data.gt_path={tmp_path / 'fields.gpkg'}",
                     "data.gt_field=crop"],
        "array": ["data=custom", f"data.cube_path={shared_data / 'salinas_a' / 'SalinasA_corrected.mat'}",
                  f"data.gt_path={shared_data / 'salinas_a' / 'SalinasA_gt.mat'}"]}
    oa = {name: [train(compose_train([*options, *common, f"seed={seed}"], tmp_path / f"{name}_{seed}"))["oa"]
                 for seed in (0, 1, 2)] for name, options in sources.items()}
    print("OA per seed:", oa)
    spread = max(np.ptp(oa["polygons"]), np.ptp(oa["array"]), 0.005)
    assert abs(np.mean(oa["polygons"]) - np.mean(oa["array"])) <= spread, oa


def test_an_exported_graph_writes_the_same_georeferenced_maps(polygon_checkpoint: Path,
                                                              geo_files: dict[str, Path],
                                                              tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from hsi.deploy.export import export_checkpoint
    from hsi.predict import predict

    export_checkpoint(polygon_checkpoint, tmp_path / "export")
    out = tmp_path / "pred_onnx"
    summary = predict(compose_config("predict", [
        f"model_path={tmp_path / 'export' / 'model.onnx'}", "data=custom",
        f"data.cube_path={geo_files['tif']}", "inference.progress=false"], out))
    assert summary["eval_path"].startswith("onnx-")
    labels = _check_prediction_tif(out, geo_files["tif"], sorted(NAMES.values()))
    with rasterio.open(polygon_checkpoint.parent.parent / "prediction.tif") as ds:  # the checkpoint's map
        reference = ds.read(1)
    away = slice(NODATA_ROWS + 9, None)  # nodata is filled differently (band means vs zero after PCA)
    assert (labels[away] == reference[away]).mean() >= 0.99
    streamed = tmp_path / "pred_onnx_streamed"  # 83 rows in blocks of 10 (two 5-row tiles)
    summary = predict(compose_config("predict", [
        f"model_path={tmp_path / 'export' / 'model.onnx'}", "data=custom",
        f"data.cube_path={geo_files['tif']}", "inference.progress=false", "inference.stream=true",
        "inference.block_rows=10",
        "inference.tile_rows=5"], streamed))
    assert summary["streamed"] and summary["block_rows"] == 10
    in_memory = tmp_path / "pred_onnx_tiles_5"
    predict(compose_config("predict", [
        f"model_path={tmp_path / 'export' / 'model.onnx'}", "data=custom",
        f"data.cube_path={geo_files['tif']}", "inference.progress=false", "inference.stream=false",
        "inference.tile_rows=5"], in_memory))
    for name in ("prediction.tif", "confidence.tif"):
        with rasterio.open(streamed / name) as a, rasterio.open(in_memory / name) as b:
            np.testing.assert_array_equal(a.read(1), b.read(1))
    _check_prediction_tif(streamed, geo_files["tif"], sorted(NAMES.values()))


def test_the_geotiff_writer_needs_no_torch(geo_files: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    from hsi.run.config import PROJECT_ROOT

    script = f"""
import sys
class NoTorch:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "lightning"):
            raise ImportError("no torch here")
sys.meta_path.insert(0, NoTorch())
import numpy as np, rasterio
from hsi.maps import class_colours
from hsi.utils.geotiff import read_class_names, write_class_map
with rasterio.open({str(geo_files["tif"])!r}) as ds:
    geo = {{"crs": ds.crs.to_wkt(), "transform": list(ds.transform)[:6]}}
    labels = (np.arange(ds.height * ds.width) % 4).reshape(ds.height, ds.width)
write_class_map({str(tmp_path / "p.tif")!r}, labels, geo, ["a", "b", "c"], class_colours(3))
assert read_class_names({str(tmp_path / "p.tif")!r}) == ["a", "b", "c"]
print("written")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0 and "written" in done.stdout, done.stderr[-2000:]
    with rasterio.open(tmp_path / "p.tif") as ds, rasterio.open(geo_files["tif"]) as src:
        assert ds.crs == src.crs and ds.transform == src.transform


def test_an_envi_image_with_map_info_reads_like_the_geotiff(geo_files: dict[str, Path],
                                                            shared_data: Path) -> None:
    cube, _ = salinas_a_arrays(shared_data)
    info = raster_info(geo_files["tif"])
    path = geo_files["base"] / "salinas_a.img"
    with rasterio.open(path, "w", driver="ENVI", height=cube.shape[0], width=cube.shape[1],
                       count=cube.shape[2], dtype="int16", crs=UTM, transform=info.affine()) as ds:
        ds.write(np.moveaxis(cube, -1, 0))
        ds.update_tags(ns="ENVI", wavelength="{" + ", ".join(str(400 + 10 * b) for b in range(1, 205)) + "}",
                       wavelength_units="Nanometers")
    envi = load_custom_scene(path.with_suffix(".hdr"), geo_files["gpkg"], gt_field="crop")
    tif = load_custom_scene(geo_files["tif"], geo_files["gpkg"], gt_field="crop")
    assert envi.geo["transform"] == tif.geo["transform"] and envi.geo["wavelengths"] == tif.geo["wavelengths"]
    rows = slice(NODATA_ROWS, None)  # the GeoTIFF's first rows are nodata, the ENVI image has none
    np.testing.assert_array_equal(envi.labels[rows], tif.labels[rows])
    np.testing.assert_array_equal(envi.cube[rows], tif.cube[rows])


@pytest.mark.parametrize(("override", "words"), [("inference.stream=maybe", "inference.stream='maybe'"),
                                                 ("inference.block_rows=0", "block_rows")])
def test_bad_streaming_settings_are_refused(override: str, words: str, tmp_path: Path) -> None:
    from hsi.errors import ConfigError
    from hsi.run.validation import check_predict_config

    with pytest.raises(ConfigError, match=words):
        check_predict_config(compose_config("predict", ["ckpt_path=x.ckpt", override], tmp_path))
