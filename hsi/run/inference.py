"""Whole-scene inference: dense (trunk once over the scene, see `hsi.models.dense`) or window by
window."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hsi.data.sampling.patches import pad_cube
from hsi.models.cost import evaluating
from hsi.models.dense import build_dense_head, check_network_eval_path, supports_dense, tile_logits
from hsi.utils.tiles import row_tiles

log = logging.getLogger(__name__)

def dense_logits(net: nn.Module, padded: torch.Tensor, patch_size: int, tile_rows: int = 128,
                 progress: bool = False) -> torch.Tensor:
    """Logits (K, H, W) for every pixel of a scene padded by `pad_cube` ((B, H+p-1, W+p-1)).

    The scene is cut into bands of `tile_rows` output rows (each with its p-1 rows of halo), so
    memory stays bounded on large scenes. The network runs in eval mode and is left in the mode
    it was in.
    """
    with evaluating(net):
        return _dense_logits(net, padded, patch_size, tile_rows, progress)


def _dense_logits(net: nn.Module, padded: torch.Tensor, patch_size: int, tile_rows: int,
                  progress: bool) -> torch.Tensor:
    device = next(net.parameters()).device
    head = build_dense_head(net, padded.shape[0], patch_size)
    height, width = padded.shape[1] - patch_size + 1, padded.shape[2] - patch_size + 1
    rows = []
    for start, stop in tqdm(list(row_tiles(height, tile_rows)), desc="dense", disable=not progress):
        tile = padded[:, start:stop + patch_size - 1].contiguous().to(device)  # same array, any layout
        rows.append(tile_logits(net, head, tile).cpu())
    out = torch.cat(rows, dim=1)
    if out.shape[1:] != (height, width):
        raise RuntimeError(f"dense output {tuple(out.shape[1:])} != scene {(height, width)}: the "
                           f"network's trunk is not a valid-convolution trunk")
    return out


def window_logits(net: nn.Module, padded: torch.Tensor, coords: np.ndarray, patch_size: int,
                  batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """Logits (N, K) for the windows around `coords` (row, col), cut batch by batch, in eval mode
    (the network is left in the mode it was in)."""
    with evaluating(net):
        return _window_logits(net, padded, coords, patch_size, batch_size, progress)


def _window_logits(net: nn.Module, padded: torch.Tensor, coords: np.ndarray, patch_size: int,
                   batch_size: int, progress: bool) -> torch.Tensor:
    device = next(net.parameters()).device
    coords = torch.as_tensor(np.asarray(coords, dtype=np.int64))
    offsets = torch.arange(patch_size)
    out = []
    for start in tqdm(range(0, len(coords), batch_size), desc="windows", disable=not progress):
        rc = coords[start:start + batch_size]
        rows = (rc[:, 0, None] + offsets)[:, :, None]  # (n, p, 1)
        cols = (rc[:, 1, None] + offsets)[:, None, :]  # (n, 1, p)
        batch = padded[:, rows, cols].permute(1, 0, 2, 3).unsqueeze(1)  # (n, 1, B, p, p)
        out.append(net(batch.to(device)).cpu())
    return torch.cat(out) if out else torch.empty(0)


def scene_logits(net: nn.Module, padded: torch.Tensor, patch_size: int, method: str = "auto",
                 batch_size: int = 64, tile_rows: int = 128,
                 progress: bool = False) -> tuple[torch.Tensor, str]:
    """(K, H, W) logits for every pixel and the path that ran ("dense" or "window")."""
    check_network_eval_path(net, method)
    if method != "window" and supports_dense(net):
        return dense_logits(net, padded, patch_size, tile_rows, progress), "dense"
    height, width = padded.shape[1] - patch_size + 1, padded.shape[2] - patch_size + 1
    rows, cols = np.indices((height, width)).reshape(2, -1)
    logits = window_logits(net, padded, np.stack([rows, cols], 1), patch_size, batch_size, progress)
    return logits.T.reshape(-1, height, width), "window"


def predict_labels(net: nn.Module, cube: np.ndarray, patch_size: int, method: str = "auto",
                   batch_size: int = 64, tile_rows: int = 128,
                   progress: bool = False) -> tuple[np.ndarray, str]:
    """(H, W) predicted classes 1..K for every pixel of a (H, W, bands) cube already reduced as
    the network expects (see `hsi.run.checkpoint.reduce_cube`), and the path that ran."""
    padded = pad_cube(cube, patch_size)
    logits, path = scene_logits(net, padded, patch_size, method, batch_size, tile_rows, progress)
    return logits.argmax(0).numpy() + 1, path
