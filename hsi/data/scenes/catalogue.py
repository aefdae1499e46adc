"""The standard scenes: where their files come from, what is in them, and how to load them.

Each scene lives in `<data_dir>/<name>/` under its EHU file names. A missing file is fetched
when `download=True` (verified by its git blob SHA-1 before it is kept); a present one is
verified once (the result is cached) and never deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsi.data.readers import download as dl
from hsi.data.readers.io import read_array
from hsi.data.scenes.scene import Scene, build_scene, reindex_labels, validate_labels
from hsi.errors import DataError, HsiError, first_line

log = logging.getLogger(__name__)


class DatasetNotFoundError(HsiError, FileNotFoundError):
    """A scene's files are not where they are expected (and could not be downloaded)."""


@dataclass(frozen=True)
class SceneFile:
    """One file of a scene in its distributed (EHU) form."""

    filename: str
    key: str  # MATLAB variable name
    url: str
    sha1: str | None  # git blob SHA-1 (`git hash-object`); None when unknown


@dataclass(frozen=True)
class SceneSpec:
    """Catalogue entry of a standard scene."""

    name: str
    title: str
    sensor: str
    cube: SceneFile
    gt: SceneFile
    class_names: tuple[str, ...]
    label_values: tuple[int, ...]  # label value in the file of class 1, 2, ...
    cube_shape: tuple[int, int, int]  # (height, width, bands)
    class_counts: tuple[int, ...]  # labelled pixels of class 1, 2, ...
    rgb_bands: tuple[int, int, int]  # 0-based band indices for an (R, G, B) display

    @property
    def gt_shape(self) -> tuple[int, int]:
        return self.cube_shape[0], self.cube_shape[1]

    @property
    def files(self) -> tuple[SceneFile, SceneFile]:
        return self.cube, self.gt


_EHU = "http://www.ehu.eus/ccwintco/uploads"
SOURCE = "http://www.ehu.eus/ccwintco/index.php/Hyperspectral_Remote_Sensing_Scenes"


def _file(path: str, key: str, sha1: str | None) -> SceneFile:
    return SceneFile(path.rsplit("/", 1)[-1], key, f"{_EHU}/{path}", sha1)


_SALINAS_NAMES = (
    "Brocoli_green_weeds_1", "Brocoli_green_weeds_2", "Fallow", "Fallow_rough_plow",
    "Fallow_smooth", "Stubble", "Celery", "Grapes_untrained", "Soil_vinyard_develop",
    "Corn_senesced_green_weeds", "Lettuce_romaine_4wk", "Lettuce_romaine_5wk",
    "Lettuce_romaine_6wk", "Lettuce_romaine_7wk", "Vinyard_untrained", "Vinyard_vertical_trellis")
_SALINAS_COUNTS = (2009, 3726, 1976, 1394, 2678, 3959, 3579, 11271, 6203, 3278, 1068, 1927, 916,
                   1070, 7268, 1807)
_SALINAS_A_VALUES = (1, 10, 11, 12, 13, 14)

