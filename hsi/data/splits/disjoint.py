"""`data/split=disjoint`: spatially disjoint subsets, whole square spatial blocks per subset,
validation and test pixels within the window's margin of a training pixel dropped. The spatial
block assignment itself is `hsi.data.splits.block_assignment`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hsi.data.splits.base import (
    SplitIndices,
    SplitResult,
    SplitStrategy,
    check_flag,
    check_ratios,
    class_names_or_numbers,
    class_report,
    pixel_targets,
)
from hsi.data.splits.block_assignment import (
    assign_blocks,
    assign_blocks_every_class,
    field_labels,
    margin_keep,
    pool_small_fields,
)
from hsi.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DisjointSplit(SplitStrategy):
    """Whole `block_size` square blocks per subset; val / test pixels within `patch_size // 2`
    of a training pixel dropped.

    `every_class`: blocks holding a class that could not otherwise keep training, validation
    and test pixels are halved until it can, each class first gets a training, a test and a
    validation block that survive the margin, and the shares count the dropped pixels
    (`assign_blocks_every_class`). False (the default) keeps the original assignment, so
    older runs rebuild the same split.

    `margin`: pixels dropped around the training pixels; None (the default) is the window's
    `patch_size // 2`. A larger one lets runs with different windows share one split (that of
    the largest window); a smaller one would put test pixels inside training windows and is refused.

    `every_field`: what `every_class` does for classes, done for fields (8-connected regions of
    one class, `field_labels`): every field gets training pixels and, where the margin allows,
    validation and test pixels, and the shares are aimed at per field; fields smaller than one
    block are pooled per class (`pool_small_fields`). Without it a class is often trained on one
    of its fields and tested on the others (implies `every_class`).
    """

    test_ratio: float = 0.9
    val_ratio: float = 0.05
    block_size: int = 16
    every_class: bool = False
    margin: int | None = None
    every_field: bool = False
    method: ClassVar[str] = "disjoint"
    no_test_fix: ClassVar[str] = ("lower data.split.block_size or data.split.margin, or raise "
                                  "data.split.test_ratio")

    def __post_init__(self) -> None:
        self.test_ratio, self.val_ratio = float(self.test_ratio), float(self.val_ratio)
        check_ratios(self.test_ratio, self.val_ratio)
        if self.block_size != int(self.block_size) or self.block_size < 1:
            raise ConfigError(f"data.split.block_size={self.block_size} must be an integer >= 1.")
        check_flag(self.every_class, "every_class")
        check_flag(self.every_field, "every_field")
        self.block_size, self.every_class = int(self.block_size), bool(self.every_class)
        self.every_field = bool(self.every_field)
        if self.margin is not None and (isinstance(self.margin, bool)
                                        or not isinstance(self.margin, int) or self.margin < 0):
            raise ConfigError(f"data.split.margin={self.margin!r} must be a whole number of "
                              "pixels >= 0, or null for the window's own (patch_size // 2).")

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        if self.margin is not None:
            if self.margin < patch_size // 2:
                raise ConfigError(
                    f"data.split.margin={self.margin} is smaller than the window's margin "
                    f"(data.patch_size={patch_size} // 2 = {patch_size // 2}): test pixels would "
                    f"lie inside training windows. Set data.split.margin >= {patch_size // 2}, "
                    "or null to use the window's.")
            patch_size = 2 * self.margin + 1  # the split sees the window whose margin it keeps
        return disjoint_split(labels, coords, self.test_ratio, self.val_ratio, self.block_size,
                              patch_size, seed, class_names, self.every_class, self.every_field)


def disjoint_split(labels: np.ndarray, coords: np.ndarray, test_ratio: float, val_ratio: float = 0.0,
                   block_size: int = 16, patch_size: int = 1, seed: int = 0,
                   class_names: Sequence[str] | None = None,
                   every_class: bool = False, every_field: bool = False) -> SplitResult:
    """Spatially disjoint split: whole `block_size` x `block_size` blocks go to one subset.

    `labels` is the (H, W) ground truth (0 = unlabelled, k = class k - 1), `coords` the
    (N, 2) labelled pixels the returned indices refer to. Blocks go to subsets as
    `assign_blocks` says (`assign_blocks_every_class` with `every_class`, whose blocks may be
    smaller where a class needs it); then every val / test pixel within `patch_size // 2`
    (Chebyshev) of a training pixel is dropped (`margin_keep`), so no evaluation pixel lies in
    a training window. With `every_field` the every-class assignment runs over fields (8-connected
    regions of one class) instead of classes. The report gives each class's achieved shares and
    dropped pixels (and, with `every_field`, how many fields were trained and tested).
    """
    coords = np.asarray(coords)
    targets = pixel_targets(labels, coords)
    n_classes = int(targets.max()) + 1
    names = class_names_or_numbers(class_names, n_classes)
    fields = field_labels(labels, coords) if every_field else None
    subset_of_block, block_of, sides = _assign(labels, coords, targets, fields, every_class or every_field,
                                               test_ratio, val_ratio, block_size, patch_size, seed)
    subset = subset_of_block[block_of]  # 0 train, 1 val, 2 test, per labelled pixel
    train = np.flatnonzero(subset == 0)
    missing = sorted(set(range(n_classes)) - set(targets[train].tolist()))
    if missing:
        raise ConfigError(f"data/split=disjoint left no training block for "
                          f"{', '.join(names[c] for c in missing)}; use a smaller data.split.block_size, "
                          f"a lower data.split.test_ratio, or another data.split_seed.")
    keep = margin_keep(labels.shape, coords, train, patch_size)
    split = {"train": train, "val": np.flatnonzero((subset == 1) & keep),
             "test": np.flatnonzero((subset == 2) & keep)}
    _warn_unevaluated(targets, split, names, val_ratio)
    dropped = np.flatnonzero((subset > 0) & ~keep)
    report = _disjoint_report(targets, split, names, subset_of_block, dropped, block_size, patch_size)
    _report_groups(report, split, sides, fields, block_size)
    log.info("data/split=disjoint: %d blocks of %d px; %d val/test pixels within %d px of training "
             "dropped; shares per class (train/val/test): %s", len(subset_of_block), block_size,
             len(dropped), patch_size // 2,
             "; ".join(f"{r['name']} {r['train_share']:.2f}/{r['val_share']:.2f}/"
                       f"{r['test_share']:.2f}" for r in report["classes"]))
    return split, report


def _assign(labels: np.ndarray, coords: np.ndarray, targets: np.ndarray, fields: np.ndarray | None,
            every: bool, test_ratio: float, val_ratio: float, block_size: int, patch_size: int,
            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(subset per block, block per labelled pixel, block sides or None) from `block_assignment`:
    with `every`, each group (class, or field when `fields` is given) gets every subset."""
    if not every:
        subset_of_block, block_of = assign_blocks(labels.shape, coords, targets, int(targets.max()) + 1,
                                                  test_ratio, val_ratio, block_size, seed)
        return subset_of_block, block_of, None
    groups = targets if fields is None else pool_small_fields(fields, targets, block_size ** 2)
    return assign_blocks_every_class(labels.shape, coords, groups, int(groups.max()) + 1, test_ratio,
                                     val_ratio, block_size, patch_size, seed)


