"""Train / validation / test splits of the labelled pixels: random, per class, spatially disjoint, masks.

Each strategy is a small dataclass (`RandomSplit`, `PerClassSplit`, `DisjointSplit`,
`MaskSplit`) built from `conf/data/split/<name>.yaml` (`data/split=<name>`). Called with the
scene's labels and its labelled pixels, it returns indices into those pixels for "train",
"val" and "test", and a report; `config()` gives it back as a plain dict with `_target_`, so
a checkpoint's hyperparameters rebuild it with `hydra.utils.instantiate`. The module-level
functions (`stratified_split`, `per_class_split`, `disjoint_split`, `mask_split`) do the work and
all return `(split, report)`; the strategies check their settings once, when built, and the
functions take them as checked. The block assignment of the disjoint split is `hsi.data.blocks`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hsi.data.blocks import (
    assign_blocks,
    assign_blocks_every_class,
    field_labels,
    margin_keep,
    pool_small_fields,
)
from hsi.data.io import read_array
from hsi.errors import ConfigError

log = logging.getLogger(__name__)

SplitIndices = dict[str, np.ndarray]
SplitResult = tuple[SplitIndices, dict[str, Any]]


def check_ratios(test_ratio: float, val_ratio: float) -> None:
    """`test_ratio` of the labelled pixels held out, `val_ratio` of them drawn from the held-out ones."""
    if not 0 < test_ratio < 1:
        raise ConfigError(f"data.split.test_ratio={test_ratio} must lie strictly between 0 and 1.")
    if not 0 <= val_ratio < test_ratio:
        raise ConfigError(f"data.split.val_ratio={val_ratio} must be >= 0 and below "
                         f"data.split.test_ratio={test_ratio}: validation pixels are drawn from "
                         f"the held-out ones.")


def check_per_class(train_per_class: int, val_ratio: float) -> None:
    if train_per_class != int(train_per_class) or train_per_class < 1:
        raise ConfigError(f"data.split.train_per_class={train_per_class} must be an integer >= 1.")
    if not 0 <= val_ratio < 1:
        raise ConfigError(f"data.split.val_ratio={val_ratio} must lie in [0, 1).")


def check_block_size(block_size: int) -> None:
    if block_size != int(block_size) or block_size < 1:
        raise ConfigError(f"data.split.block_size={block_size} must be an integer >= 1.")


def check_flag(value: bool, key: str) -> None:
    """`data.split.<key>` must be a boolean."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"data.split.{key}={value!r} must be true or false.")


def _targets(labels: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Class (0-based) of each labelled pixel (row, col) in `coords`."""
    coords = np.asarray(coords)
    return labels[coords[:, 0], coords[:, 1]] - 1


def _absolute(path: str | Path | None) -> str | None:
    """Paths on the command line are relative to where the command runs."""
    return None if path is None else str(Path(path).expanduser().resolve())


# -- the strategies --------------------------------------------------------------------------
class SplitStrategy:
    """A way to split the labelled pixels; subclasses are dataclasses of their settings.

    `strategy(labels, coords, patch_size, seed, class_names)`: `labels` is the (H, W) ground
    truth (0 = unlabelled, k = class k - 1), `coords` the (N, 2) labelled pixels, `patch_size`
    the window side (a window reaches `patch_size // 2` pixels out). Returns indices into
    `coords` for "train", "val" and "test", and the split's report.
    """

    method: ClassVar[str]

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Plain values and `_target_`: `hydra.utils.instantiate(strategy.config())` rebuilds it."""
        cls = type(self)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **fields}


@dataclass
class RandomSplit(SplitStrategy):
    """Stratified by class: `test_ratio` held out, `val_ratio` drawn from them (the recipe)."""

    test_ratio: float = 0.9
    val_ratio: float = 0.05
    method: ClassVar[str] = "random"

    def __post_init__(self) -> None:
        self.test_ratio, self.val_ratio = float(self.test_ratio), float(self.val_ratio)
        check_ratios(self.test_ratio, self.val_ratio)

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        return stratified_split(_targets(labels, coords), self.test_ratio, self.val_ratio, seed,
                                class_names)


@dataclass
class PerClassSplit(SplitStrategy):
    """`train_per_class` training pixels per class (capped at half a small class); `val_ratio`
    of each class for validation."""

    train_per_class: int = 20
    val_ratio: float = 0.05
    method: ClassVar[str] = "per_class"

    def __post_init__(self) -> None:
        check_per_class(self.train_per_class, self.val_ratio)
        self.train_per_class, self.val_ratio = int(self.train_per_class), float(self.val_ratio)

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        return per_class_split(_targets(labels, coords), self.train_per_class, self.val_ratio, seed,
                               class_names)


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

    def __post_init__(self) -> None:
        self.test_ratio, self.val_ratio = float(self.test_ratio), float(self.val_ratio)
        check_ratios(self.test_ratio, self.val_ratio)
        check_block_size(self.block_size)
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

    def __post_init__(self) -> None:
        if self.train_mask_path is None:
            raise ConfigError("data/split=mask needs data.split.train_mask_path (and "
                             "data.split.test_mask_path; optional data.split.val_mask_path).")
        self.train_mask_path = _absolute(self.train_mask_path)
        self.test_mask_path = _absolute(self.test_mask_path)
        self.val_mask_path = _absolute(self.val_mask_path)

    def read_masks(self) -> dict[str, np.ndarray | None]:
        """The train, test and val masks (None where no file is given)."""
        paths = {"train": self.train_mask_path, "test": self.test_mask_path, "val": self.val_mask_path}
        return {k: None if p is None else read_array(p, None, 2, f"{k} mask") for k, p in paths.items()}

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        masks = self.read_masks()
        return mask_split(labels, coords, masks["train"], masks["test"], masks["val"], class_names)


