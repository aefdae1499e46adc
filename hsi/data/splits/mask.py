"""`data/split=mask`: fixed splits from (H, W) mask files (nonzero = in the set), e.g. those
papers publish."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hsi.data.readers.io import read_array
from hsi.data.splits.base import (
    SplitResult,
    SplitStrategy,
    absolute_path,
    class_names_or_numbers,
    class_report,
    pixel_targets,
)
from hsi.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class MaskSplit(SplitStrategy):
    """Fixed splits from (H, W) mask files (nonzero = in the set), e.g. those papers publish.

    Without a test mask, the test set is every labelled pixel outside the train and val masks.
    The masks are read when the split is made; their paths are kept absolute.
    """

    train_mask_path: str | None = None
    test_mask_path: str | None = None
    val_mask_path: str | None = None
    method: ClassVar[str] = "mask"
    no_test_fix: ClassVar[str] = ("check data.split.test_mask_path (or leave it null: every labelled "
                                  "pixel outside the train / val masks)")

    def __post_init__(self) -> None:
        if self.train_mask_path is None:
            raise ConfigError("data/split=mask needs data.split.train_mask_path (and "
                             "data.split.test_mask_path; optional data.split.val_mask_path).")
        self.train_mask_path = absolute_path(self.train_mask_path)
        self.test_mask_path = absolute_path(self.test_mask_path)
        self.val_mask_path = absolute_path(self.val_mask_path)

    def no_validation(self) -> tuple[str, str] | None:
        return ("data.split.val_mask_path=null", "give a validation mask") if not self.val_mask_path \
            else None

    def read_masks(self) -> dict[str, np.ndarray | None]:
        """The train, test and val masks (None where no file is given)."""
        paths = {"train": self.train_mask_path, "test": self.test_mask_path, "val": self.val_mask_path}
        return {k: None if p is None else read_array(p, None, 2, f"{k} mask") for k, p in paths.items()}

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        masks = self.read_masks()
        return mask_split(labels, coords, masks["train"], masks["test"], masks["val"], class_names)


def mask_split(labels: np.ndarray, coords: np.ndarray, train_mask: np.ndarray, test_mask: np.ndarray | None,
               val_mask: np.ndarray | None = None,
               class_names: Sequence[str] | None = None) -> SplitResult:
    """Split given as (H, W) masks (nonzero = in the set) over the labelled pixels `coords`.

    Masks must match the scene's shape and must not overlap. Masked pixels without a label
    are ignored (with a warning, counted in the report). Without a test mask, the test set is
    every labelled pixel outside the train and val masks.
    """
    masks = {"train": train_mask, "val": val_mask, "test": test_mask}
    masks = {k: np.asarray(v) != 0 for k, v in masks.items() if v is not None}
    for k, m in masks.items():
        if m.shape != labels.shape:
            raise ConfigError(f"The {k} mask has shape {m.shape} but the scene is {labels.shape}; "
                             f"give a 2-D mask of the scene's size (data.split.{k}_mask_path).")
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if a in masks and b in masks and (overlap := int((masks[a] & masks[b]).sum())):
            raise ConfigError(f"The {a} and {b} masks overlap in {overlap} pixels; each pixel may be "
                             f"in one set only. Fix data.split.{a}_mask_path / "
                             f"data.split.{b}_mask_path.")
    coords = np.asarray(coords)
    targets = pixel_targets(labels, coords)
    names = class_names_or_numbers(class_names, int(targets.max()) + 1)
    if "test" not in masks:
        masks["test"] = ~masks["train"] & ~masks.get("val", np.zeros_like(masks["train"]))
        masks["test"] &= labels > 0
    unlabelled = {k: int((m & (labels == 0)).sum()) for k, m in masks.items()}
    if any(unlabelled.values()):
        log.warning("data/split=mask: masked pixels without a label are ignored: %s",
                    ", ".join(f"{k} {v}" for k, v in unlabelled.items() if v))
    split = {k: np.flatnonzero(masks[k][coords[:, 0], coords[:, 1]]) if k in masks
             else np.zeros(0, dtype=np.int64) for k in ("train", "val", "test")}
    if len(split["train"]) == 0 or len(split["test"]) == 0:
        raise ConfigError("The train and test masks must each select at least one labelled pixel.")
    missing = sorted(set(range(len(names))) - set(targets[split["train"]].tolist()))
    if missing:
        log.warning("data/split=mask: no training pixel for %s", ", ".join(names[c] for c in missing))
    report = {"method": "mask", "ignored_unlabelled": unlabelled,
              "classes": class_report(targets, split, names)}
    return split, report
