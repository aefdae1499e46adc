"""`data/split=fixed_<scene>`: fixed train / test splits from the literature, fetched through the
catalogue like the scenes.

`FixedSplit` (`data/split=fixed_indian_pines`, `data/split=fixed_pavia_university`) reads the
split's two label images from `<split_dir>/<name>/` (`hsi.data.scenes.catalogue.SPLIT_CATALOGUE`:
URLs of the public repository, git blob fingerprints), maps the files' class numbers onto the
scene's (checked pixel by pixel: a pixel the files put in another class than the ground truth
raises), drops the split's pixels that are unlabelled in the ground truth (counted in the
report) and carves the validation pixels from the training pixels only, never from the test
pixels: per class, in class order, `max(1, round(val_ratio * n))` of the class's n training
pixels (row-major), drawn by `numpy.random.default_rng(split_seed).permutation`, one generator
for all classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hsi.data.readers import download as dl
from hsi.data.readers.io import read_array
from hsi.data.scenes.catalogue import SPLIT_CATALOGUE, SplitSpec
from hsi.data.splits.base import (
    SplitResult,
    SplitStrategy,
    absolute_path,
    class_names_or_numbers,
    class_report,
    pixel_targets,
)
from hsi.data.splits.leakage import split_audit
from hsi.errors import ConfigError, DataError, HsiError, first_line


class SplitFilesNotFoundError(HsiError, FileNotFoundError):
    """A literature split's files are not where they are expected (and could not be downloaded)."""


def split_spec(name: str) -> SplitSpec:
    if name not in SPLIT_CATALOGUE:
        raise ConfigError(f"Unknown fixed split {name!r}; known: {', '.join(SPLIT_CATALOGUE)}.")
    return SPLIT_CATALOGUE[name]


def _scene_of(name: str) -> str:
    return SPLIT_CATALOGUE[name].scene if name in SPLIT_CATALOGUE else "its own scene"


def split_folder(name: str, split_dir: str | Path) -> Path:
    return Path(split_dir).expanduser() / name


def prepare_split(name: str, split_dir: str | Path, download: bool = False,
                  fetch: dl.Fetch | None = None) -> dict[str, Path]:
    """Fetch (if allowed) and verify a literature split's files; {"train": path, "test": path}."""
    spec = split_spec(name)
    folder = split_folder(name, split_dir)
    paths = {"train": folder / spec.train.filename, "test": folder / spec.test.filename}
    for role, f in zip(("train", "test"), spec.files):
        path = paths[role]
        if path.is_file():
            dl.verify_file(path, f.sha1, f.url)
            continue
        problem = f"{f.filename} missing in {folder.resolve()}"
        if download:
            try:
                dl.download_file(f.url, path, f.sha1, fetch=fetch)
                continue
            except dl.DownloadError as err:
                problem = f"{problem} and the download failed ({first_line(err)})"
        raise SplitFilesNotFoundError(
            f"Split {name!r}: {problem}. Put {spec.train.filename} and {spec.test.filename} "
            f"({spec.train.url.rsplit('/', 1)[0]}/) there, or point data.split.split_dir at the "
            f"folder that holds '{name}/'" + ("" if download else " (or set data.split.download=true)")
            + ".")
    return paths


def read_split_labels(name: str, split_dir: str | Path, download: bool = False,
                      fetch: dl.Fetch | None = None) -> dict[str, np.ndarray]:
    """The split's train and test label images, classes already mapped onto the scene's values."""
    spec = split_spec(name)
    paths = prepare_split(name, split_dir, download, fetch)
    lut = np.zeros(max(spec.class_map) + 1, dtype=np.int64)
    for k, v in spec.class_map.items():
        lut[k] = v
    out = {}
    for role, f in zip(("train", "test"), spec.files):
        image = read_array(paths[role], f.key or None, 2, f"{role} split")
        image = np.asarray(image).astype(np.int64)
        bad = sorted(set(np.unique(image).tolist()) - set(spec.class_map) - {0})
        if bad:
            raise DataError(f"{paths[role]} holds class values {bad} outside the split's "
                            f"{min(spec.class_map)}..{max(spec.class_map)}; it is not the catalogue's file.")
        out[role] = lut[image]
    return out


