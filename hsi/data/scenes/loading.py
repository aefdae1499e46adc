"""One entry point that turns a scene name and its options into a `Scene`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hsi.data.readers.io import pick_array, read_array, read_arrays
from hsi.data.scenes.catalogue import CATALOGUE, load_catalogue_scene
from hsi.data.scenes.geo_scene import load_raster_scene, uses_gdal
from hsi.data.scenes.scene import Scene, build_scene
from hsi.data.scenes.synthetic import make_synthetic_scene
from hsi.errors import ConfigError


def load_custom_scene(cube_path: str | Path, gt_path: str | Path | None = None,
                      cube_key: str | None = None, gt_key: str | None = None,
                      class_names: Sequence[str] | None = None, name: str = "custom",
                      ignore_labels: Sequence[int] | None = None,
                      nan_policy: str = "exclude", gt_field: str | None = None) -> Scene:
    """Your own scene: a cube and a ground truth from any file type `hsi.data.readers.io` reads.

    Without `gt_path` the ground truth is read from the cube's file (`gt_key`, or its only
    2-D array). A band-first cube (bands, H, W) is transposed. Label values are re-indexed
    to consecutive classes 1..K; `ignore_labels` (source values) become unlabelled. A
    georeferenced raster, or labels as polygons (`gt_field` names their class attribute), go
    through `hsi.data.scenes.geo_scene` (rasterio), which keeps the georeference on the scene.
    """
    if cube_path is None:
        raise ConfigError("data=custom needs data.cube_path=<file with the cube>.")
    if uses_gdal(cube_path, gt_path, gt_field):
        return load_raster_scene(cube_path, gt_path, gt_field, class_names, name, ignore_labels,
                                 nan_policy)
    if gt_path is None:  # both in one file: read it once
        arrays = read_arrays(cube_path)
        cube = pick_array(arrays, cube_key, 3, "cube", cube_path)
        gt = pick_array(arrays, gt_key, 2, "ground truth", cube_path)
    else:
        cube = read_array(cube_path, cube_key, 3, "cube")
        gt = read_array(gt_path, gt_key, 2, "ground truth")
    return build_scene(name, cube, gt, class_names=class_names, ignore_labels=ignore_labels,
                       nan_policy=nan_policy)


def load_scene(scene: str, data_dir: str | Path | None = None, download: bool = False,
               **options: Any) -> Scene:
    """Load `scene`: a catalogue name, `"synthetic"` or `"custom"`, with that scene's options.

    `download` fetches a catalogue scene's missing files (ignored by the other scenes);
    `ignore_labels` and `nan_policy` apply to every scene.
    """
    if scene == "synthetic":
        ignore_labels = options.pop("ignore_labels", None)
        options.pop("nan_policy", None)  # a synthetic scene is always finite
        made = make_synthetic_scene(**options)
        if not ignore_labels:
            return made
        return build_scene(made.name, made.cube, made.labels, class_names=made.class_names,
                           label_values=made.label_values, ignore_labels=ignore_labels)
    if scene == "custom":
        return load_custom_scene(**options)
    if scene in CATALOGUE:
        unknown = sorted(set(options) - {"ignore_labels", "nan_policy", "fetch"})
        if unknown:
            raise ConfigError(f"Scene {scene!r} takes only download, ignore_labels and nan_policy; "
                            f"got {unknown}.")
        if data_dir is None:
            raise ConfigError(f"Scene {scene!r} needs a data_dir (paths.data_dir or HSI_DATA_DIR).")
        return load_catalogue_scene(scene, data_dir, download=download, **options)
    raise ConfigError(f"Unknown scene {scene!r}; choose one of: "
                     f"{', '.join([*CATALOGUE, 'synthetic', 'custom'])}.")
