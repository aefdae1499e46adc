"""Real Salinas-A as a georeferenced GeoTIFF (UTM zone 10N) and its ground truth as polygons
(EPSG:4326), built by the tests themselves from the shared arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hsi.data.readers.io import read_array

UTM = "EPSG:32610"  # Salinas Valley, California
ORIGIN = (620000.0, 4063000.0)  # upper-left corner (m)
PIXEL = 3.7  # AVIRIS low-altitude pixel size (m)
NAMES = {1: "Brocoli_green_weeds_1", 10: "Corn_senesced_green_weeds", 11: "Lettuce_romaine_4wk",
         12: "Lettuce_romaine_5wk", 13: "Lettuce_romaine_6wk", 14: "Lettuce_romaine_7wk"}


def salinas_a_arrays(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    cube = read_array(shared / "salinas_a" / "SalinasA_corrected.mat", None, 3, "cube")
    gt = read_array(shared / "salinas_a" / "SalinasA_gt.mat", None, 2, "ground truth")
    return cube, gt


def shared_salinas_a() -> tuple[np.ndarray, np.ndarray]:
    """Real Salinas-A (cube, ground truth) from ../shared/data; skips the test without it."""
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip("../shared/data is not beside the repository")
    return salinas_a_arrays(SHARED_DATA)


def write_geotiff(path: Path, cube: np.ndarray, nodata_rows: int = 0, crs: str | None = UTM,
                  nodata: float | None = -9999, wavelengths: bool = True) -> Path:
    """(H, W, B) cube -> band-first GeoTIFF; the first `nodata_rows` rows set to nodata."""
    import rasterio
    from rasterio.transform import from_origin

    data = np.ascontiguousarray(np.moveaxis(cube, -1, 0)).astype(np.float32)
    if nodata_rows:
        data[:, :nodata_rows] = nodata
    profile = {"driver": "GTiff", "height": cube.shape[0], "width": cube.shape[1], "count": cube.shape[2],
               "dtype": "float32", "nodata": nodata, "tiled": True, "blockxsize": 16, "blockysize": 16}
    if crs is not None:
        profile |= {"crs": crs, "transform": from_origin(*ORIGIN, PIXEL, PIXEL)}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if wavelengths:
            for band in range(1, cube.shape[2] + 1):
                ds.update_tags(band, wavelength=f"{400 + 10 * band}", wavelength_units="nm")
            ds.descriptions = tuple(f"band {b}" for b in range(1, cube.shape[2] + 1))
    return path


def write_polygons(path: Path, gt: np.ndarray, field: str = "crop", crs: str | None = "EPSG:4326",
                   driver: str | None = None, offset: tuple[float, float] = (0.0, 0.0)) -> int:
    """The ground truth's labelled regions as polygons (rasterio.features.shapes), written in `crs`
    with their class name in `field`; returns the number of polygons."""
    import pyogrio.raw
    import shapely
    from rasterio.features import shapes
    from rasterio.transform import from_origin
    from rasterio.warp import transform_geom

    transform = from_origin(ORIGIN[0] + offset[0], ORIGIN[1] + offset[1], PIXEL, PIXEL)
    geoms, values = [], []
    for geom, value in shapes(gt.astype(np.int32), mask=gt > 0, transform=transform):
        geoms.append(geom)
        values.append(NAMES[int(value)])
    if crs is not None and crs != UTM:
        geoms = transform_geom(UTM, crs, geoms)
    wkb = shapely.to_wkb([shapely.geometry.shape(g) for g in geoms])
    pyogrio.raw.write(path, wkb, [np.array(values, dtype=object)], fields=[field], geometry_type="Polygon",
                      crs=crs, driver=driver)
    return len(geoms)


def salinas_a_files(base: Path, nodata_rows: int = 3) -> dict[str, Path]:
    """Salinas-A as `salinas_a.tif` (UTM, the first `nodata_rows` rows nodata) and `fields.gpkg`
    (EPSG:4326 polygons, attribute `crop`) in `base`; skips the test without ../shared/data."""
    cube, gt = shared_salinas_a()
    files = {"tif": write_geotiff(base / "salinas_a.tif", cube, nodata_rows=nodata_rows),
             "gpkg": base / "fields.gpkg"}
    write_polygons(files["gpkg"], gt)
    return files


def write_code_polygons(path: Path, gt: np.ndarray) -> None:
    """The ground truth's regions as EPSG:4326 polygons whose integer attribute `code` holds the
    source value (what gdal_polygonize writes from a label raster)."""
    import pyogrio.raw
    import shapely
    from rasterio.features import shapes
    from rasterio.transform import from_origin
    from rasterio.warp import transform_geom

    found = list(shapes(gt.astype(np.int32), mask=gt > 0, transform=from_origin(*ORIGIN, PIXEL, PIXEL)))
    geoms = transform_geom(UTM, "EPSG:4326", [g for g, _ in found])
    pyogrio.raw.write(path, shapely.to_wkb([shapely.geometry.shape(g) for g in geoms]),
                      [np.array([int(v) for _, v in found], dtype=np.int32)], fields=["code"],
                      geometry_type="Polygon", crs="EPSG:4326")


def envi_copy(tif: Path, folder: Path, factor: float) -> Path:
    """A GeoTIFF of `write_geotiff` as ENVI (gdal_translate -of ENVI), its header's wavelengths
    (`write_geotiff`'s 410, 420, ... nm) times `factor`."""
    import rasterio
    import rasterio.shutil

    folder.mkdir()
    image = folder / "scene.img"
    rasterio.shutil.copy(tif, image, driver="ENVI")
    for aux in folder.glob("*.aux.xml"):
        aux.unlink()
    header = image.with_suffix(".hdr")
    with rasterio.open(tif) as ds:
        bands = ds.count
    centres = ", ".join(f"{(400 + 10 * b) * factor:g}" for b in range(1, bands + 1))
    header.write_text(header.read_text() + f"wavelength units = Nanometers\nwavelength = {{{centres}}}\n")
    return image
