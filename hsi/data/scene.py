"""The in-memory scene: a hyperspectral cube with its ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Scene:
    """A cube (H, W, B) float32 and labels (H, W) int64 with 0 = unlabelled, 1..K = classes.

    `class_names[k - 1]` names label k. `label_values[k - 1]` is the value label k had in
    the source file (the two differ when labels were re-indexed, as for Salinas-A).
    """

    name: str
    cube: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    label_values: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cube = np.asarray(self.cube)
        self.labels = np.asarray(self.labels)
        validate_pair(self.cube, self.labels, self.name)
        self.cube = self.cube.astype(np.float32, copy=False)
        self.labels = self.labels.astype(np.int64, copy=False)
        n_classes = int(self.labels.max())
        if len(self.class_names) != n_classes:
            raise ValueError(f"Scene {self.name!r}: {len(self.class_names)} class names given but "
                             f"the labels go up to {n_classes}; give one name per class.")
        if not self.label_values:
            self.label_values = list(range(1, n_classes + 1))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_bands(self) -> int:
        return int(self.cube.shape[2])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    def class_counts(self) -> np.ndarray:
        """Labelled pixels per class, index k-1 for class k."""
        return np.bincount(self.labels.ravel(), minlength=self.num_classes + 1)[1:]


def validate_pair(cube: np.ndarray, labels: np.ndarray, name: str) -> None:
    """Reject a cube / ground truth pair that cannot be a scene, with the fix in the message."""
    if cube.ndim != 3:
        raise ValueError(f"Scene {name!r}: the cube must have 3 dimensions (height, width, bands); "
                         f"got shape {cube.shape}.")
    if labels.ndim != 2:
        raise ValueError(f"Scene {name!r}: the ground truth must have 2 dimensions (height, width); "
                         f"got shape {labels.shape}.")
    if cube.shape[:2] != labels.shape:
        raise ValueError(f"Scene {name!r}: cube is {cube.shape[0]}x{cube.shape[1]} pixels but the "
                         f"ground truth is {labels.shape[0]}x{labels.shape[1]}; they must cover the "
                         f"same pixels. Check that the files belong together.")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise ValueError(f"Scene {name!r}: the ground truth holds non-integer values; it must "
                             f"hold class numbers (0 = unlabelled).")
    elif labels.dtype.kind not in "iub":
        raise ValueError(f"Scene {name!r}: the ground truth has dtype {labels.dtype}; it must be integer.")
    if labels.size and labels.min() < 0:
        raise ValueError(f"Scene {name!r}: the ground truth holds negative values; it must hold "
                         f"class numbers >= 0 (0 = unlabelled).")
    if not np.any(labels > 0):
        raise ValueError(f"Scene {name!r}: the ground truth has no labelled pixel.")
    if not np.all(np.isfinite(cube)):
        bad = int((~np.isfinite(cube)).any(axis=2).sum())
        raise ValueError(f"Scene {name!r}: {bad} pixels of the cube hold NaN or inf values; "
                         f"fill or remove them before training.")


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
        raise ValueError(f"Ground truth holds label values {unknown} that the scene does not define "
                         f"(known: {list(values)}).")
    lookup = np.zeros(max(max(values), max(present, default=0)) + 1, dtype=np.int64)
    for k, v in enumerate(values, start=1):
        lookup[v] = k
    return lookup[labels.astype(np.int64)], [int(v) for v in values]
