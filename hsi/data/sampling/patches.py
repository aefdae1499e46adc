"""Windows cut on the fly from a padded cube: the scene is held once, never per window."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from hsi.errors import ConfigError

# how validation, test and whole-scene maps run (`eval_path` everywhere): dense row tiles, the trunk
# once per tile | window by window | auto (dense when the network allows it)
EVAL_PATHS = ("auto", "dense", "window")


def pad_cube(cube: np.ndarray, patch_size: int) -> torch.Tensor:
    """Zero-pad a (H, W, B) cube by patch_size // 2 and return it band-first: (B, H+2m, W+2m)."""
    check_patch_size(patch_size)
    margin = patch_size // 2
    padded = np.pad(cube, ((margin, margin), (margin, margin), (0, 0)))
    return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32))


def check_patch_size(patch_size: int) -> None:
    if patch_size < 1 or patch_size % 2 == 0:
        raise ConfigError(f"data.patch_size={patch_size}: the window must have a centre pixel, so "
                         f"the patch size must be odd and positive (e.g. {max(1, patch_size + 1)}).")


def pixel_tensors(coords: np.ndarray, targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2) int64 (row, col) and (N,) int64 class indices, checked to pair up."""
    if len(coords) != len(targets):
        raise ConfigError("coords and targets differ in length")
    return (torch.as_tensor(np.asarray(coords, dtype=np.int64).reshape(-1, 2)),
            torch.as_tensor(np.asarray(targets, dtype=np.int64)))


class PatchDataset(Dataset):
    """Window (1, B, p, p) around each pixel in `coords`, with its class index.

    `padded` comes from `pad_cube`; `coords` are (row, col) in the unpadded scene, so the
    window around (r, c) is `padded[:, r:r+p, c:c+p]`. `targets` are 0-based class indices
    (-1 where unknown).
    """

    def __init__(self, padded: torch.Tensor, coords: np.ndarray, targets: np.ndarray,
                 patch_size: int) -> None:
        check_patch_size(patch_size)
        self.padded, self.patch_size = padded, patch_size
        self.coords, self.targets = pixel_tensors(coords, targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        r, c = self.coords[index].tolist()
        p = self.patch_size
        return self.padded[:, r:r + p, c:c + p].unsqueeze(0), self.targets[index]

    def centre_spectra(self) -> np.ndarray:
        """The spectrum (bands,) of each window's centre pixel, as an (N, bands) array."""
        m = self.patch_size // 2
        rows, cols = self.coords[:, 0] + m, self.coords[:, 1] + m
        return self.padded[:, rows, cols].T.numpy()


class TileDataset(Dataset):
    """Bands of rows of the padded cube that hold the pixels in `coords`, for dense evaluation.

    Item i is a dict: `tile` (1, B, rows + p - 1, W + p - 1), the padded cube's rows that the
    dense trunk needs to label `rows` output rows (scene rows `start .. start + rows - 1`, every
    column); `pos` (n, 2) the (row in the tile, column) of the tile's pixels from `coords`;
    `target` (n,) their class indices; `index` (n,) their positions in `coords`, so that results
    gathered tile by tile can be put back in the subset's order.

    Only rows holding some pixel of `coords` are covered: a tile starts at a needed row and takes
    at most `tile_rows` output rows; it ends early when more than p - 1 empty rows separate it from the
    next needed row (cutting there costs one halo of p - 1 rows, less than running the gap).
    Every pixel is in exactly one tile. `coords` and `targets` are as in `PatchDataset`.
    """

    def __init__(self, padded: torch.Tensor, coords: np.ndarray, targets: np.ndarray,
                 patch_size: int, tile_rows: int = 128) -> None:
        check_patch_size(patch_size)
        if tile_rows < 1:
            raise ConfigError(f"tile_rows={tile_rows} must be at least 1")
        self.padded, self.patch_size, self.tile_rows = padded, patch_size, tile_rows
        self.coords, self.targets = pixel_tensors(coords, targets)
        self.tiles = plan_tiles(self.coords.numpy(), patch_size, tile_rows)

    @classmethod
    def from_patches(cls, patches: PatchDataset, tile_rows: int = 128) -> TileDataset:
        """The same pixels as a `PatchDataset`, in tiles."""
        return cls(patches.padded, patches.coords.numpy(), patches.targets.numpy(),
                   patches.patch_size, tile_rows)

    @property
    def num_pixels(self) -> int:
        return len(self.targets)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start, stop, members = self.tiles[index]
        p = self.patch_size
        pos = self.coords[members].clone()
        pos[:, 0] -= start
        # a copy, not a view: a worker process would otherwise share the whole cube per tile
        tile = self.padded[:, start:stop + p - 1].unsqueeze(0).clone(memory_format=torch.contiguous_format)
        return {"tile": tile, "pos": pos, "target": self.targets[members], "index": members}


def plan_tiles(coords: np.ndarray, patch_size: int,
               tile_rows: int) -> list[tuple[int, int, torch.Tensor]]:
    """(first row, last row + 1, indices into `coords`) of each tile, top to bottom; see
    `TileDataset`. Within a tile the pixels are ordered by row, then column."""
    if len(coords) == 0:
        return []
    order = np.lexsort((coords[:, 1], coords[:, 0]))
    rows = coords[order, 0]
    tiles: list[tuple[int, int, torch.Tensor]] = []
    first = 0  # position in `order` where the current tile begins
    start = last = int(rows[0])
    for i in range(1, len(rows) + 1):
        row = int(rows[i]) if i < len(rows) else None
        if row is not None and row - start < tile_rows and row - last <= patch_size:
            last = row
            continue
        tiles.append((start, last + 1, torch.as_tensor(order[first:i], dtype=torch.int64)))
        if row is not None:
            first, start, last = i, row, row
    return tiles


def first_item(batch: list) -> object:
    """DataLoader collate for `TileDataset` with batch_size=1: the tile itself, no batch axis."""
    if len(batch) != 1:
        raise ValueError(f"tile loaders take one tile per batch, got {len(batch)}")
    return batch[0]