CATALOGUE: dict[str, SceneSpec] = {
    "indian_pines": SceneSpec(
        name="indian_pines", title="Indian Pines", sensor="AVIRIS",
        cube=_file("6/67/Indian_pines_corrected.mat", "indian_pines_corrected",
                   "75b6d6e7df046fce91eda23e7559e274c92da711"),
        gt=_file("c/c4/Indian_pines_gt.mat", "indian_pines_gt",
                 "8e308e6d2ad7cbb81dc1cd7849a2b7b768f4be6d"),
        class_names=("Alfalfa", "Corn-notill", "Corn-mintill", "Corn", "Grass-pasture",
                     "Grass-trees", "Grass-pasture-mowed", "Hay-windrowed", "Oats",
                     "Soybean-notill", "Soybean-mintill", "Soybean-clean", "Wheat", "Woods",
                     "Buildings-Grass-Trees-Drives", "Stone-Steel-Towers"),
        label_values=tuple(range(1, 17)),
        cube_shape=(145, 145, 200),
        class_counts=(46, 1428, 830, 237, 483, 730, 28, 478, 20, 972, 2455, 593, 205, 1265,
                      386, 93),
        rgb_bands=(43, 21, 11),
    ),
    "pavia_university": SceneSpec(
        name="pavia_university", title="Pavia University", sensor="ROSIS",
        cube=_file("e/ee/PaviaU.mat", "paviaU", "6eecc933bedec1130bb046483dd12e25cf091b24"),
        gt=_file("5/50/PaviaU_gt.mat", "paviaU_gt", "85d57a7f2fec6fc2b05a810b31808b88f9357dc6"),
        class_names=("Asphalt", "Meadows", "Gravel", "Trees", "Painted metal sheets", "Bare Soil",
                     "Bitumen", "Self-Blocking Bricks", "Shadows"),
        label_values=tuple(range(1, 10)),
        cube_shape=(610, 340, 103),
        class_counts=(6631, 18649, 2099, 3064, 1345, 5029, 1330, 3682, 947),
        rgb_bands=(55, 41, 12),
    ),
    "pavia_centre": SceneSpec(
        name="pavia_centre", title="Pavia Centre", sensor="ROSIS",
        # No fingerprint is known for these two files: they are used with a warning.
        cube=_file("e/e3/Pavia.mat", "pavia", None),
        gt=_file("5/53/Pavia_gt.mat", "pavia_gt", None),
        class_names=("Water", "Trees", "Asphalt", "Self-Blocking Bricks", "Bitumen", "Tiles",
                     "Shadows", "Meadows", "Bare Soil"),
        label_values=tuple(range(1, 10)),
        cube_shape=(1096, 715, 102),
        class_counts=(65971, 7598, 3090, 2685, 6584, 9248, 7287, 42826, 2863),
        rgb_bands=(55, 41, 12),
    ),
    "salinas": SceneSpec(
        name="salinas", title="Salinas", sensor="AVIRIS",
        cube=_file("a/a3/Salinas_corrected.mat", "salinas_corrected",
                   "2a745377a77369bd5a9d430c722f0bf5e0d0ffc1"),
        gt=_file("f/fa/Salinas_gt.mat", "salinas_gt", "a0781d95c9fa20bb3c31751a0cf24b7dc09be65b"),
        class_names=_SALINAS_NAMES,
        label_values=tuple(range(1, 17)),
        cube_shape=(512, 217, 204),
        class_counts=_SALINAS_COUNTS,
        rgb_bands=(43, 21, 11),
    ),
    "salinas_a": SceneSpec(
        name="salinas_a", title="Salinas-A", sensor="AVIRIS",
        cube=_file("1/1a/SalinasA_corrected.mat", "salinasA_corrected",
                   "90ca5fd2a4e06691605112d6c168d2e682c3e95f"),
        gt=_file("a/aa/SalinasA_gt.mat", "salinasA_gt", "68eb51f938e2305c5d7ca61a0ee5906516d70008"),
        # A subscene of Salinas: its labels keep the Salinas values 1, 10..14.
        class_names=tuple(_SALINAS_NAMES[v - 1] for v in _SALINAS_A_VALUES),
        label_values=_SALINAS_A_VALUES,
        cube_shape=(83, 86, 204),
        class_counts=(391, 1343, 616, 1525, 674, 799),
        rgb_bands=(43, 21, 11),
    ),
    "ksc": SceneSpec(
        name="ksc", title="Kennedy Space Center", sensor="AVIRIS",
        cube=_file("2/26/KSC.mat", "KSC", "6cbb7742851216118ddeff9011482fff5aca3698"),
        gt=_file("a/a6/KSC_gt.mat", "KSC_gt", "8efeec7529b8789152aecf4d3a8197e94daeb363"),
        class_names=("Scrub", "Willow swamp", "Cabbage palm hammock", "Cabbage palm/oak hammock",
                     "Slash pine", "Oak/broadleaf hammock", "Hardwood swamp", "Graminoid marsh",
                     "Spartina marsh", "Cattail marsh", "Salt marsh", "Mud flats", "Water"),
        label_values=tuple(range(1, 14)),
        cube_shape=(512, 614, 176),
        class_counts=(761, 243, 256, 252, 161, 229, 105, 431, 520, 404, 419, 503, 927),
        rgb_bands=(43, 21, 11),
    ),
    "botswana": SceneSpec(
        name="botswana", title="Botswana", sensor="Hyperion (EO-1)",
        cube=_file("7/72/Botswana.mat", "Botswana", "814248225b1210f46017a2420c3410d7fe2cf8e6"),
        gt=_file("5/58/Botswana_gt.mat", "Botswana_gt", "f5267c777fdde2997b6c49d1e14f93e671524c45"),
        class_names=("Water", "Hippo grass", "Floodplain grasses 1", "Floodplain grasses 2",
                     "Reeds", "Riparian", "Firescar", "Island interior", "Acacia woodlands",
                     "Acacia shrublands", "Acacia grasslands", "Short mopane", "Mixed mopane",
                     "Exposed soils"),
        label_values=tuple(range(1, 15)),
        cube_shape=(1476, 256, 145),
        class_counts=(270, 101, 251, 215, 269, 269, 259, 203, 314, 248, 305, 181, 268, 95),
        rgb_bands=(75, 33, 15),
    ),
}


