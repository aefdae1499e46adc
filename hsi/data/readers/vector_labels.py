"""Labels drawn as polygons (GeoJSON, GeoPackage, Shapefile, ... read with pyogrio), rasterized
onto a raster's grid.

`data.gt_path=<vector file> data.gt_field=<attribute>`: the attribute holds each polygon's class
(names or numbers). Polygons are reprojected to the raster's CRS and burnt at pixel centres;
classes are the attribute's distinct values, sorted; whole-number codes (1..65535) stay the
classes' source values (the map's pixel values). A pixel inside polygons of two different
classes is left unlabelled (never decided by file order) and counted; a class left with no pixel
is dropped with a warning naming it and why.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.readers.raster import RasterInfo, open_raster
from hsi.errors import DataError, HsiError, MissingFileError, first_line

log = logging.getLogger(__name__)

VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".gml", ".kml", ".sqlite", ".geojsonl")


def is_vector_path(path: str | Path | None) -> bool:
    return path is not None and Path(path).suffix.lower() in VECTOR_SUFFIXES


MAX_CODE = 65535  # the largest class code a map keeps as its pixel value (uint16)


@dataclass
class VectorLabels:
    """Rasterized polygon labels: (H, W) int64 classes 1..K (0 = none), the class names in label
    order, each class's source value (`values`: the attribute's codes when they are whole numbers
    from 1 to `MAX_CODE`, else the positions 1..K) and what happened on the way."""

    labels: np.ndarray
    class_names: list[str]
    report: dict[str, Any] = field(default_factory=dict)
    values: list[int] = field(default_factory=list)

    def source_labels(self) -> np.ndarray:
        """The labels as source values (`values`; 0 = none), as a label raster would hold them."""
        return np.asarray([0, *self.values], dtype=np.int64)[self.labels]


def class_codes(classes: list[Any]) -> list[int] | None:
    """The classes as codes a map can keep as pixel values: whole numbers from 1 to `MAX_CODE`
    (the attribute's numbers), else None (text, fractions, 0 or negative: positions are used)."""
    if not classes or any(isinstance(v, str) for v in classes):
        return None
    if all(float(v).is_integer() and 1 <= v <= MAX_CODE for v in classes):
        return [int(v) for v in classes]
    return None


def _pyogrio():
    try:
        import pyogrio
    except ImportError as err:  # pragma: no cover - pyogrio is a default dependency
        raise DataError("Polygon labels need pyogrio: pip install -e . (or pip install pyogrio).") from err
    return pyogrio


def read_polygons(path: str | Path, gt_field: str | None) -> tuple[list[dict], list[Any], str]:
    """(GeoJSON geometries, attribute values, CRS as WKT) of a vector file; one-line errors."""
    import shapely

    pyogrio = _pyogrio()
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} (data.gt_path) is a folder: give the vector file in it (GeoPackage, "
                        f"GeoJSON or Shapefile .shp).")
    if not path.is_file():
        raise MissingFileError(f"File not found: {path} (data.gt_path). Check the path.")
    try:
        info = pyogrio.read_info(path)
    except Exception as err:  # noqa: BLE001 - GDAL's errors for unreadable files
        if is_raster(path):
            raise DataError(f"{path} is a raster, not polygons: a label raster's pixel values are its "
                            f"classes, so leave data.gt_field out (data.gt_path={path} alone).") from None
        raise DataError(f"Cannot read {path} as a vector file ({first_line(err)}): give a GeoJSON, "
                        f"GeoPackage or Shapefile with polygons.") from err
    if not info.get("features"):
        raise DataError(f"{path} holds no features: draw the labelled polygons in it (or save the layer "
                        f"that holds them) and give that file as data.gt_path.")
    fields = [str(f) for f in info["fields"]]
    if not gt_field:
        raise DataError(f"data.gt_path={path} holds polygons: name the attribute with the class as "
                        f"data.gt_field=<attribute>; its attributes are: {', '.join(fields) or 'none'}.")
    if gt_field not in fields:
        raise DataError(f"{path} has no attribute {gt_field!r} (data.gt_field); its attributes are: "
                        f"{', '.join(fields) or 'none'}.")
    if not info.get("crs"):
        raise DataError(f"{path} has no coordinate reference system, so its polygons cannot be placed "
                        f"on the raster; set it (QGIS: Layer > Set CRS, or ogr2ogr -a_srs EPSG:<code>).")
    _, _, geometry, values = pyogrio.raw.read(path, columns=[gt_field])
    crs = str(info["crs"])
    shapes = shapely.from_wkb(geometry)
    return [None if s is None or s.is_empty else shapely.geometry.mapping(s) for s in shapes], \
        list(values[0]), crs


