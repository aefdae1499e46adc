"""A `Scene` from a raster read through GDAL, its labels from a label raster or from polygons.

Which files take this path (`uses_gdal`): every raster with a CRS, a geotransform (a transform
without a CRS is kept, and the maps carry it) or a nodata value,
any format only GDAL reads, and any cube whose labels are polygons. Files without georeference
that `hsi.data.readers.io` reads (.mat, .npy, .npz, plain TIFF and ENVI) keep that path unchanged.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.readers.io import envi_header, read_array
from hsi.data.readers.raster import (
    ARRAY_SUFFIXES,
    RasterInfo,
    gdal_path,
    info_of,
    open_raster,
    read_block_masks,
    read_label_raster,
)
from hsi.data.readers.vector_labels import is_vector_path, rasterize_labels
from hsi.data.scenes.invalid_pixels import FillSums
from hsi.data.scenes.scene import Scene, build_scene
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
        return False  # not a raster GDAL reads: hsi.data.readers.io says which files are supported
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
    gt, class_names, label_report, values = raster_labels(info, cube_path, gt_path, gt_field, class_names,
                                                          name)
    if nodata.any():  # the valid pixels' band means (the one rule: hsi.data.scenes.invalid_pixels)
        sums = FillSums(cube.shape[2])
        sums.add(cube.transpose(2, 0, 1), nodata, nonfinite)
        cube[nodata] = sums.values().means
        gt = np.where(nodata, 0, gt)
        log.info("Scene %r: %d nodata pixels left out (unlabelled) and filled with band means.",
                 name, int(nodata.sum()))
    values, class_names = classes_left(gt, values, class_names, name)
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
                  name: str) -> tuple[np.ndarray, Sequence[str] | None, dict | None, list[int]]:
    """(labels on the raster's grid as source values, class names, the polygons' report or None
    for a label raster, the classes' source values in class order) from a label raster or array,
    or from polygons (`gt_field` names their class attribute; their codes, or positions for
    names: `VectorLabels.values`)."""
    if gt_path is None:
        raise DataError(f"The raster {cube_path} holds no labels: give data.gt_path=<label raster or "
                        f"polygons> (with data.gt_field=<attribute> for polygons).")
    if gt_field is not None or is_vector_path(gt_path):
        made = rasterize_labels(gt_path, gt_field, info)
        if class_names is None:
            class_names = made.class_names
        elif len(class_names) != len(made.class_names):
            dropped = made.report.get("dropped_classes")
            raise DataError(f"data.class_names has {len(class_names)} names but {gt_path} holds "
                            f"{len(made.class_names)} classes in {gt_field!r} ({made.class_names}"
                            f"{f'; left out for lack of pixels: {sorted(dropped)}' if dropped else ''}); "
                            f"leave data.class_names unset to use them.")
        return made.source_labels(), class_names, made.report, list(made.values)
    if Path(gt_path).suffix.lower() in ARRAY_SUFFIXES:  # an array on the cube's grid
        gt = np.asarray(read_array(gt_path, None, 2, "ground truth"))
    else:
        gt = read_label_raster(gt_path, info)
    if gt.shape != (info.height, info.width):
        raise DataError(f"Scene {name!r}: the cube {cube_path} is {info.height}x{info.width} "
                        f"pixels but the ground truth {gt_path} is {gt.shape[0]}x{gt.shape[1]}; "
                        f"they must cover the same pixels.")
    values = [int(v) for v in np.unique(gt[gt > 0])] if gt.dtype.kind in "iu" else []  # else: as read
    return gt, class_names, None, values


def classes_left(gt: np.ndarray, values: list[int], class_names: Sequence[str] | None,
                 name: str) -> tuple[list[int] | None, Sequence[str] | None]:
    """The classes (`values`, their names) with a labelled pixel left once nodata is unlabelled; one
    warning line for each left out (every pixel of it is nodata), so none is trained without pixels."""
    if not values:
        return None, class_names
    present = set(np.unique(gt[gt > 0]).tolist())
    kept = [v for v in values if v in present]
    for k, value in enumerate(values):
        if value not in present:
            label = class_names[k] if class_names is not None and len(class_names) == len(values) else value
            log.warning("Scene %r: class %r (value %s) is left out (not trained): all its labelled pixels "
                        "are nodata pixels of the raster.", name, str(label), value)
    if class_names is not None and len(class_names) == len(values):
        class_names = [n for n, v in zip(class_names, values) if v in present]
    return kept, class_names
