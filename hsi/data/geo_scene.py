"""A `Scene` from a raster read through GDAL, its labels from a label raster or from polygons.

Which files take this path (`uses_gdal`): every raster with a CRS, a geotransform (a transform
without a CRS is kept, and the maps carry it) or a nodata value,
any format only GDAL reads, and any cube whose labels are polygons. Files without georeference
that `hsi.data.io` reads (.mat, .npy, .npz, plain TIFF and ENVI) keep that path unchanged.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.io import envi_header, read_array
from hsi.data.raster import (
    ARRAY_SUFFIXES,
    RasterInfo,
    gdal_path,
    info_of,
    open_raster,
    read_block_masks,
    read_label_raster,
)
from hsi.data.scene import Scene, build_scene
from hsi.data.vector_labels import is_vector_path, rasterize_labels
from hsi.errors import DataError, HsiError

log = logging.getLogger(__name__)


def uses_gdal(cube_path: str | Path | None, gt_path: str | Path | None = None,
              gt_field: str | None = None) -> bool:
    """Whether a custom scene is read through rasterio (see the module's docstring)."""
    if cube_path is None or Path(cube_path).suffix.lower() in ARRAY_SUFFIXES:
        return False
    if gt_field is not None or is_vector_path(gt_path):
        return True
    path = Path(cube_path)
    others_read_it = path.suffix.lower() in (".tif", ".tiff") or envi_header(path) is not None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_raster(path) as ds:
                info = info_of(ds)
    except HsiError:
        return False  # not a raster GDAL reads: hsi.data.io says which files are supported
    return info.transform is not None or info.crs is not None or info.nodata is not None or \
        not others_read_it


def load_raster_scene(cube_path: str | Path, gt_path: str | Path | None = None,
                      gt_field: str | None = None, class_names: Sequence[str] | None = None,
                      name: str = "custom", ignore_labels: Sequence[int] | None = None,
                      nan_policy: str = "exclude") -> Scene:
    """A scene from a raster and a label raster or vector file (`gt_field` names its class attribute).

    Nodata pixels are unlabelled (left out of training and evaluation) and filled with band means
    as NaN pixels are; the scene keeps the raster's georeference (`Scene.geo`) and nodata mask.
    Long on purpose: one linear sequence (read, nodata, labels, checks), each step a few lines.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning: said in our own words below
        with open_raster(cube_path) as ds:
            info = info_of(ds)
            cube, nodata, nonfinite = read_block_masks(ds, 0, ds.height)
    invalid = nodata | nonfinite  # nodata: unlabelled; other NaN / inf pixels: data.nan_policy
    gt, class_names, label_report = raster_labels(info, cube_path, gt_path, gt_field, class_names, name)
    polygons = label_report is not None
    if nodata.any():
        good = ~invalid
        sums = cube.sum(axis=(0, 1), where=good[..., None], dtype=np.float64)
        cube[nodata] = (sums / max(int(good.sum()), 1)).astype(np.float32)
        gt = np.where(nodata, 0, gt)
        log.info("Scene %r: %d nodata pixels left out (unlabelled) and filled with band means.",
                 name, int(nodata.sum()))
    values = list(range(1, len(class_names) + 1)) if polygons else None  # a class may burn no pixel
    scene = build_scene(name, cube, gt, class_names=class_names, label_values=values,
                        ignore_labels=ignore_labels, nan_policy=nan_policy)
    scene.geo, scene.invalid = raster_geo(info, cube_path, label_report), invalid
    return scene


def raster_geo(info: Any, cube_path: str | Path, label_report: dict[str, Any] | None) -> dict[str, Any]:
    """What a scene read from a raster keeps of it: CRS, transform, nodata, wavelengths (`info`),
    the path GDAL opened and, for polygon labels, how they were burnt."""
    geo = info.geo()
    geo["gdal_path"] = str(gdal_path(cube_path))
    if label_report is not None:
        geo["labels"] = label_report
    return geo


def raster_labels(info: RasterInfo, cube_path: str | Path, gt_path: str | Path | None, gt_field: str | None,
                  class_names: Sequence[str] | None,
                  name: str) -> tuple[np.ndarray, Sequence[str] | None, dict | None]:
    """(labels on the raster's grid, class names, the polygons' report or None for a label raster)
    from a label raster or from polygons (`gt_field` names their class attribute)."""
    if gt_path is None:
        raise DataError(f"The raster {cube_path} holds no labels: give data.gt_path=<label raster or "
                        f"polygons> (with data.gt_field=<attribute> for polygons).")
    if gt_field is not None or is_vector_path(gt_path):
        made = rasterize_labels(gt_path, gt_field, info)
        if class_names is None:
            class_names = made.class_names
        elif len(class_names) != len(made.class_names):
            raise DataError(f"data.class_names has {len(class_names)} names but {gt_path} holds "
                            f"{len(made.class_names)} classes in {gt_field!r} ({made.class_names}); "
                            f"leave data.class_names unset to use them.")
        return made.labels, class_names, made.report
    if Path(gt_path).suffix.lower() in ARRAY_SUFFIXES:  # an array on the cube's grid
        gt = np.asarray(read_array(gt_path, None, 2, "ground truth"))
    else:
        gt = read_label_raster(gt_path, info)
    if gt.shape != (info.height, info.width):
        raise DataError(f"Scene {name!r}: the cube {cube_path} is {info.height}x{info.width} "
                        f"pixels but the ground truth {gt_path} is {gt.shape[0]}x{gt.shape[1]}; "
                        f"they must cover the same pixels.")
    return gt, class_names, None