def get_spec(name: str) -> SceneSpec:
    """The catalogue entry of `name`, or an error listing the scenes there are."""
    if name not in CATALOGUE:
        raise DataError(f"Unknown scene {name!r}; known scenes: {', '.join(CATALOGUE)} "
                         f"(or use data=custom for your own files).")
    return CATALOGUE[name]


def scene_folder(name: str, data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / name


def _not_found(spec: SceneSpec, folder: Path, files: Sequence[SceneFile], reason: str,
               tried_download: bool = False) -> str:
    expected = "\n".join(f"  {f.filename}  ({f.url})" for f in files)
    fetch = ("Download them there by hand (the automatic download failed: is this machine offline?)"
             if tried_download else "Download them there (or run with data.download=true)")
    return (f"Scene {spec.name!r} not found: {reason}.\nExpected in {folder.resolve()}:\n{expected}\n"
            f"{fetch}, point HSI_DATA_DIR (or paths.data_dir) at the folder that holds "
            f"'{spec.name}/', or load your own files with data=custom data.cube_path=... "
            f"data.gt_path=....")



def ensure_files(spec: SceneSpec, folder: Path, files: Sequence[SceneFile], download: bool = False,
                 fetch: dl.Fetch | None = None) -> dict[str, Path]:
    """Make sure `files` of `spec` are in `folder` and carry the expected content.

    Present files are verified (cached; never deleted). Missing ones are downloaded when
    `download` is true; otherwise, or when the download fails, `DatasetNotFoundError`.
    Returns {filename: path}.
    """
    paths = {f.filename: folder / f.filename for f in files}
    missing = [f for f in files if not paths[f.filename].is_file()]
    for f in files:
        if f not in missing:
            dl.verify_file(paths[f.filename], f.sha1, f.url)
    if missing and not download:
        names = ", ".join(f.filename for f in missing)
        raise DatasetNotFoundError(_not_found(spec, folder, files,
                                              f"{names} missing and data.download=false"))
    for f in missing:
        try:
            dl.download_file(f.url, paths[f.filename], f.sha1, fetch=fetch)
        except dl.DownloadError as err:
            raise DatasetNotFoundError(_not_found(spec, folder, files, first_line(err),
                                                  tried_download=True)) from None
    return paths


def prepare_scene(name: str, data_dir: str | Path, download: bool = False,
                  fetch: dl.Fetch | None = None) -> dict[str, Path]:
    """Fetch (if allowed) and verify a catalogue scene's files without loading them."""
    spec = get_spec(name)
    return ensure_files(spec, scene_folder(name, data_dir), spec.files, download, fetch)


def _read_gt(spec: SceneSpec, path: Path) -> np.ndarray:
    gt = read_array(path, spec.gt.key, 2, "ground truth")
    if gt.shape != spec.gt_shape:
        raise DataError(f"{path} holds a {gt.shape[0]}x{gt.shape[1]} ground truth but scene "
                         f"{spec.name!r} is {spec.gt_shape[0]}x{spec.gt_shape[1]}; it is not the "
                         f"catalogue's file. Replace it, or load it with data=custom.")
    return gt


def _check_counts(spec: SceneSpec, counts: np.ndarray) -> None:
    if tuple(int(c) for c in counts) != spec.class_counts:
        log.warning("Scene %r: labelled pixels per class %s differ from the catalogue's %s; the file "
                    "may be another version.", spec.name, [int(c) for c in counts],
                    list(spec.class_counts))


def load_ground_truth(name: str, data_dir: str | Path, download: bool = False,
                      fetch: dl.Fetch | None = None) -> np.ndarray:
    """A catalogue scene's ground truth only (verified), as classes 1..K (0 = unlabelled)."""
    spec = get_spec(name)
    paths = ensure_files(spec, scene_folder(name, data_dir), [spec.gt], download, fetch)
    gt = _read_gt(spec, paths[spec.gt.filename])
    validate_labels(gt, name)
    labels, _ = reindex_labels(gt, spec.label_values)
    _check_counts(spec, np.bincount(labels.ravel(), minlength=len(spec.label_values) + 1)[1:])
    return labels


def load_catalogue_scene(name: str, data_dir: str | Path, download: bool = False,
                         ignore_labels: Sequence[int] | None = None, nan_policy: str = "exclude",
                         fetch: dl.Fetch | None = None) -> Scene:
    """Load a standard scene from `<data_dir>/<name>/`, fetching missing files if `download`."""
    spec = get_spec(name)
    paths = prepare_scene(name, data_dir, download, fetch)
    cube = read_array(paths[spec.cube.filename], spec.cube.key, 3, "cube")
    if cube.shape != spec.cube_shape:
        raise DataError(f"{paths[spec.cube.filename]} holds a cube of shape {cube.shape} but scene "
                         f"{name!r} is {spec.cube_shape}; it is not the catalogue's file. Replace "
                         f"it, or load it with data=custom.")
    gt = _read_gt(spec, paths[spec.gt.filename])
    scene = build_scene(name, cube, gt, class_names=spec.class_names, label_values=spec.label_values,
                        ignore_labels=ignore_labels, nan_policy=nan_policy)
    if not scene.ignored_labels and not scene.excluded_pixels:
        _check_counts(spec, scene.class_counts())
    return scene


# -- fixed splits from the literature ----------------------------------------------------------
_GCN_REPO = "https://raw.githubusercontent.com/danfenghong/IEEE_TGRS_GCN/master/DataGeneration_Functions"


@dataclass(frozen=True)
class SplitSpec:
    """Catalogue entry of a fixed train / test split that papers publish as label images.

    Files live in `<data_dir>/splits/<name>/`. `class_map[k]` is the catalogue scene's label
    value of the files' class k (the files may number the classes in another order).
    """

    name: str
    title: str
    scene: str  # the catalogue scene it splits
    train: SceneFile
    test: SceneFile
    class_map: dict[int, int]
    source: str  # where the split is used / published

    @property
    def files(self) -> tuple[SceneFile, SceneFile]:
        return self.train, self.test


def _split_file(filename: str, key: str | None, sha1: str) -> SceneFile:
    return SceneFile(filename, key or "", f"{_GCN_REPO}/{filename}", sha1)


SPLIT_CATALOGUE: dict[str, SplitSpec] = {
    "indian_pines_fixed": SplitSpec(
        name="indian_pines_fixed", title="Indian Pines, the fixed split of SpectralFormer and its successors",
        scene="indian_pines",
        train=_split_file("IndianTR123_temp123.tif", None, "b90edf83bb5dfa53400d309e915c87f9e45c697d"),
        test=_split_file("IndianTE123_temp123.tif", None, "6f6f78d8f1b2793d93ff2cc00862ca79199f8edd"),
        # Purdue's class order (1 = Corn-notill ... 14 = Alfalfa, 15 = Grass-pasture-mowed,
        # 16 = Oats) to the EHU ground truth's; checked pixel by pixel (no conflicting pixel)
        class_map={1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 8, 7: 10, 8: 11, 9: 12, 10: 13, 11: 14,
                   12: 15, 13: 16, 14: 1, 15: 7, 16: 9},
        source="Hong et al., IEEE TGRS 2021 (GCN; danfenghong/IEEE_TGRS_GCN); SpectralFormer, "
               "IEEE TGRS 2022, and its successors",
    ),
    "pavia_university_fixed": SplitSpec(
        name="pavia_university_fixed", title="Pavia University, the fixed split of the same papers",
        scene="pavia_university",
        train=_split_file("TRpaviaU.mat", "TRpaviaU", "41ebf4355e8e7aed2d33ceb1c093036f0acd2062"),
        test=_split_file("TSpaviaU.mat", "TSpaviaU", "fe93a202df71cf94848ce7c26e8c5b5199fc7849"),
        class_map={k: k for k in range(1, 10)},  # same order as the EHU ground truth
        source="Hong et al., IEEE TGRS 2021 (GCN; danfenghong/IEEE_TGRS_GCN); SpectralFormer, "
               "IEEE TGRS 2022, and its successors",
    ),
}
