"""The in-memory scene: a hyperspectral cube with its ground truth, and how raw arrays become one."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hsi.data.scenes.invalid_pixels import FillSums
from hsi.errors import DataError

log = logging.getLogger(__name__)

NAN_POLICIES = ("exclude", "fill", "error")


@dataclass
class Scene:
    """A cube (H, W, B) float32 and labels (H, W) int64 with 0 = unlabelled, 1..K = classes.

    `class_names[k - 1]` names label k. `label_values[k - 1]` is the value label k had in
    the source file (the two differ when labels were re-indexed, as for Salinas-A).
    `ignored_labels` are source values left out (`data.ignore_labels`); `excluded_pixels`
    counts pixels left out because their spectra held NaN or inf. A scene read from a raster
    carries its georeference in `geo` (`hsi.data.readers.raster.RasterInfo.geo()`: CRS, transform,
    nodata, wavelengths, band names) and its nodata pixels in `invalid` (H, W).
    """

    name: str
    cube: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    label_values: list[int] = field(default_factory=list)
    ignored_labels: list[int] = field(default_factory=list)
    excluded_pixels: int = 0
    geo: dict[str, Any] | None = None
    invalid: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.cube = np.asarray(self.cube)
        self.labels = np.asarray(self.labels)
        validate_pair(self.cube, self.labels, self.name)
        if self.cube.dtype.kind == "f" and not np.isfinite(self.cube).all():
            bad = int((~np.isfinite(self.cube)).any(axis=2).sum())
            raise DataError(f"Scene {self.name!r}: {bad} pixels of the cube hold NaN or inf values; "
                             f"leave them out or fill them (data.nan_policy=exclude or fill).")
        self.cube = self.cube.astype(np.float32, copy=False)
        self.labels = self.labels.astype(np.int64, copy=False)
        n_classes = int(self.labels.max())
        if len(self.class_names) < n_classes:
            raise DataError(f"Scene {self.name!r}: {len(self.class_names)} class names given but "
                             f"the labels go up to {n_classes}; give one name per class.")
        if not self.label_values:
            self.label_values = list(range(1, len(self.class_names) + 1))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def raw_bands(self) -> int:
        return int(self.cube.shape[2])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    def class_counts(self) -> np.ndarray:
        """Labelled pixels per class, index k-1 for class k."""
        return np.bincount(self.labels.ravel(), minlength=self.num_classes + 1)[1:]

    def label_mapping(self) -> dict[str, Any]:
        """Which source label value became which class (and network output index)."""
        counts = self.class_counts()
        return {
            "scene": self.name,
            "classes": [{"index": k, "label": k + 1, "source_value": int(v), "name": name,
                         "pixels": int(counts[k])}
                        for k, (v, name) in enumerate(zip(self.label_values, self.class_names))],
            "ignored_source_values": [int(v) for v in self.ignored_labels],
            "excluded_nonfinite_pixels": int(self.excluded_pixels),
        }


def build_scene(name: str, cube: np.ndarray, gt: np.ndarray, *,
                class_names: Sequence[str] | None = None, label_values: Sequence[int] | None = None,
                ignore_labels: Sequence[int] | None = None, nan_policy: str = "exclude") -> Scene:
    """Turn a raw cube and ground truth into a `Scene`: orientation, checks, labels, NaN policy.

    `label_values` fixes which source values are classes and in which order (catalogue scenes);
    without it, the sorted distinct non-zero values. `class_names` names either all those
    classes or the ones left after `ignore_labels` (source values set to unlabelled).
    `nan_policy`: see `handle_nonfinite`.
    """
    gt = np.asarray(gt)
    cube = orient_cube(np.asarray(cube), gt.shape, name)
    validate_pair(cube, gt, name)
    values = [int(v) for v in (label_values if label_values is not None else
                               np.unique(gt[gt > 0]))]
    ignore = _checked_ignore(ignore_labels, values, name)
    kept = [v for v in values if v not in ignore]
    if not kept:
        raise DataError(f"Scene {name!r}: data.ignore_labels={ignore} leaves no class; "
                         f"keep at least one of {values}.")
    names = _class_names(class_names, values, kept, name)
    if ignore:
        gt = np.where(np.isin(gt, ignore), 0, gt)
    cube, gt, excluded = handle_nonfinite(cube, gt, nan_policy, name)
    labels, kept = reindex_labels(gt, kept)
    return Scene(name=name, cube=cube, labels=labels, class_names=names, label_values=kept,
                 ignored_labels=ignore, excluded_pixels=excluded)


def _checked_ignore(ignore_labels: Sequence[int] | None, values: list[int], name: str) -> list[int]:
    ignore = sorted({int(v) for v in (ignore_labels or [])})
    unknown = [v for v in ignore if v not in values]
    if unknown:
        raise DataError(f"Scene {name!r}: data.ignore_labels lists {unknown}, which are not label "
                         f"values of this ground truth; its values are {values} (0 = unlabelled).")
    return ignore


def _class_names(class_names: Sequence[str] | None, values: list[int], kept: list[int],
                 name: str) -> list[str]:
    if class_names is None:
        return [f"class_{v}" for v in kept]
    class_names = [str(n) for n in class_names]
    if len(class_names) == len(values):
        return [n for n, v in zip(class_names, values) if v in kept]
    if len(class_names) == len(kept):
        return class_names
    also = f" or {len(kept)} (those left after data.ignore_labels)" if len(kept) != len(values) else ""
    raise DataError(f"Scene {name!r}: data.class_names has {len(class_names)} names but the ground "
                     f"truth holds {len(values)} classes (label values {values}); give "
                     f"{len(values)} names{also}, in the order of the label values.")


def orient_cube(cube: np.ndarray, gt_shape: tuple[int, ...], name: str) -> np.ndarray:
    """(bands, H, W) -> (H, W, bands) when only the last two axes match the ground truth."""
    if cube.ndim == 3 and len(gt_shape) == 2 and cube.shape[:2] != tuple(gt_shape) \
            and cube.shape[1:] == tuple(gt_shape):
        log.info("Scene %r: the cube %s is band-first; using it as %s (height, width, bands).",
                 name, cube.shape, (*cube.shape[1:], cube.shape[0]))
        return np.ascontiguousarray(np.moveaxis(cube, 0, -1))
    return cube


def handle_nonfinite(cube: np.ndarray, gt: np.ndarray, policy: str,
                     name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Deal with pixels whose spectrum holds NaN or inf; returns (cube, gt, pixels excluded).

    `exclude`: their labels become 0 (left out of training and evaluation) and their bad values
    are filled with the band's mean so that PCA and neighbouring windows still work.
    `fill`: values filled the same way, labels kept. `error`: stop. Both others log a warning.
    """
    if policy not in NAN_POLICIES:
        raise DataError(f"data.nan_policy={policy!r}; choose one of {', '.join(NAN_POLICIES)}.")
    if cube.dtype.kind != "f":
        return cube, gt, 0
    bad_pixel = ~np.isfinite(cube).all(axis=2)
    n_bad = int(bad_pixel.sum())
    if n_bad == 0:
        return cube, gt, 0
    n_labelled = int((gt[bad_pixel] > 0).sum())
    what = (f"Scene {name!r}: {n_bad} pixels ({n_labelled} of them labelled) hold NaN or inf "
            f"values")
    if policy == "error":
        raise DataError(f"{what}. Set data.nan_policy=exclude to leave them out, or "
                         f"data.nan_policy=fill to fill them with band means and keep their labels.")
    cube, _ = fill_nonfinite(cube)
    if policy == "exclude":
        gt = np.where(bad_pixel, 0, gt)
        log.warning("%s; they are left out (label set to unlabelled) and their values filled with "
                    "band means. data.nan_policy=fill keeps their labels, =error stops.", what)
        return cube, gt, n_labelled
    log.warning("%s; their values were filled with band means and their labels kept "
                "(data.nan_policy=fill).", what)
    return cube, gt, 0