SPLIT_STRATEGIES: dict[str, type[SplitStrategy]] = {
    cls.method: cls for cls in (RandomSplit, PerClassSplit, DisjointSplit, MaskSplit)}


# -- the implementations ---------------------------------------------------------------------
def stratified_split(targets: np.ndarray, test_ratio: float, val_ratio: float = 0.0,
                     seed: int = 0,
                     class_names: Sequence[str] | None = None) -> SplitResult:
    """Indices into `targets` (class per labelled pixel) for "train", "val" and "test", and the report.

    `test_ratio` of all pixels are held out from training, stratified by class (scikit-learn's
    `train_test_split`, as the notebook recipe does); `val_ratio` of all pixels are then drawn
    from the held-out ones, also stratified; the rest is the test set.
    """
    from sklearn.model_selection import train_test_split

    targets = np.asarray(targets)
    n = len(targets)
    classes, counts = np.unique(targets, return_counts=True)
    names = list(class_names) if class_names is not None else [str(c) for c in range(classes.max() + 1)]
    needed = 3 if val_ratio > 0 else 2
    small = [f"{names[c]} ({k} pixels)" for c, k in zip(classes, counts) if k < needed]
    if small:
        raise ConfigError(f"Too few labelled pixels to split: {', '.join(small)}; each class needs "
                         f"at least {needed}. Leave such classes out or merge them.")
    index = np.arange(n)
    train, held = train_test_split(index, test_size=test_ratio, random_state=seed,
                                   stratify=targets)
    if val_ratio > 0:
        n_val = int(round(val_ratio * n))
        val, test = train_test_split(held, train_size=n_val, random_state=seed,
                                     stratify=targets[held])
    else:
        val, test = held[:0], held
    missing = sorted(set(classes) - set(targets[train]))
    if missing:
        raise ConfigError(f"With data.split.test_ratio={test_ratio} no training pixel is left for "
                         f"{', '.join(names[c] for c in missing)} (too few pixels); lower "
                         f"data.split.test_ratio or leave those classes out.")
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}, {"method": "random"}


def _names(class_names: Sequence[str] | None, n_classes: int) -> list[str]:
    return list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]


def per_class_split(targets: np.ndarray, train_per_class: int, val_ratio: float = 0.0, seed: int = 0,
                    class_names: Sequence[str] | None = None) -> SplitResult:
    """`train_per_class` training pixels per class; `val_ratio` of all pixels for validation.

    A class with fewer than 2 * `train_per_class` pixels gets half of them (rounded down) for
    training, so it keeps test pixels; such caps are logged and listed in the report. The
    validation pixels are drawn per class (`val_ratio` of each class, rounded) from the
    non-training pixels, always leaving at least one test pixel per class.
    """
    targets = np.asarray(targets)
    n_classes = int(targets.max()) + 1 if len(targets) else 0
    names = _names(class_names, n_classes)
    counts = np.bincount(targets, minlength=n_classes)
    small = [f"{names[c]} ({k} pixels)" for c, k in enumerate(counts) if 0 < k < 2]
    if small:
        raise ConfigError(f"Too few labelled pixels to split: {', '.join(small)}; each class needs at "
                         f"least 2 (one to train, one to test). Leave such classes out "
                         f"(data.ignore_labels) or merge them.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    capped: dict[str, int] = {}
    for c in range(n_classes):
        members = rng.permutation(np.flatnonzero(targets == c))
        k = len(members)
        if k == 0:
            continue
        n_train = min(train_per_class, k // 2)
        if n_train < train_per_class:
            capped[names[c]] = n_train
        n_val = min(int(round(val_ratio * k)), k - n_train - 1)
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train:n_train + n_val])
        parts["test"].append(members[n_train + n_val:])
    if capped:
        log.warning("data/split=per_class: %d training pixels per class requested, but these classes "
                    "have fewer than twice that and were capped at half their pixels: %s",
                    train_per_class, ", ".join(f"{k} -> {v}" for k, v in capped.items()))
    split = {k: np.sort(np.concatenate(v)) if v else np.zeros(0, dtype=np.int64) for k, v in parts.items()}
    report = {"method": "per_class", "train_per_class": int(train_per_class), "capped": capped,
              "classes": _class_report(targets, split, names)}
    return split, report


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
    targets = _targets(labels, coords)
    n_classes = int(targets.max()) + 1
    names = _names(class_names, n_classes)
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
    """(subset per block, block per labelled pixel, block sides or None) from `hsi.data.blocks`:
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
            "classes": _class_report(targets, split, names, dropped=dropped)}


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
    targets = _targets(labels, coords)
    names = _names(class_names, int(targets.max()) + 1)
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
              "classes": _class_report(targets, split, names)}
    return split, report


def _class_report(targets: np.ndarray, split: dict[str, np.ndarray], names: list[str],
                  dropped: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Pixels and shares of each class in each subset (shares of the class's labelled pixels)."""
    rows = []
    for c, name in enumerate(names):
        total = int((targets == c).sum())
        row: dict[str, Any] = {"name": name, "pixels": total}
        for k, idx in split.items():
            n = int((targets[idx] == c).sum())
            row[k] = n
            row[f"{k}_share"] = n / total if total else 0.0
        if dropped is not None:
            row["dropped"] = int((targets[dropped] == c).sum())
        rows.append(row)
    return rows