def _warn_unevaluated(targets: np.ndarray, split: SplitIndices, names: list[str], val_ratio: float) -> None:
    """Warn about classes left without test (or, when asked for, validation) pixels."""
    classes = set(range(len(names)))
    untested = sorted(classes - set(targets[split["test"]].tolist()))
    if untested:
        log.warning("data/split=disjoint: no test pixel left for %s (all their blocks went to "
                    "training or lie within the window margin); AA covers the other classes.",
                    ", ".join(names[c] for c in untested))
    unvalidated = sorted(classes - set(targets[split["val"]].tolist()))
    if val_ratio > 0 and unvalidated:
        log.warning("data/split=disjoint: no validation pixel left for %s.",
                    ", ".join(names[c] for c in unvalidated))


def _report_groups(report: dict[str, Any], split: SplitIndices, sides: np.ndarray | None,
                   fields: np.ndarray | None, block_size: int) -> None:
    """The every-class block sides and the every-field counts, added to the split's report."""
    if sides is not None:
        side, n = np.unique(sides, return_counts=True)
        report["every_class"] = True
        report["block_sides"] = {int(s): int(k) for s, k in zip(side[::-1], n[::-1])}
    if fields is not None:
        report["every_field"] = True
        sizes = np.bincount(fields)
        report["fields"] = {"total": len(sizes), "pooled": int((sizes < block_size ** 2).sum()),
                            **{k: len(np.unique(fields[v])) for k, v in split.items()}}


def _disjoint_report(targets: np.ndarray, split: SplitIndices, names: list[str],
                     subset_of_block: np.ndarray, dropped: np.ndarray, block_size: int,
                     patch_size: int) -> dict[str, Any]:
    return {"method": "disjoint", "block_size": int(block_size), "margin": int(patch_size // 2),
            "blocks": {k: int((subset_of_block == i).sum()) for i, k in enumerate(split)},
            "dropped": int(len(dropped)),
            "classes": class_report(targets, split, names, dropped=dropped)}
