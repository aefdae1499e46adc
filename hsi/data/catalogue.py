"""The standard scenes: where their files live, what is in them, and how to load them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hsi.data.io import read_array
from hsi.data.scene import Scene, reindex_labels, validate_pair


class DatasetNotFoundError(FileNotFoundError):
    """A scene's files are not where they are expected."""


@dataclass(frozen=True)
class SceneFile:
    """One file of a scene in its distributed (EHU) form."""

    filename: str
    key: str
    url: str
    sha1: str | None  # git blob SHA-1 (`git hash-object`); None when unknown


@dataclass(frozen=True)
class SceneSpec:
    """Catalogue entry of a standard scene."""

    name: str
    cube: SceneFile
    gt: SceneFile
    class_names: tuple[str, ...]
    label_values: tuple[int, ...]  # label value in the file of class 1, 2, ...
    cube_shape: tuple[int, int, int]
    class_counts: tuple[int, ...]


_EHU = "http://www.ehu.eus/ccwintco/uploads"

CATALOGUE: dict[str, SceneSpec] = {
    "indian_pines": SceneSpec(
        name="indian_pines",
        cube=SceneFile("Indian_pines_corrected.mat", "indian_pines_corrected",
                       f"{_EHU}/6/67/Indian_pines_corrected.mat",
                       "75b6d6e7df046fce91eda23e7559e274c92da711"),
        gt=SceneFile("Indian_pines_gt.mat", "indian_pines_gt", f"{_EHU}/c/c4/Indian_pines_gt.mat",
                     "8e308e6d2ad7cbb81dc1cd7849a2b7b768f4be6d"),
        class_names=("Alfalfa", "Corn-notill", "Corn-mintill", "Corn", "Grass-pasture",
                     "Grass-trees", "Grass-pasture-mowed", "Hay-windrowed", "Oats",
                     "Soybean-notill", "Soybean-mintill", "Soybean-clean", "Wheat", "Woods",
                     "Buildings-Grass-Trees-Drives", "Stone-Steel-Towers"),
        label_values=tuple(range(1, 17)),
        cube_shape=(145, 145, 200),
        class_counts=(46, 1428, 830, 237, 483, 730, 28, 478, 20, 972, 2455, 593, 205, 1265,
                      386, 93),
    ),
    "salinas_a": SceneSpec(
        name="salinas_a",
        cube=SceneFile("SalinasA_corrected.mat", "salinasA_corrected",
                       f"{_EHU}/1/1a/SalinasA_corrected.mat",
                       "90ca5fd2a4e06691605112d6c168d2e682c3e95f"),
        gt=SceneFile("SalinasA_gt.mat", "salinasA_gt", f"{_EHU}/a/aa/SalinasA_gt.mat",
                     "68eb51f938e2305c5d7ca61a0ee5906516d70008"),
        class_names=("Brocoli_green_weeds_1", "Corn_senesced_green_weeds", "Lettuce_romaine_4wk",
                     "Lettuce_romaine_5wk", "Lettuce_romaine_6wk", "Lettuce_romaine_7wk"),
        label_values=(1, 10, 11, 12, 13, 14),
        cube_shape=(83, 86, 204),
        class_counts=(391, 1343, 616, 1525, 674, 799),
    ),
}


def scene_folder(name: str, data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / name


def load_catalogue_scene(name: str, data_dir: str | Path) -> Scene:
    """Load a standard scene from `<data_dir>/<name>/` with its EHU file names."""
    if name not in CATALOGUE:
        raise ValueError(f"Unknown scene {name!r}; known scenes: {', '.join(CATALOGUE)} "
                         f"(or use data=custom for your own files).")
    spec = CATALOGUE[name]
    folder = scene_folder(name, data_dir)
    missing = [f for f in (spec.cube, spec.gt) if not (folder / f.filename).is_file()]
    if missing:
        lines = "\n".join(f"  {f.filename}  ({f.url})" for f in missing)
        raise DatasetNotFoundError(
            f"Scene {name!r} not found: {folder.resolve()} lacks\n{lines}\n"
            f"Put the files there, point HSI_DATA_DIR (or paths.data_dir) at the folder that "
            f"holds '{name}/', or load your own files with data=custom data.cube_path=... "
            f"data.gt_path=....")
    cube = read_array(folder / spec.cube.filename, spec.cube.key, 3, "cube")
    gt = read_array(folder / spec.gt.filename, spec.gt.key, 2, "ground truth")
    validate_pair(cube, gt, name)
    labels, values = reindex_labels(gt, spec.label_values)
    return Scene(name=name, cube=cube, labels=labels, class_names=list(spec.class_names),
                 label_values=values)
