"""One entry point that turns a scene name and its options into a `Scene`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hsi.data.catalogue import CATALOGUE, load_catalogue_scene
from hsi.data.io import read_array
from hsi.data.scene import Scene, reindex_labels, validate_pair
from hsi.data.synthetic import make_synthetic_scene


def load_custom_scene(cube_path: str | Path, gt_path: str | Path | None = None,
                      cube_key: str | None = None, gt_key: str | None = None,
                      class_names: Sequence[str] | None = None, name: str = "custom") -> Scene:
    """Your own scene: a cube and a ground truth from `.mat` (v5 / v7.3) or `.npy` / `.npz`.

    Without `gt_path` the ground truth is read from the cube's file (`gt_key`, or its only
    2-D array). Label values are re-indexed to consecutive classes 1..K.
    """
    if cube_path is None:
        raise ValueError("data=custom needs data.cube_path=<file with the cube>.")
    cube = read_array(cube_path, cube_key, 3, "cube")
    gt = read_array(gt_path if gt_path is not None else cube_path, gt_key, 2, "ground truth")
    validate_pair(cube, gt, name)
    labels, values = reindex_labels(gt)
    if class_names is None:
        class_names = [f"class_{v}" for v in values]
    elif len(class_names) != len(values):
        raise ValueError(f"data.class_names has {len(class_names)} names but the ground truth "
                         f"holds {len(values)} classes (label values {values}).")
    return Scene(name=name, cube=cube, labels=labels, class_names=list(class_names),
                 label_values=values)


def load_scene(scene: str, data_dir: str | Path | None = None, **options: Any) -> Scene:
    """Load `scene`: a catalogue name, `"synthetic"` or `"custom"`, with that scene's options."""
    if scene == "synthetic":
        return make_synthetic_scene(**options)
    if scene == "custom":
        return load_custom_scene(**options)
    if scene in CATALOGUE:
        if options:
            raise TypeError(f"Scene {scene!r} takes no options, got {sorted(options)}.")
        if data_dir is None:
            raise ValueError(f"Scene {scene!r} needs a data_dir (paths.data_dir or HSI_DATA_DIR).")
        return load_catalogue_scene(scene, data_dir)
    raise ValueError(f"Unknown scene {scene!r}; choose one of: "
                     f"{', '.join([*CATALOGUE, 'synthetic', 'custom'])}.")
