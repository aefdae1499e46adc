"""GIS inputs read right or refused in one line (issue 29): label rasters in another CRS, nodata
declared as NaN, GDAL scale / offset, the user's class codes, classes that cover no pixel,
wavelengths compared, a transform without a CRS, truncated rasters, a bad data.memmap_dir. On real
Salinas-A made into rasters and polygons here (tests/data/geo_scenes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from hsi.data.readers.raster import raster_info, read_block
from hsi.data.scenes.large_scene import StreamSettings, load_streamed_scene, sample_pixels
from hsi.data.scenes.loading import load_custom_scene
from hsi.errors import ConfigError, DataError
from tests.conftest import compose_config, compose_train
from tests.data.geo_scenes import (
    NAMES,
    ORIGIN,
    PIXEL,
    UTM,
    envi_copy,
    shared_salinas_a,
    write_code_polygons,
    write_geotiff,
    write_polygons,
)

NODATA_ROWS = 3


@pytest.fixture(scope="module")
def salinas(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Salinas-A's arrays and, in a folder of its own, the UTM GeoTIFF (first rows nodata),
    its polygons (EPSG:4326, class names in `crop`), the same polygons with the source codes
    (1, 10..14) as numbers in `code`, and its label raster (the source codes)."""

    base = tmp_path_factory.mktemp("gis_inputs")
    cube, gt = shared_salinas_a()
    files = {"tif": write_geotiff(base / "salinas_a.tif", cube, nodata_rows=NODATA_ROWS),
             "gpkg": base / "fields.gpkg", "codes": base / "codes.gpkg", "labels": base / "labels.tif"}
    write_polygons(files["gpkg"], gt)
    write_code_polygons(files["codes"], gt)
    write_label_raster(files["labels"], gt, UTM, from_origin(*ORIGIN, PIXEL, PIXEL))
    return {"cube": cube, "gt": gt.astype(np.int64), "base": base, **files}


def write_label_raster(path: Path, gt: np.ndarray, crs: str | None, transform) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=gt.shape[0], width=gt.shape[1], count=1,
                       dtype="uint8", crs=crs, transform=transform, nodata=0) as ds:
        ds.write(gt.astype(np.uint8), 1)
    return path


def truth_codes(gt: np.ndarray) -> np.ndarray:
    """The source codes with the raster's nodata rows unlabelled."""
    gt = gt.copy()
    gt[:NODATA_ROWS] = 0
    return gt


