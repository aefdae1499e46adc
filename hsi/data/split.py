"""Train / validation / test splits of the labelled pixels: random, per class, spatially disjoint, masks.

Each strategy is a small dataclass (`RandomSplit`, `PerClassSplit`, `DisjointSplit`,
`MaskSplit`) built from `conf/data/split/<name>.yaml` (`data/split=<name>`). Called with the
scene's labels and its labelled pixels, it returns indices into those pixels for "train",
"val" and "test", and a report; `config()` gives it back as a plain dict with `_target_`, so
a checkpoint's hyperparameters rebuild it with `hydra.utils.instantiate`. The module-level
functions (`stratified_split`, `per_class_split`, `disjoint_split`, `mask_split`) do the work.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hsi.data.io import read_array
from hsi.data.leakage import window_mask
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
        split = stratified_split(_targets(labels, coords), self.test_ratio, self.val_ratio, seed,
                                 class_names)
        return split, {"method": self.method}


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
                     class_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Indices into `targets` (class per labelled pixel) for "train", "val" and "test".

    `test_ratio` of all pixels are held out from training, stratified by class (scikit-learn's
    `train_test_split`, as the notebook recipe does); `val_ratio` of all pixels are then drawn
    from the held-out ones, also stratified; the rest is the test set.
    """
    from sklearn.model_selection import train_test_split

    targets = np.asarray(targets)
    n = len(targets)
    check_ratios(test_ratio, val_ratio)
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
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


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
    check_per_class(train_per_class, val_ratio)
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
    check_ratios(test_ratio, val_ratio)
    check_block_size(block_size)
    coords = np.asarray(coords)
    targets = _targets(labels, coords)
    n_classes = int(targets.max()) + 1
    names = _names(class_names, n_classes)
    sides = fields = None
    if every_class or every_field:
        # the groups that each get a training, a validation and a test block: classes, or fields
        fields = field_labels(labels, coords) if every_field else None
        groups = targets if fields is None else pool_small_fields(fields, targets, block_size ** 2)
        subset_of_block, block_of, sides = assign_blocks_every_class(
            labels.shape, coords, groups, int(groups.max()) + 1, test_ratio, val_ratio, block_size,
            patch_size, seed)
    else:
        subset_of_block, block_of = assign_blocks(labels.shape, coords, targets, n_classes,
                                                  test_ratio, val_ratio, block_size, seed)
    subset = subset_of_block[block_of]  # 0 train, 1 val, 2 test, per labelled pixel
    train = np.flatnonzero(subset == 0)
    missing = sorted(set(range(n_classes)) - set(targets[train].tolist()))
    if missing:
        lacking = ", ".join(names[c] for c in missing)
        raise ConfigError(f"data/split=disjoint left no training block for {lacking}; "
                         f"use a smaller data.split.block_size, a lower data.split.test_ratio, or "
                         f"another data.split_seed.")
    keep = margin_keep(labels.shape, coords, train, patch_size)
    val = np.flatnonzero((subset == 1) & keep)
    test = np.flatnonzero((subset == 2) & keep)
    untested = sorted(set(range(n_classes)) - set(targets[test].tolist()))
    if untested:
        log.warning("data/split=disjoint: no test pixel left for %s (all their blocks went to "
                    "training or lie within the window margin); AA covers the other classes.",
                    ", ".join(names[c] for c in untested))
    unvalidated = sorted(set(range(n_classes)) - set(targets[val].tolist()))
    if val_ratio > 0 and unvalidated:
        log.warning("data/split=disjoint: no validation pixel left for %s.",
                    ", ".join(names[c] for c in unvalidated))
    dropped = np.flatnonzero((subset > 0) & ~keep)
    split = {"train": train, "val": val, "test": test}
    report = _disjoint_report(targets, split, names, subset_of_block, dropped, block_size, patch_size)
    if sides is not None:
        side, n = np.unique(sides, return_counts=True)
        report["every_class"] = True
        report["block_sides"] = {int(s): int(k) for s, k in zip(side[::-1], n[::-1])}
    if fields is not None:
        report["every_field"] = True
        sizes = np.bincount(fields)
        report["fields"] = {"total": len(sizes), "pooled": int((sizes < block_size ** 2).sum()),
                            **{k: len(np.unique(fields[v])) for k, v in split.items()}}
    log.info("data/split=disjoint: %d blocks of %d px; %d val/test pixels within %d px of training "
             "dropped; shares per class (train/val/test): %s", len(subset_of_block), block_size,
             len(dropped), patch_size // 2,
             "; ".join(f"{r['name']} {r['train_share']:.2f}/{r['val_share']:.2f}/"
                       f"{r['test_share']:.2f}" for r in report["classes"]))
    return split, report