def fill_nonfinite(cube: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cube with NaN / inf values replaced by their band's finite mean, (H, W) mask of the pixels
    that held any). The cube is returned unchanged (not copied) when every value is finite."""
    if cube.dtype.kind != "f":
        return cube, np.zeros(cube.shape[:2], dtype=bool)
    bad_pixel = ~np.isfinite(cube).all(axis=2)
    if not bad_pixel.any():
        return cube, bad_pixel
    sums = FillSums(cube.shape[2])  # the one rule (data/scenes/invalid_pixels.py)
    no_nodata = np.zeros_like(bad_pixel)
    sums.add(cube.transpose(2, 0, 1), no_nodata, bad_pixel)
    return sums.values().fill(cube.astype(np.float32, copy=True), no_nodata), bad_pixel


def validate_pair(cube: np.ndarray, labels: np.ndarray, name: str) -> None:
    """Reject a cube / ground truth pair that cannot be a scene, with the fix in the message."""
    if cube.ndim != 3:
        raise DataError(f"Scene {name!r}: the cube must have 3 dimensions (height, width, bands); "
                         f"got shape {cube.shape}.")
    if labels.ndim != 2:
        raise DataError(f"Scene {name!r}: the ground truth must have 2 dimensions (height, width); "
                         f"got shape {labels.shape}.")
    if cube.shape[:2] != labels.shape:
        raise DataError(f"Scene {name!r}: cube is {cube.shape[0]}x{cube.shape[1]} pixels but the "
                         f"ground truth is {labels.shape[0]}x{labels.shape[1]}; they must cover the "
                         f"same pixels. Check that the files belong together.")
    validate_labels(labels, name)


def validate_labels(labels: np.ndarray, name: str) -> None:
    """Reject a ground truth that does not hold class numbers (0 = unlabelled)."""
    if labels.ndim != 2:
        raise DataError(f"Scene {name!r}: the ground truth must have 2 dimensions (height, width); "
                         f"got shape {labels.shape}.")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DataError(f"Scene {name!r}: the ground truth holds non-integer values; it must "
                             f"hold class numbers (0 = unlabelled).")
    elif labels.dtype.kind not in "iub":
        raise DataError(f"Scene {name!r}: the ground truth has dtype {labels.dtype}; it must be integer.")
    if labels.size and labels.min() < 0:
        raise DataError(f"Scene {name!r}: the ground truth holds negative values; it must hold "
                         f"class numbers >= 0 (0 = unlabelled).")
    if not np.any(labels > 0):
        raise DataError(f"Scene {name!r}: the ground truth has no labelled pixel.")


def reindex_labels(labels: np.ndarray,
                   values: Sequence[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """Map label values (0 = unlabelled) to consecutive classes 1..K.

    `values` fixes the order (class k is `values[k-1]`); pixels with any other non-zero value
    are an error. Without it, the sorted distinct non-zero values are used.
    """
    labels = np.asarray(labels)
    present = sorted(int(v) for v in np.unique(labels) if v != 0)
    if values is None:
        values = present
    unknown = sorted(set(present) - set(values))
    if unknown:
        raise DataError(f"Ground truth holds label values {unknown} that the scene does not define "
                         f"(known: {list(values)}).")
    # sorted search rather than a lookup table: a label value of 10**12 must not allocate terabytes
    known = np.asarray(values, dtype=np.int64)
    order = np.argsort(known, kind="stable")
    flat = labels.astype(np.int64)
    position = np.clip(np.searchsorted(known[order], flat), 0, len(known) - 1)
    classes = np.where(known[order][position] == flat, order[position] + 1, 0)
    return classes.astype(np.int64), [int(v) for v in values]
