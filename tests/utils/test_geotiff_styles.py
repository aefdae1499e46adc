"""The maps a GIS user opens (issue 29, items 5 and 10): real Salinas-A classes written as
prediction.tif / confidence.tif, in one piece and block by block, each with the QGIS style QGIS
loads by itself (parsed here; drawn by QGIS itself when PyQGIS is installed), a colour table of
the classes only, a raster attribute table with pixel counts, the floating-point predictor for
the probabilities, and overviews only on maps larger than one tile."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from hsi.maps import class_colours
from hsi.run.config import PROJECT_ROOT
from hsi.utils.geotiff import MapWriters, write_class_map, write_confidence
from hsi.utils.map_styles import hex_colour
from tests.data.geo_scenes import NAMES, ORIGIN, PIXEL, UTM, shared_salinas_a

CLASS_NAMES = sorted(NAMES.values())
QGIS_PYTHON = Path("/usr/bin/python3")


@pytest.fixture(scope="module")
def salinas_map(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray, dict]:
    """Salinas-A's ground truth as a map (classes 1..6 in sorted-name order, 0 unlabelled), a
    confidence map, and the UTM georeference of tests/data/geo_scenes.py."""

    _, gt = shared_salinas_a()
    by_value = np.zeros(int(gt.max()) + 1, dtype=np.uint8)
    for value, name in NAMES.items():
        by_value[value] = CLASS_NAMES.index(name) + 1
    labels = by_value[gt]
    rng = np.random.default_rng(0)
    confidence = np.where(labels > 0, rng.uniform(0.4, 1.0, labels.shape), 0).astype(np.float32)
    geo = {"crs": CRS.from_string(UTM).to_wkt(), "transform": list(from_origin(*ORIGIN, PIXEL, PIXEL))[:6]}
    return labels, confidence, geo


def _write(folder: Path, labels: np.ndarray, confidence: np.ndarray, geo: dict, streamed: bool) -> Path:
    colours = class_colours(len(CLASS_NAMES))
    if streamed:  # as run/raster_driver.py writes them: row blocks of 7
        with MapWriters(folder, *labels.shape, geo, CLASS_NAMES, colours, progress=False) as maps:
            for start in range(0, labels.shape[0], 7):
                maps.write(start, labels[start:start + 7], confidence[start:start + 7])
    else:  # a whole map at once
        write_class_map(folder / "prediction.tif", labels, geo, CLASS_NAMES, colours)
        write_confidence(folder / "confidence.tif", confidence, geo)
    return folder


@pytest.mark.parametrize("streamed", [False, True])
def test_prediction_qml_is_a_paletted_style_of_the_classes(salinas_map, tmp_path: Path,
                                                           streamed: bool) -> None:
    labels, confidence, geo = salinas_map
    folder = _write(tmp_path, labels, confidence, geo, streamed)
    root = ET.parse(folder / "prediction.qml").getroot()
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [e.get("label") for e in entries] == CLASS_NAMES  # one per class, no value 0, no 7..255
    assert [int(e.get("value")) for e in entries] == list(range(1, len(CLASS_NAMES) + 1))
    colours = class_colours(len(CLASS_NAMES))
    assert [e.get("color") for e in entries] == [hex_colour(c) for c in colours[1:]]
    assert not list(folder.glob(".*part*")), "a half-written file is left"


@pytest.mark.parametrize("streamed", [False, True])
def test_confidence_qml_is_a_pseudocolour_style_from_0_to_1(salinas_map, tmp_path: Path,
                                                            streamed: bool) -> None:
    folder = _write(tmp_path, *salinas_map, streamed)
    renderer = ET.parse(folder / "confidence.qml").getroot().find("pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor"
    assert (float(renderer.get("classificationMin")), float(renderer.get("classificationMax"))) == (0, 1)
    shader = renderer.find("rastershader/colorrampshader")
    values = [float(item.get("value")) for item in shader.findall("item")]
    assert shader.get("colorRampType") == "INTERPOLATED" and values[0] == 0 and values[-1] == 1
    assert values == sorted(values)


def test_the_colour_table_gdal_reads_covers_the_classes_only(salinas_map, tmp_path: Path) -> None:
    labels, confidence, geo = salinas_map
    folder = _write(tmp_path, labels, confidence, geo, streamed=False)
    with rasterio.open(folder / "prediction.tif") as ds:
        table = ds.colormap(1)
    assert sorted(table) == list(range(len(CLASS_NAMES) + 1))  # 0 (no data) and the 6 classes, not 256
    assert table[0][3] == 0
    colours = class_colours(len(CLASS_NAMES))
    assert all(table[k] == (*colours[k], 255) for k in range(1, len(CLASS_NAMES) + 1))
    (folder / "prediction.tif.aux.xml").unlink()  # the file alone still carries the colours
    with rasterio.open(folder / "prediction.tif") as ds:
        assert ds.colormap(1)[3] == (*colours[3], 255)


@pytest.mark.parametrize("streamed", [False, True])
def test_the_attribute_table_counts_each_class_pixels(salinas_map, tmp_path: Path, streamed: bool) -> None:
    labels, confidence, geo = salinas_map
    folder = _write(tmp_path, labels, confidence, geo, streamed)
    root = ET.parse(folder / "prediction.tif.aux.xml").getroot()
    table = root.find("PAMRasterBand/GDALRasterAttributeTable")
    fields = [(f.findtext("Name"), int(f.findtext("Usage"))) for f in table.findall("FieldDefn")]
    assert ("Count", 1) in fields  # GFU_PixelCount
    column = [name for name, _ in fields].index("Count")
    counts = {int(row[0].text): int(row[column].text) for row in table.findall("Row")}
    expected = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES) + 1)
    assert counts == {k: int(expected[k]) for k in range(1, len(CLASS_NAMES) + 1)}
    assert counts[CLASS_NAMES.index("Lettuce_romaine_5wk") + 1] == 1525  # Salinas-A's class 13


def test_confidence_uses_the_floating_point_predictor(salinas_map, tmp_path: Path) -> None:
    folder = _write(tmp_path, *salinas_map, streamed=False)
    with rasterio.open(folder / "confidence.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"
        np.testing.assert_array_equal(ds.read(1), salinas_map[1])


def test_overviews_only_beyond_one_tile(salinas_map, tmp_path: Path) -> None:
    labels, confidence, geo = salinas_map  # 83 x 86: one tile, no overview
    folder = _write(tmp_path, labels, confidence, geo, streamed=False)
    with rasterio.open(folder / "prediction.tif") as ds:
        assert ds.overviews(1) == []
    large = np.tile(labels, (4, 4))  # 332 x 344: more than one 256-pixel tile
    write_class_map(tmp_path / "large.tif", large, geo, CLASS_NAMES, class_colours(len(CLASS_NAMES)))
    with rasterio.open(tmp_path / "large.tif") as ds:
        assert ds.overviews(1) == [2]


def _has_pyqgis() -> bool:
    if not QGIS_PYTHON.is_file():
        return False
    return subprocess.run([str(QGIS_PYTHON), "-c", "import qgis.core"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_pyqgis(), reason="PyQGIS (Debian's python3-qgis) is not installed")
def test_qgis_draws_the_maps_from_their_styles(salinas_map, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    folder = _write(tmp_path / "run", *salinas_map, streamed=True)
    done = subprocess.run([str(QGIS_PYTHON), str(PROJECT_ROOT / "bench" / "qgis_screenshot.py"), "--render",
                           "--run", str(folder), "--out", str(tmp_path / "img")],
                          capture_output=True, text=True, timeout=300, env={"QT_QPA_PLATFORM": "offscreen",
                                                                             "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"paletted renderer, {len(CLASS_NAMES)} classes: {', '.join(CLASS_NAMES)}" in done.stdout
    assert f"without prediction.qml: paletted renderer, {len(CLASS_NAMES) + 1} entries" in done.stdout
    assert (tmp_path / "img" / "qgis_prediction.png").stat().st_size > 10_000
