"""Spatial blocks for spatially disjoint splits: the scene cut into square spatial blocks (squares
of pixels; not the network blocks of `hsi.models.blocks`, nor a raster's row blocks), whole
spatial blocks given to train / validation / test per class (or per field), halved where a class
needs it, and the margin that keeps validation and test pixels out of every training window.
Below, "block" always means such a spatial block.

`hsi.data.splits.disjoint.DisjointSplit` (`data/split=disjoint`) calls it; nothing here reads a config.
"""

from __future__ import annotations

import numpy as np

from hsi.data.splits.leakage import window_mask


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
    """Which subset (0 train, 1 val, 2 test) each spatial block goes to, and each pixel's block.

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
    """Spatial blocks of `block_size` pixels, halved where a class needs it: (block of each pixel,
    side of each block).

    A block *serves* a class when, given to training, it leaves the class's pixels outside its
    `margin` in `wanted` other blocks (2: one for validation, one for test). Rarest class first:
    while no block serves the class, every block holding it is halved (squares aligned within
    their `block_size` cell), down to single pixels. If the blocks that serve it hold fewer than
    `min_train[c]` of its pixels, finer blocks are kept where one of them serves it with that
    many. `extra[c]`: halvings of class c's blocks beyond that. Halving never undoes what a
    rarer class got.
    Long on purpose: its three inner steps share the block state and run in a loop; split apart they would
    pass it all around.
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
    """Which subset (0 train, 1 val, 2 test) each spatial block goes to, each pixel's block, each
    block's side.

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


