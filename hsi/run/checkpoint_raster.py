"""A checkpoint's network as the raster driver's backend (`hsi.run.raster_driver`).

A row block of raw spectra (invalid pixels filled by the driver) is reduced by the checkpoint's
PCA one image row at a time (the same matrix product for a row whichever row block it comes in),
zero-padded as `hsi.data.sampling.patches.pad_cube` pads a whole scene (its halo rows stand in for the
padding inside the raster) and run by the network: dense row tiles of `tile_rows` output rows, or
window batches (`hsi.run.inference.scene_logits`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hsi.data.preprocessing import PCATransform
from hsi.models.dense import check_network_eval_path, supports_dense
from hsi.run.checkpoint import check_bands
from hsi.run.inference import scene_logits


def reduce_rows(state: dict[str, Any], block: np.ndarray) -> np.ndarray:
    """(bands, rows, W) raw spectra -> (rows, W, components) float32 as the network expects: the
    checkpoint's PCA one image row at a time (the same arithmetic for a row whatever row block or
    layout it comes in); invalid pixels already filled."""
    bands, rows, width = block.shape
    check_bands(state, bands, "raster")
    pca = PCATransform.from_tensors(state["pca"])
    out = np.empty((rows, width, bands if pca is None else pca.num_components), dtype=np.float32)
    for r in range(rows):
        row = block[:, r, :].T  # (W, bands)
        out[r] = row if pca is None else pca(np.ascontiguousarray(row, dtype=np.float32), chunk=width)
    return out


def padded_tensor(reduced: np.ndarray, top: int, bottom: int, margin: int) -> torch.Tensor:
    """(rows, W, C) reduced rows with `top` / `bottom` zero rows and `margin` zero columns each side,
    band-first, as `hsi.data.sampling.patches.pad_cube` lays out a whole scene."""
    padded = np.pad(reduced, ((top, bottom), (margin, margin), (0, 0)))
    return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32))


class NetworkBackend:
    """A trained network and its checkpoint's data state (PCA, window, classes) as a `RasterBackend`."""

    kind = "checkpoint"

    def __init__(self, net: nn.Module, state: dict[str, Any], eval_path: str = "auto") -> None:
        check_network_eval_path(net, eval_path)
        self.net, self.state = net, state
        self.dense = eval_path != "window" and supports_dense(net)
        self.eval_path = "dense" if self.dense else "window"
        self.patch_size = int(state["patch_size"])
        self.class_names = list(state["class_names"])
        self.label_values = state.get("label_values")
        self.band_record = state.get("geo")

    def block_logits(self, block: np.ndarray, top: int, bottom: int, tile_rows: int,
                     batch_size: int) -> np.ndarray:
        margin = self.patch_size // 2
        padded = padded_tensor(reduce_rows(self.state, block), margin - top, margin - bottom,
                               margin)
        logits, _ = scene_logits(self.net, padded, self.patch_size, self.eval_path, batch_size, tile_rows)
        return logits.detach().float().cpu().numpy()