def apply_split_labels(labels: np.ndarray, coords: np.ndarray, images: dict[str, np.ndarray],
                       name: str) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Indices into `coords` of the train and test pixels; the split's pixels unlabelled in `labels`
    dropped (counted). A pixel whose mapped class differs from the ground truth's raises."""
    coords = np.asarray(coords)
    index = np.full(labels.shape, -1, dtype=np.int64)
    index[coords[:, 0], coords[:, 1]] = np.arange(len(coords))
    chosen: dict[str, np.ndarray] = {}
    dropped: dict[str, int] = {}
    for role, image in images.items():
        if image.shape != labels.shape:
            raise DataError(f"Split {name!r}: its {role} image is {image.shape[0]}x{image.shape[1]} but "
                            f"the scene is {labels.shape[0]}x{labels.shape[1]}; use it with its own "
                            f"scene ({_scene_of(name)}).")
        member = image > 0
        conflict = member & (labels > 0) & (labels != image)
        if conflict.any():
            r, c = np.argwhere(conflict)[0]
            raise DataError(f"Split {name!r}: {int(conflict.sum())} {role} pixels disagree with the "
                            f"scene's ground truth (first at row {r}, column {c}: split class "
                            f"{image[r, c]}, ground truth {labels[r, c]}). Use the catalogue's "
                            f"ground truth of {_scene_of(name)} with all its classes "
                            f"(no data.ignore_labels).")
        dropped[role] = int((member & (labels == 0)).sum())
        flat = np.flatnonzero(member & (labels > 0))  # row-major
        chosen[role] = index.ravel()[flat]
    if (overlap := np.intersect1d(chosen["train"], chosen["test"])).size:
        raise DataError(f"Split {name!r}: {overlap.size} pixels are both training and test pixels.")
    return chosen, dropped


def carve_validation(targets: np.ndarray, train: np.ndarray, val_ratio: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: `val_ratio` of each class's training pixels for validation.

    Classes in increasing order; per class `idx` = its training indices in increasing (row-major)
    order, `perm = rng.permutation(len(idx))` with one `rng = np.random.default_rng(seed)`,
    `n_val = max(1, round(val_ratio * len(idx)))`, never all of a class's pixels; val = idx[perm[:n_val]].
    `val_ratio == 0`: no validation pixels.
    """
    train = np.sort(np.asarray(train, dtype=np.int64))
    if val_ratio == 0:
        return train, train[:0]
    rng = np.random.default_rng(seed)
    val_parts = []
    for c in np.unique(targets[train]):
        idx = train[targets[train] == c]
        perm = rng.permutation(len(idx))
        n_val = min(max(1, round(val_ratio * len(idx))), len(idx) - 1)
        val_parts.append(idx[perm[:n_val]])
    val = np.sort(np.concatenate(val_parts)) if val_parts else train[:0]
    return np.setdiff1d(train, val), val


def published_audit(images: dict[str, np.ndarray], patch_size: int) -> dict[str, float | int | None]:
    """`split_audit` of a split's files as published: their train and test pixels, all of them."""
    shape = images["train"].shape
    audit = split_audit(shape, {k: np.argwhere(images[k] > 0) for k in ("train", "test")}, patch_size)
    return {k: v for k, v in audit.items() if not k.startswith("val_")}


@dataclass
class FixedSplit(SplitStrategy):
    """A fixed split from the literature (`hsi.data.scenes.catalogue.SPLIT_CATALOGUE`): its train and test
    label images from `<split_dir>/<name>/`, validation carved from its training pixels.

    `split_dir`: the folder holding `<name>/` (None: `<data_dir>/splits`, where the configs put it).
    `download`: fetch missing files (fingerprint-checked). `val_ratio`: the share of each class's
    training pixels kept for validation (`carve_validation`; 0: none).
    """

    name: str = "indian_pines_fixed"
    split_dir: str | None = None
    download: bool = True
    val_ratio: float = 0.2
    method: ClassVar[str] = "fixed"
    no_test_fix: ClassVar[str] = ("use the split with its own scene and all its classes (no "
                                  "data.ignore_labels)")

    def __post_init__(self) -> None:
        split_spec(self.name)
        if self.split_dir is None:
            raise ConfigError("data.split.split_dir is required: the folder that holds "
                              f"'{self.name}/' (the configs use <data_dir>/splits).")
        self.split_dir = absolute_path(self.split_dir)
        if not isinstance(self.download, (bool, np.bool_)):
            raise ConfigError(f"data.split.download={self.download!r} must be true or false.")
        self.val_ratio = float(self.val_ratio)
        if not 0 <= self.val_ratio < 1:
            raise ConfigError(f"data.split.val_ratio={self.val_ratio} must lie in [0, 1): the share "
                              f"of each class's training pixels kept for validation.")

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        images = read_split_labels(self.name, self.split_dir, bool(self.download))
        chosen, dropped = apply_split_labels(labels, coords, images, self.name)
        targets = pixel_targets(labels, coords)
        train, val = carve_validation(targets, chosen["train"], self.val_ratio, seed)
        split = {"train": train, "val": val, "test": np.sort(chosen["test"])}
        names = class_names_or_numbers(class_names, int(targets.max()) + 1)
        spec = split_spec(self.name)
        report: dict[str, Any] = {
            "method": self.method, "name": self.name, "source": spec.source,
            "files": {role: f.url for role, f in zip(("train", "test"), spec.files)},
            "val_from": "train", "val_ratio": self.val_ratio,
            "dropped_unlabelled": dropped,
            # the split as published (every pixel of its files, before anything is dropped or
            # carved): what a paper's test pixels share with its training windows
            "published_audit": published_audit(images, patch_size),
            "unused_labelled": int(len(coords) - sum(len(v) for v in split.values())),
            "classes": class_report(targets, split, names)}
        return split, report
