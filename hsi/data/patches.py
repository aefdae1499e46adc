"""Windows cut on the fly from a padded cube: the scene is held once, never per window."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from hsi.errors import ConfigError


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


class PatchDataset(Dataset):
    """Window (1, B, p, p) around each pixel in `coords`, with its class index.

    `padded` comes from `pad_cube`; `coords` are (row, col) in the unpadded scene, so the
    window around (r, c) is `padded[:, r:r+p, c:c+p]`. `targets` are 0-based class indices
    (-1 where unknown).
    """

    def __init__(self, padded: torch.Tensor, coords: np.ndarray, targets: np.ndarray,
                 patch_size: int) -> None:
        check_patch_size(patch_size)
        if len(coords) != len(targets):
            raise ConfigError("coords and targets differ in length")
        self.padded = padded
        self.coords = torch.as_tensor(np.asarray(coords, dtype=np.int64).reshape(-1, 2))
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))
        self.patch_size = patch_size

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