@pytest.fixture(scope="module")
def checkpoint(salinas: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn2d trained a few batches on the UTM GeoTIFF and its polygons with numeric codes (the
    run folder keeps its map and label_mapping.json)."""
    from hsi.train import train

    run = tmp_path_factory.mktemp("gis_inputs_run")
    metrics = train(compose_train([
        "data=custom", f"data.cube_path={salinas['tif']}", f"data.gt_path={salinas['codes']}",
        "data.gt_field=code", "data.patch_size=9", "data.pca.components=15", "model=cnn2d", "trainer=cpu",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=10", "logger=none",
        "callbacks.progress_bar.refresh_rate=0"], run))
    return Path(metrics["checkpoint"])


def predict_map(ckpt: Path, raster: Path, out: Path, stream: bool, *extra: str) -> tuple[np.ndarray, dict]:
    from hsi.predict import predict

    summary = predict(compose_config("predict", [
        f"ckpt_path={ckpt}", "data=custom", f"data.cube_path={raster}", "inference.progress=false",
        f"inference.stream={str(stream).lower()}", "inference.block_rows=20", *extra], out))
    with rasterio.open(out / "prediction.tif") as ds:
        return ds.read(1), summary


# -- 1. a label raster in another CRS ----------------------------------------------------------------
def test_a_label_raster_in_another_crs_with_the_same_numbers_is_refused(salinas: dict) -> None:
    """UTM zone 11 with zone 10's transform numbers lies 500 km east: no label may be burnt."""
    path = write_label_raster(salinas["base"] / "zone11.tif", salinas["gt"], "EPSG:32611",
                              from_origin(*ORIGIN, PIXEL, PIXEL))
    with pytest.raises(DataError, match="EPSG:32611.*covers no pixel.*EPSG:32610"):
        load_custom_scene(salinas["tif"], path)


def test_a_label_raster_in_another_crs_is_reprojected_onto_the_cube(salinas: dict) -> None:
    """The label raster warped to EPSG:4326 (as gdalwarp -t_srs EPSG:4326 -r near would) comes back
    onto the cube's UTM grid by nearest neighbour: the source codes, but for boundary pixels."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    gt = salinas["gt"]
    src_transform = from_origin(*ORIGIN, PIXEL, PIXEL)
    transform, width, height = calculate_default_transform(UTM, "EPSG:4326", gt.shape[1], gt.shape[0],
                                                           *_bounds(gt.shape, src_transform))
    warped = np.zeros((height, width), dtype=np.uint8)
    reproject(gt.astype(np.uint8), warped, src_transform=src_transform, src_crs=UTM, dst_transform=transform,
              dst_crs="EPSG:4326", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    path = write_label_raster(salinas["base"] / "wgs84.tif", warped, "EPSG:4326", transform)
    scene = load_custom_scene(salinas["tif"], path)
    expected = truth_codes(gt)
    got = np.asarray(scene.label_values)[scene.labels - 1] * (scene.labels > 0)
    assert scene.label_values == [1, 10, 11, 12, 13, 14]
    agree = (got == expected)[expected > 0].mean()
    assert agree > 0.95, agree


def test_a_label_raster_without_crs_on_the_cubes_grid_is_taken_as_it_is(salinas: dict) -> None:
    same = write_label_raster(salinas["base"] / "same_grid_no_crs.tif", salinas["gt"], None,
                              from_origin(*ORIGIN, PIXEL, PIXEL))
    scene = load_custom_scene(salinas["tif"], same)
    codes = np.asarray([0, *scene.label_values])[scene.labels]
    np.testing.assert_array_equal(codes, truth_codes(salinas["gt"]))
    shifted = write_label_raster(salinas["base"] / "shifted_no_crs.tif", salinas["gt"], None,
                                 from_origin(ORIGIN[0] + 10 * PIXEL, ORIGIN[1], PIXEL, PIXEL))
    with pytest.raises(DataError, match="is in no CRS but the cube .* in EPSG:32610"):
        load_custom_scene(salinas["tif"], shifted)


def _bounds(shape: tuple[int, int], transform) -> tuple[float, float, float, float]:
    west, north = transform * (0, 0)
    east, south = transform * (shape[1], shape[0])
    return west, south, east, north


# -- 2. nodata declared as NaN ---------------------------------------------------------------------
def test_nan_nodata_is_unlabelled_under_nan_policy_fill(salinas: dict) -> None:
    path = write_geotiff(salinas["base"] / "nan_nodata.tif", salinas["cube"], nodata_rows=NODATA_ROWS,
                         nodata=float("nan"))
    numeric = load_custom_scene(salinas["tif"], salinas["gpkg"], gt_field="crop", nan_policy="fill")
    memory = load_custom_scene(path, salinas["gpkg"], gt_field="crop", nan_policy="fill")
    streamed = load_streamed_scene(path, salinas["gpkg"], gt_field="crop", nan_policy="fill", block_rows=7)
    assert not memory.labels[:NODATA_ROWS].any() and not streamed.labels[:NODATA_ROWS].any()
    np.testing.assert_array_equal(memory.labels, numeric.labels)  # as numeric nodata
    np.testing.assert_array_equal(streamed.labels, numeric.labels)
    assert memory.invalid[:NODATA_ROWS].all() and memory.excluded_pixels == 0
    # nodata pixels filled with the band means on both paths, as for numeric nodata
    np.testing.assert_allclose(memory.cube, numeric.cube, rtol=1e-6)
    np.testing.assert_allclose(sample_pixels(streamed, None, block_rows=10),
                               memory.cube.reshape(-1, memory.raw_bands), rtol=1e-5)


# -- 3. GDAL scale / offset ------------------------------------------------------------------------
def _scaled_pair(salinas: dict) -> tuple[Path, Path]:
    """The same physical values as float32 and as int16 with a GDAL scale and offset per band."""
    scale, offset = 0.5, 100.0
    stored = np.round((salinas["cube"].astype(np.float64) - offset) / scale).astype(np.int16)
    physical = (stored * scale + offset).astype(np.float32)
    plain = write_geotiff(salinas["base"] / "physical.tif", physical, nodata=None)
    scaled = salinas["base"] / "scaled_int16.tif"
    data = np.ascontiguousarray(np.moveaxis(stored, -1, 0))
    with rasterio.open(scaled, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype="int16", crs=UTM,
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as ds:
        ds.write(data)
        ds.scales = (scale,) * data.shape[0]
        ds.offsets = (offset,) * data.shape[0]
    return plain, scaled


def test_gdal_scale_and_offset_are_applied_on_every_read_path(salinas: dict, checkpoint: Path,
                                                             tmp_path: Path) -> None:
    plain, scaled = _scaled_pair(salinas)
    with rasterio.open(plain) as a, rasterio.open(scaled) as b:
        np.testing.assert_array_equal(read_block(b, 0, b.height)[0], read_block(a, 0, a.height)[0])
    memory = load_custom_scene(scaled, salinas["gpkg"], gt_field="crop")
    reference = load_custom_scene(plain, salinas["gpkg"], gt_field="crop")
    np.testing.assert_array_equal(memory.cube, reference.cube)
    streamed = load_streamed_scene(scaled, salinas["gpkg"], gt_field="crop", block_rows=9)
    np.testing.assert_allclose(sample_pixels(streamed, None), reference.cube.reshape(-1, 204), rtol=1e-6)
    expected, _ = predict_map(checkpoint, plain, tmp_path / "plain", False)
    for stream in (False, True):
        got, _ = predict_map(checkpoint, scaled, tmp_path / f"scaled_{stream}", stream)
        np.testing.assert_array_equal(got, expected)


# -- 9. a geotransform without a CRS ---------------------------------------------------------------
def test_a_transform_without_crs_is_kept_in_the_scene_and_the_map(salinas: dict, checkpoint: Path,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "no_crs.tif"
    data = np.ascontiguousarray(np.moveaxis(salinas["cube"], -1, 0)).astype(np.float32)
    transform = from_origin(*ORIGIN, PIXEL, PIXEL)
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype="float32", transform=transform) as ds:
        ds.write(data)
    np.save(tmp_path / "gt.npy", salinas["gt"])
    scene = load_custom_scene(path, tmp_path / "gt.npy")
    assert scene.geo is not None and scene.geo["crs"] is None
    assert scene.geo["transform"] == list(transform)[:6]
    labels, summary = predict_map(checkpoint, path, tmp_path / "pred", False)
    with rasterio.open(tmp_path / "pred" / "prediction.tif") as ds:
        assert ds.crs is None and ds.transform == transform
    assert summary["transform"] == list(transform)[:6] and labels.shape == salinas["gt"].shape


# -- 11. a truncated raster, a bad data.memmap_dir ---------------------------------------------------
def test_a_truncated_raster_is_named_in_one_line(salinas: dict, tmp_path: Path) -> None:
    path = tmp_path / "truncated.tif"
    data = np.ascontiguousarray(np.moveaxis(salinas["cube"], -1, 0)).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype="float32", crs=UTM,
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as ds:
        ds.write(data)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    assert raster_info(path).bands == 204  # its header still opens
    for load in (load_custom_scene, load_streamed_scene):
        with pytest.raises(DataError, match=f"{path}.*truncated or damaged.*gdalinfo -checksum") as err:
            load(path, salinas["gpkg"], gt_field="crop")
        assert "\n" not in str(err.value)


def test_a_memmap_dir_that_is_a_file_or_cannot_be_made_is_refused_before_loading(tmp_path: Path) -> None:
    from hsi.data.datamodule import HSIDataModule

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match="data.memmap_dir=.*a_file is a file"):
        StreamSettings(memmap_dir=str(a_file))
    with pytest.raises(ConfigError, match="cannot be created"):
        StreamSettings(memmap_dir=str(a_file / "below"))
    with pytest.raises(ConfigError, match="cannot be created or written"):  # the datamodule, before setup
        HSIDataModule(scene="custom", cube_path="not_read.tif", memmap_dir=str(a_file / "below"))
    assert StreamSettings(memmap_dir=str(tmp_path / "new" / "folder")).memmap_dir  # made when needed
    assert not (tmp_path / "new").exists()
    assert StreamSettings(stream=False, memmap_dir=str(a_file)).stream is False  # never used: not checked


# -- 6. the user's numeric class codes ----------------------------------------------------------------
CODES = [1, 10, 11, 12, 13, 14]


def _check_coded_map(path: Path) -> np.ndarray:
    """prediction.tif's pixel values are the codes, its categories and RAT named by them."""
    import xml.etree.ElementTree as ET

    from hsi.utils.geotiff import read_class_names

    with rasterio.open(path) as ds:
        pixels = ds.read(1)
        table = ds.colormap(1)
        tags = ds.tags(1)
    assert set(np.unique(pixels)) <= {0, *CODES} and len(set(np.unique(pixels)) - {0}) >= 3
    assert {f"CLASS_{v}" for v in CODES} <= set(tags) and tags["CLASS_10"] == "10"
    assert all(table[v][3] == 255 for v in CODES)
    assert read_class_names(path) == [str(v) for v in CODES]
    band = ET.parse(path.with_name(path.name + ".aux.xml")).getroot().find("PAMRasterBand")
    categories = [c.text or "" for c in band.find("CategoryNames")]
    assert categories[10] == "10" and categories[1] == "1" and categories[2] == "" and len(categories) == 15
    rows = band.find("GDALRasterAttributeTable").findall("Row")
    assert [int(r[0].text) for r in rows] == CODES and [r[2].text for r in rows] == [str(v) for v in CODES]
    return pixels


def test_numeric_codes_are_the_classes_source_values_and_the_maps_pixels(salinas: dict, checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    scene = load_custom_scene(salinas["tif"], salinas["codes"], gt_field="code")
    assert scene.label_values == CODES and scene.class_names == [str(v) for v in CODES]
    codes = np.asarray([0, *CODES])[scene.labels]
    truth = truth_codes(salinas["gt"])
    assert (codes == truth)[truth > 0].mean() > 0.99  # boundary pixels may differ
    run = checkpoint.parent.parent
    mapping = json.loads((run / "label_mapping.json").read_text())
    assert [c["source_value"] for c in mapping["classes"]] == CODES
    assert [c["name"] for c in mapping["classes"]] == [str(v) for v in CODES]
    training_map = _check_coded_map(run / "prediction.tif")
    memory, summary = predict_map(checkpoint, salinas["tif"], tmp_path / "memory", False,
                                  f"data.gt_path={salinas['codes']}", "data.gt_field=code")
    streamed, streamed_summary = predict_map(checkpoint, salinas["tif"], tmp_path / "streamed", True,
                                             f"data.gt_path={salinas['codes']}", "data.gt_field=code")
    np.testing.assert_array_equal(_check_coded_map(tmp_path / "memory" / "prediction.tif"), training_map)
    np.testing.assert_array_equal(_check_coded_map(tmp_path / "streamed" / "prediction.tif"), memory)
    labelled = scene.labels > 0  # the accuracy is read back from the codes
    expected = float((memory[labelled] == codes[labelled]).mean())
    assert summary["oa"] == pytest.approx(expected) and streamed_summary["oa"] == pytest.approx(expected)


def test_a_label_raster_records_its_codes_too(salinas: dict) -> None:
    scene = load_custom_scene(salinas["tif"], salinas["labels"])
    assert [c["source_value"] for c in scene.label_mapping()["classes"]] == CODES
    named = load_custom_scene(salinas["tif"], salinas["gpkg"], gt_field="crop")  # text: positions
    assert named.label_values == list(range(1, 7))


# -- 7. a class that covers no pixel ----------------------------------------------------------------
def _with_extra_polygons(salinas: dict, path: Path, boxes: dict[str, tuple[int, int, int, int]]) -> Path:
    """fields.gpkg plus one square per class name, given as (row0, col0, row1, col1) pixels of the
    cube (a negative or large box lies outside it)."""
    import pyogrio.raw
    import shapely
    from rasterio.warp import transform_geom

    _, _, wkb, fields = pyogrio.raw.read(salinas["gpkg"])
    extra, names = [], []
    for name, (r0, c0, r1, c1) in boxes.items():
        box = shapely.geometry.box(ORIGIN[0] + c0 * PIXEL, ORIGIN[1] - r1 * PIXEL, ORIGIN[0] + c1 * PIXEL,
                                   ORIGIN[1] - r0 * PIXEL)
        extra.append(shapely.to_wkb(shapely.geometry.shape(
            transform_geom(UTM, "EPSG:4326", shapely.geometry.mapping(box)))))
        names.append(name)
    pyogrio.raw.write(path, np.array([*wkb, *extra], dtype=object),
                      [np.array([*fields[0], *names], dtype=object)], fields=["crop"],
                      geometry_type="Polygon", crs="EPSG:4326")
    return path


def test_a_class_without_pixels_is_left_out_with_one_line_naming_why(
        salinas: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    path = _with_extra_polygons(salinas, tmp_path / "extra.gpkg", {
        "Far_away": (0, 20_000, 10, 20_010),  # 74 km east of the raster
        "Under_broccoli": (5, 5, 10, 10),  # inside Brocoli_green_weeds_1's region
        "On_nodata": (0, 34, NODATA_ROWS, 42)})  # unlabelled pixels of the nodata rows only
    names = sorted(NAMES.values())
    for load in (load_custom_scene, load_streamed_scene):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            scene = load(salinas["tif"], path, gt_field="crop")
        assert scene.class_names == names and scene.num_classes == 6
        assert scene.class_counts().min() > 0
        lines = [r.getMessage() for r in caplog.records]
        for name, why in (("Far_away", "cover no pixel centre"),
                          ("Under_broccoli", "inside polygons of other"), ("On_nodata", "nodata")):
            assert any(name in line and why in line and "left out" in line for line in lines), (name, lines)
    assert scene.geo["labels"]["dropped_classes"].keys() == {"Far_away", "Under_broccoli"}


# -- 8. band centres compared ------------------------------------------------------------------------
def test_band_centres_that_differ_from_the_models_are_refused(salinas: dict, checkpoint: Path,
                                                             tmp_path: Path) -> None:
    same = envi_copy(salinas["tif"], tmp_path / "same", 1.0)
    assert raster_info(same).wavelengths[:2] == [410.0, 420.0]
    predict_map(checkpoint, same, tmp_path / "ok", False)  # the same bands: predicted
    shifted = envi_copy(salinas["tif"], tmp_path / "shifted", 1.5)
    for stream in (False, True):
        with pytest.raises(DataError, match=r"band centres of .*scene.img differ.*band 1 is at 615.0 nm, "
                                            r"the model's at 410.0 nm \(204 of 204 bands"):
            predict_map(checkpoint, shifted, tmp_path / f"refused_{stream}", stream)


def test_wavelength_tolerance_and_units() -> None:
    from hsi.data.readers.raster import RasterInfo, check_wavelengths

    model = {"wavelengths": [0.41, 0.42, 2.44], "wavelength_units": "Micrometers"}
    info = RasterInfo("x.img", 1, 1, 3, "float32", wavelengths=[411.5, 420.0, 2464.0], wavelength_units="nm")
    check_wavelengths(model, info)  # 1.5 nm and 24 nm: under 1% of 410 nm and of 2440 nm
    check_wavelengths({"wavelengths": None}, info)  # nothing recorded: nothing to compare
    info.wavelengths = [415.0, 420.0, 2464.0]  # 5 nm off at 410 nm
    with pytest.raises(DataError, match="band 1 is at 415.0 nm, the model's at 410.0 nm"):
        check_wavelengths(model, info)