def is_raster(path: Path) -> bool:
    """Whether GDAL opens `path` as a raster."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning
            open_raster(path).close()
    except HsiError:
        return False
    return True


def class_values(values: list[Any]) -> list[Any]:
    """The attribute's distinct class values, sorted (numbers numerically, else as text);
    missing values (None, NaN, empty text) are not classes."""
    present = [v for v in values if not _missing(v)]
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in present):
        return sorted({_number(v) for v in present})
    return sorted({str(v) for v in present})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def _number(value: Any) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() else value


def rasterize_labels(path: str | Path, gt_field: str | None, grid: RasterInfo) -> VectorLabels:
    """Polygons of `path` burnt onto `grid` (pixel centres), class k = k-th sorted attribute value.

    Long on purpose: one linear sequence (read, check fields and CRS, reproject, burn, overlaps), each
    check a one-line error.
    """
    from rasterio.crs import CRS
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom

    if not grid.georeferenced:
        raise DataError(f"The cube {grid.path} has no coordinate reference system or geotransform, so "
                        f"the polygons of {path} cannot be placed on it; give a georeferenced raster "
                        f"(GeoTIFF / ENVI with map info), or labels as an array on the cube's grid.")
    geometries, values, vector_crs = read_polygons(path, gt_field)
    raster_crs = CRS.from_wkt(grid.crs)
    source_crs = CRS.from_user_input(vector_crs)
    kinds = {"Polygon", "MultiPolygon"}
    keep = [i for i, g in enumerate(geometries) if g is not None and g["type"] in kinds
            and not _missing(values[i])]
    skipped = len(geometries) - len(keep)
    if skipped:
        log.warning("%s: %d of %d features are not polygons or have no %s value; they are left out.",
                    path, skipped, len(geometries), gt_field)
    classes = class_values([values[i] for i in keep])
    if not classes:
        raise DataError(f"{path} holds no polygon with a {gt_field!r} value; draw polygons and give each "
                        f"its class in that attribute.")
    key = (lambda v: _number(v)) if not isinstance(classes[0], str) else str
    index = {v: k for k, v in enumerate(classes, start=1)}
    shapes = [geometries[i] for i in keep]
    if source_crs != raster_crs:
        try:
            shapes = transform_geom(source_crs, raster_crs, shapes)
        except Exception as err:  # noqa: BLE001 - PROJ's errors for coordinates outside the CRS
            raise DataError(f"The polygons of {path} cannot be reprojected from {source_crs.to_string()} "
                            f"to the cube's CRS ({first_line(err)}): their coordinates do not fit the "
                            f"CRS the file declares; set the right CRS on the file.") from err
    shape = (grid.height, grid.width)
    transform = grid.affine()
    count = np.zeros(shape, dtype=np.uint8)
    labels = np.zeros(shape, dtype=np.int64)
    by_class: dict[int, list[dict]] = {}
    for geom, i in zip(shapes, keep):
        by_class.setdefault(index[key(values[i])], []).append(geom)
    burnt_pixels = np.zeros(len(classes) + 1, dtype=np.int64)
    for k, geoms in sorted(by_class.items()):
        burnt = rasterize(geoms, out_shape=shape, transform=transform, fill=0, default_value=1,
                          dtype="uint8").astype(bool)
        count += burnt
        labels[burnt] = k
        burnt_pixels[k] = int(burnt.sum())
    overlap = count > 1
    labels[overlap] = 0
    n_overlap = int(overlap.sum())
    if n_overlap:
        log.warning("%s: %d pixels lie inside polygons of different classes; they are left unlabelled.",
                    path, n_overlap)
    if not labels.any():
        bounds = _bounds(shapes)
        raise DataError(f"None of the {len(shapes)} polygons of {path} covers a pixel centre of the cube "
                        f"{grid.path} (polygons span {bounds} in the cube's CRS, the cube "
                        f"{_grid_bounds(grid)}): check that they belong to this scene.")
    labels, classes, dropped = _drop_empty_classes(path, labels, classes, burnt_pixels)
    names = [str(v) for v in classes]
    report = {"source": str(path), "field": gt_field, "polygons": len(shapes), "skipped_features": skipped,
              "overlap_pixels": n_overlap, "vector_crs": source_crs.to_string(),
              "reprojected": source_crs != raster_crs, "dropped_classes": dropped,
              "pixels_per_class": dict(zip(names, np.bincount(labels.ravel(),
                                                               minlength=len(names) + 1)[1:].tolist()))}
    codes = class_codes(classes)
    return VectorLabels(labels=labels, class_names=names, report=report,
                        values=codes or list(range(1, len(names) + 1)))


def _drop_empty_classes(path: str | Path, labels: np.ndarray, classes: list[Any],
                        burnt_pixels: np.ndarray) -> tuple[np.ndarray, list[Any], dict[str, str]]:
    """Classes no pixel is left for, left out with one line each naming why (their polygons cover
    no pixel centre of the raster, or only pixels inside other classes' polygons); the others
    renumbered 1..K in order. Returns (labels, kept classes, {dropped class: why})."""
    left = np.bincount(labels.ravel(), minlength=len(classes) + 1)
    dropped = {}
    for k, value in enumerate(classes, start=1):
        if left[k] == 0:
            why = ("its polygons cover no pixel centre of the raster" if burnt_pixels[k] == 0 else
                   f"all its {int(burnt_pixels[k])} pixels lie inside polygons of other classes")
            dropped[str(value)] = why
            log.warning("%s: class %r is left out (not trained): %s.", path, str(value), why)
    if not dropped:
        return labels, classes, dropped
    kept = [k for k in range(1, len(classes) + 1) if left[k] > 0]
    renumber = np.zeros(len(classes) + 1, dtype=np.int64)
    renumber[kept] = np.arange(1, len(kept) + 1)
    return renumber[labels], [classes[k - 1] for k in kept], dropped


def _bounds(shapes: list[dict]) -> str:
    import shapely

    geoms = [shapely.geometry.shape(s) for s in shapes]
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    return f"x {x0:.1f}..{x1:.1f}, y {y0:.1f}..{y1:.1f}"


def _grid_bounds(grid: RasterInfo) -> str:
    t = grid.affine()
    xs, ys = zip(*(t * (c, r) for c, r in ((0, 0), (grid.width, grid.height))))
    return f"x {min(xs):.1f}..{max(xs):.1f}, y {min(ys):.1f}..{max(ys):.1f}"
