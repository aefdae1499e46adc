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
    of a training pixel dropped."""

    test_ratio: float = 0.9
    val_ratio: float = 0.05
    block_size: int = 16
    method: ClassVar[str] = "disjoint"

    def __post_init__(self) -> None:
        self.test_ratio, self.val_ratio = float(self.test_ratio), float(self.val_ratio)
        check_ratios(self.test_ratio, self.val_ratio)
        check_block_size(self.block_size)
        self.block_size = int(self.block_size)

    def __call__(self, labels: np.ndarray, coords: np.ndarray, patch_size: int, seed: int,
                 class_names: Sequence[str] | None = None) -> SplitResult:
        return disjoint_split(labels, coords, self.test_ratio, self.val_ratio, self.block_size,
                              patch_size, seed, class_names)


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
                   class_names: Sequence[str] | None = None) -> SplitResult:
    """Spatially disjoint split: whole `block_size` x `block_size` blocks go to one subset.

    `labels` is the (H, W) ground truth (0 = unlabelled, k = class k - 1), `coords` the
    (N, 2) labelled pixels the returned indices refer to. Blocks go to subsets as
    `assign_blocks` says; then every val / test pixel within `patch_size // 2` (Chebyshev) of
    a training pixel is dropped (`margin_keep`), so no evaluation pixel lies in a training
    window. The report gives each class's achieved shares and dropped pixels.
    """
    check_ratios(test_ratio, val_ratio)
    check_block_size(block_size)
    coords = np.asarray(coords)
    targets = _targets(labels, coords)
    n_classes = int(targets.max()) + 1
    names = _names(class_names, n_classes)
    subset_of_block, block_of = assign_blocks(labels.shape, coords, targets, n_classes, test_ratio,
                                              val_ratio, block_size, seed)
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
    dropped = np.flatnonzero((subset > 0) & ~keep)
    split = {"train": train, "val": val, "test": test}
    report = _disjoint_report(targets, split, names, subset_of_block, dropped, block_size, patch_size)
    log.info("data/split=disjoint: %d blocks of %d px; %d val/test pixels within %d px of training "
             "dropped; shares per class (train/val/test): %s", len(subset_of_block), block_size,
             len(dropped), patch_size // 2,
             "; ".join(f"{r['name']} {r['train_share']:.2f}/{r['val_share']:.2f}/"
                       f"{r['test_share']:.2f}" for r in report["classes"]))
    return split, report


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