def field_labels(labels: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Field (0-based) of each labelled pixel (row, col) in `coords`: the 8-connected regions of
    each class in the (H, W) ground truth `labels`, numbered class by class."""
    from scipy.ndimage import label

    fields = np.zeros(labels.shape, dtype=np.int64)
    count = 0
    for value in np.unique(labels[labels > 0]):
        regions, n = label(labels == value, structure=np.ones((3, 3), dtype=bool))
        fields[regions > 0] = regions[regions > 0] + count
        count += n
    coords = np.asarray(coords)
    return fields[coords[:, 0], coords[:, 1]] - 1


def pool_small_fields(fields: np.ndarray, targets: np.ndarray, min_pixels: int) -> np.ndarray:
    """Groups (0-based, numbered as the fields) the split serves one by one: each field of at
    least `min_pixels` pixels on its own, and the smaller fields of each class together (a field
    smaller than one block cannot hold a training, a validation and a test block; Pavia
    University's ground truth has 194 such fragments among its 250 fields)."""
    small = np.bincount(fields)[fields] < min_pixels
    pooled = np.where(small, fields.max() + 1 + targets, fields)
    # number the groups by their first field, so a scene without small fields keeps its numbering
    first = np.full(int(pooled.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, pooled, fields)
    order = np.unique(first[pooled])
    return np.searchsorted(order, first[pooled])


def assign_blocks(shape: tuple[int, int], coords: np.ndarray, targets: np.ndarray, n_classes: int,
                  test_ratio: float, val_ratio: float, block_size: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which subset (0 train, 1 val, 2 test) each block goes to, and each pixel's block.

    Blocks are the non-empty `block_size` squares of a (H, W) scene holding labelled pixels
    `coords` (classes `targets`). First every class gets one training block (rarest class
    first; its smallest block holding the class), so a class confined to a few blocks still
    reaches training. The other blocks are visited in a seeded random order and each goes to
    the subset that most needs its pixels: the block's per-class pixel counts weighted by the
    fraction of that subset's per-class target (1 - test_ratio, val_ratio, test_ratio -
    val_ratio of each class) still missing.
    """
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    blocks_per_row = -(-shape[1] // block_size)
    block = (coords[:, 0] // block_size) * blocks_per_row + coords[:, 1] // block_size
    block_ids, block_of = np.unique(block, return_inverse=True)
    block_counts = np.zeros((len(block_ids), n_classes))
    np.add.at(block_counts, (block_of, targets), 1)
    shares = np.array([1 - test_ratio, val_ratio, test_ratio - val_ratio])
    goal = shares[:, None] * counts[None, :]  # (3 subsets, classes)
    have = np.zeros_like(goal)
    subset_of_block = np.full(len(block_ids), -1, dtype=np.int64)
    for c in np.argsort(counts, kind="stable"):
        if have[0, c] == 0:
            candidates = np.flatnonzero((block_counts[:, c] > 0) & (subset_of_block < 0))
            if len(candidates):
                b = candidates[np.argmin(block_counts[candidates].sum(axis=1))]
                subset_of_block[b] = 0
                have[0] += block_counts[b]
    for b in np.random.default_rng(seed).permutation(len(block_ids)):
        if subset_of_block[b] >= 0:
            continue
        # need: the block's pixels weighted by how much of each class's target is still missing
        need = (block_counts[b] * (goal - have) / np.maximum(goal, 1e-12)).sum(axis=1)
        if val_ratio == 0:
            need[1] = -np.inf
        s = int(np.argmax(need))  # ties go to train, then val
        subset_of_block[b] = s
        have[s] += block_counts[b]
    return subset_of_block, block_of


def margin_keep(shape: tuple[int, int], coords: np.ndarray, train: np.ndarray,
                patch_size: int) -> np.ndarray:
    """False for each pixel of `coords` within `patch_size // 2` (Chebyshev) of a training pixel."""
    near = window_mask(shape, coords[train], patch_size)
    return ~near[coords[:, 0], coords[:, 1]]


# -- every class in every subset (data.split.every_class) ---------------------------------------
def _near_pixels(index: np.ndarray, points: np.ndarray, margin: int) -> np.ndarray:
    """Labelled pixels (indices into coords; `index` is the (H, W) image of them, -1 where
    unlabelled) within `margin` (Chebyshev) of `points` (row, col), the points included."""
    from scipy.ndimage import maximum_filter

    shape = np.array(index.shape)
    r0, c0 = np.maximum(points.min(axis=0) - margin, 0)
    r1, c1 = np.minimum(points.max(axis=0) + margin + 1, shape)
    local = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    local[points[:, 0] - r0, points[:, 1] - c0] = True
    if margin > 0:
        local = maximum_filter(local, size=2 * margin + 1, mode="constant", cval=False)
    near = index[r0:r1, c0:c1][local]
    return near[near >= 0]


def _block_members(block_of: np.ndarray) -> list[np.ndarray]:
    """Indices of the pixels of each block, block by block."""
    order = np.argsort(block_of, kind="stable")
    starts = np.searchsorted(block_of[order], np.arange(int(block_of.max()) + 2))
    return [order[starts[b]:starts[b + 1]] for b in range(len(starts) - 1)]


def refine_blocks(index: np.ndarray, coords: np.ndarray, targets: np.ndarray, n_classes: int,
                  block_size: int, margin: int, wanted: int, min_train: np.ndarray | None = None,
                  extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of `block_size`, halved where a class needs it: (block of each pixel, side of each block).

    A block *serves* a class when, given to training, it leaves the class's pixels outside its
    `margin` in `wanted` other blocks (2: one for validation, one for test). Rarest class first:
    while no block serves the class, every block holding it is halved (squares aligned within
    their `block_size` cell), down to single pixels. If the blocks that serve it hold fewer than
    `min_train[c]` of its pixels, finer blocks are kept where one of them serves it with that
    many. `extra[c]`: halvings of class c's blocks beyond that. Halving never undoes what a
    rarer class got.
    """
    side = np.full(len(coords), block_size, dtype=np.int64)
    cell = coords // block_size
    offset = coords - cell * block_size
    counts = np.bincount(targets, minlength=n_classes)
    min_train = np.ones(n_classes, dtype=np.int64) if min_train is None else np.asarray(min_train)
    extra = np.zeros(n_classes, dtype=np.int64) if extra is None else np.array(extra)

    def blocks(side: np.ndarray) -> np.ndarray:
        key = np.concatenate([cell, side[:, None], offset // side[:, None]], axis=1)
        return np.unique(key, axis=0, return_inverse=True)[1].reshape(-1)

    def served(c: int, block_of: np.ndarray, least: int) -> bool:
        members, mine = _block_members(block_of), targets == c
        for t in np.unique(block_of[mine]):
            if mine[members[t]].sum() < least:
                continue
            alive = mine.copy()
            alive[_near_pixels(index, coords[members[t]], margin)] = False
            if len(np.unique(block_of[alive])) >= wanted:
                return True
        return False

    def halved(c: int, side: np.ndarray, block_of: np.ndarray) -> np.ndarray | None:
        holding = np.isin(block_of, block_of[targets == c])
        if side[holding].max() == 1:
            return None
        finer = side.copy()
        finer[holding] = np.maximum(side[holding] // 2, 1)
        return finer

    block_of = blocks(side)
    for c in np.argsort(counts, kind="stable"):
        if counts[c] == 0:
            continue
        while not served(int(c), block_of, 1) and (finer := halved(int(c), side, block_of)) is not None:
            side, block_of = finer, blocks(finer)
        if min_train[c] > 1 and not served(int(c), block_of, int(min_train[c])):
            trial_side, trial = side, block_of
            while (finer := halved(int(c), trial_side, trial)) is not None:
                trial_side, trial = finer, blocks(finer)
                if served(int(c), trial, int(min_train[c])):
                    side, block_of = trial_side, trial
                    break
        for _ in range(int(extra[c])):
            if (finer := halved(int(c), side, block_of)) is None:
                break
            side, block_of = finer, blocks(finer)
    sides = np.zeros(int(block_of.max()) + 1, dtype=np.int64)
    sides[block_of] = side
    return block_of, sides


class _Assignment:
    """Blocks given to subsets one at a time (0 train, 1 val, 2 test), tracking which labelled
    pixels fall within the margin of a training pixel and each subset's surviving pixels per class."""

    def __init__(self, index: np.ndarray, coords: np.ndarray, targets: np.ndarray, n_classes: int,
                 block_of: np.ndarray, margin: int) -> None:
        self.index, self.coords, self.targets, self.n_classes = index, coords, targets, n_classes
        self.block_of, self.margin = block_of, margin
        self.members = _block_members(block_of)
        self.subset = np.full(len(self.members), -1, dtype=np.int64)
        self.near = np.zeros(len(coords), dtype=bool)  # within the margin of a training pixel
        self.have = np.zeros((3, n_classes))  # training pixels; surviving val / test pixels
        self._around: dict[int, np.ndarray] = {}

    def count(self, pixels: np.ndarray) -> np.ndarray:
        return np.bincount(self.targets[pixels], minlength=self.n_classes).astype(np.float64)

    def around(self, b: int) -> np.ndarray:
        """Pixels of other blocks within the margin of block b's pixels."""
        if b not in self._around:
            near = _near_pixels(self.index, self.coords[self.members[b]], self.margin)
            self._around[b] = near[self.block_of[near] != b]
        return self._around[b]

    def alive(self, b: int) -> np.ndarray:
        """Block b's pixels per class outside every training margin so far."""
        pixels = self.members[b]
        return self.count(pixels[~self.near[pixels]])

    def victims(self, b: int) -> np.ndarray:
        """Pixels not yet within a training margin that block b would put within one."""
        pixels = self.around(b)
        return pixels[~self.near[pixels]]

    def killed(self, victims: np.ndarray) -> np.ndarray:
        """(3, classes): the val / test pixels among `victims`."""
        subset = self.subset[self.block_of[victims]]
        out = np.zeros((3, self.n_classes))
        for s in (1, 2):
            out[s] = self.count(victims[subset == s])
        return out

    def takes_last(self, b: int) -> bool:
        """Whether block b, given to training, would drop a class's last validation or test pixels."""
        killed = self.killed(self.victims(b))
        return bool(((killed[1:] > 0) & (killed[1:] >= self.have[1:])).any())

    def give(self, b: int, s: int) -> None:
        self.subset[b] = s
        if s == 0:
            victims = self.victims(b)
            self.have -= self.killed(victims)
            self.near[victims] = True
            self.have[0] += self.count(self.members[b])
        else:
            self.have[s] += self.alive(b)


def assign_blocks_every_class(shape: tuple[int, int], coords: np.ndarray, targets: np.ndarray,
                              n_classes: int, test_ratio: float, val_ratio: float, block_size: int,
                              patch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which subset (0 train, 1 val, 2 test) each block goes to, each pixel's block, each block's side.

    The margin is `patch_size // 2`. Blocks come from `refine_blocks` (halved where a class
    needs finer ones, and where that puts half its training target in one block). Then, rarest
    class first, each class gets a training block (`_reserve_training`), then a test and a
    validation block holding its pixels outside every training margin (the smallest such
    block). The other blocks are visited in a seeded random order and each goes to the subset
    that most needs its pixels, as in `assign_blocks`, except that validation and test count
    only pixels outside the training margins (the shares aimed at are the shares achieved) and
    a block never goes to training if that drops a class's last validation or test pixels.
    Should a class still end without validation or test pixels (other classes' training blocks
    took them), its blocks are halved once more and the assignment drawn again, until it has
    them or its blocks are single pixels.
    """
    margin = patch_size // 2
    coords = np.asarray(coords)
    index = np.full(shape, -1, dtype=np.int64)
    index[coords[:, 0], coords[:, 1]] = np.arange(len(coords))
    wanted = 2 if val_ratio > 0 else 1
    # half a class's training target in one block (at least one pixel, at most a quarter block),
    # where finer blocks allow it
    min_train = (1 - test_ratio) * np.bincount(targets, minlength=n_classes) // 2
    min_train = np.clip(min_train, 1, max(block_size ** 2 // 4, 1)).astype(np.int64)
    extra = np.zeros(n_classes, dtype=np.int64)
    while True:  # other classes' training blocks may still take a class's last val / test block:
        # then its blocks are halved once more and the assignment is drawn again
        block_of, sides = refine_blocks(index, coords, targets, n_classes, block_size, margin,
                                        wanted, min_train, extra)
        state = _assign_every_class(index, coords, targets, n_classes, test_ratio, val_ratio,
                                    block_of, margin, seed)
        halvable = np.zeros(n_classes, dtype=bool)
        np.logical_or.at(halvable, targets, sides[block_of] > 1)
        lacking = ((state.have[2] == 0) | ((state.have[1] == 0) & (val_ratio > 0))) & halvable
        if not lacking.any():
            return state.subset, block_of, sides
        extra += lacking


def _reserve_training(state: _Assignment, c: int, holding: np.ndarray, counts: np.ndarray,
                      test_ratio: float, wanted: int) -> None:
    """Give class c a training block unless it has one: among its free blocks, the first (fewest
    of its pixels lost to evaluation less those it trains, up to its target; then the smallest)
    that leaves its pixels outside the margin in `wanted` other blocks without dropping another
    class's last validation or test pixels; failing that, the one closest to it."""
    if state.have[0, c] > 0:
        return
    targets, block_of = state.targets, state.block_of

    def cost(b: int) -> tuple[float, int]:
        lost = state.victims(b)
        lost = lost[(targets[lost] == c) & (state.subset[block_of[lost]] != 0)]
        own = int((targets[state.members[b]] == c).sum())
        return len(lost) - min(own, (1 - test_ratio) * counts[c]), len(state.members[b])

    best = None
    for b in sorted((int(b) for b in holding if state.subset[b] < 0), key=cost):
        alive = (targets == c) & ~state.near & (state.subset[block_of] != 0) & (block_of != b)
        alive[state.victims(b)] = False
        score = (not state.takes_last(b), min(len(np.unique(block_of[alive])), wanted))
        if best is None or score > best[0]:
            best = (score, b)
        if score == (True, wanted):
            break
    if best is not None:
        state.give(best[1], 0)


def _assign_every_class(index: np.ndarray, coords: np.ndarray, targets: np.ndarray,
                        n_classes: int, test_ratio: float, val_ratio: float, block_of: np.ndarray,
                        margin: int, seed: int) -> _Assignment:
    """The assignment of `assign_blocks_every_class` over given blocks."""
    wanted = 2 if val_ratio > 0 else 1
    state = _Assignment(index, coords, targets, n_classes, block_of, margin)
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    holding = [np.unique(block_of[targets == c]) for c in range(n_classes)]
    for c in np.argsort(counts, kind="stable"):  # rarest first: a training, test, val block each
        if counts[c] == 0:
            continue
        _reserve_training(state, int(c), holding[c], counts, test_ratio, wanted)
        for s in (2, 1) if val_ratio > 0 else (2,):
            if state.have[s, c] > 0:
                continue
            options = [(state.alive(b), int(b)) for b in holding[c] if state.subset[b] < 0]
            options = [(alive.sum(), b) for alive, b in options if alive[c] > 0]
            if options:
                state.give(min(options)[1], s)
    shares = np.array([1 - test_ratio, val_ratio, test_ratio - val_ratio])
    goal = shares[:, None] * counts[None, :]  # (3 subsets, classes)
    for b in np.random.default_rng(seed).permutation(len(state.members)):
        if state.subset[b] >= 0:
            continue
        alive = state.alive(b)
        missing = (goal - state.have) / np.maximum(goal, 1e-12)
        need = np.array([(state.count(state.members[b]) * missing[0]).sum(),
                         (alive * missing[1]).sum(), (alive * missing[2]).sum()])
        if val_ratio == 0:
            need[1] = -np.inf
        choice = 0
        for choice in np.argsort(-need, kind="stable"):  # ties go to train, then val
            if choice != 0 or not state.takes_last(int(b)):
                break
        state.give(int(b), int(choice))
    return state


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
