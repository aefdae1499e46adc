"""The one rule for invalid pixels (nodata, NaN / inf), in training and in prediction.

Nodata pixels take the band means of the valid pixels, NaN / inf values of other pixels each
band's mean over its finite values once nodata is filled; a pixel keeps its finite values.
Training fills them before PCA so (in memory: `hsi.data.scenes.geo_scene` for nodata,
`hsi.data.scenes.scene.fill_nonfinite` for NaN / inf; streamed: `hsi.data.scenes.large_scene`), and so does
prediction, checkpoint or ONNX, in memory or streamed, with the predicted raster's means
(`hsi.run.raster_driver.raster_fill_values`, summed in fixed row blocks so that every path fills
with the same float32 values), leaving those pixels 0 (no class) in the maps. Only numpy: the
readers and the torch-free ONNX runtime use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FillValues:
    """What invalid values are filled with: `means` (nodata pixels), `nan_means` (NaN / inf values)."""

    means: np.ndarray
    nan_means: np.ndarray

    def fill(self, values: np.ndarray, nodata: np.ndarray, band_first: bool = False) -> np.ndarray:
        """`values` ((..., bands), or (bands, rows, W) with `band_first`) filled in place and returned:
        pixels flagged in `nodata` with `means`, every other NaN / inf value with `nan_means`."""
        pixels = values.transpose(1, 2, 0) if band_first else values  # a view: filled in place
        pixels[nodata] = self.means
        holes = ~np.isfinite(pixels)
        if holes.any():
            np.copyto(pixels, np.broadcast_to(self.nan_means, pixels.shape), where=holes)
        return values


@dataclass
class FillSums:
    """Band sums gathered block by block for `FillValues` (band-first blocks, as read)."""

    bands: int
    sums: np.ndarray = field(init=False)
    partial_sums: np.ndarray = field(init=False)
    partial_counts: np.ndarray = field(init=False)
    valid: int = 0
    nodata: int = 0
    nonfinite: int = 0

    def __post_init__(self) -> None:
        self.sums = np.zeros(self.bands, dtype=np.float64)
        self.partial_sums = np.zeros_like(self.sums)
        self.partial_counts = np.zeros(self.bands, dtype=np.int64)

    def add(self, data: np.ndarray, nodata: np.ndarray, nonfinite: np.ndarray) -> None:
        """One (bands, rows, W) block and its (rows, W) nodata / NaN-or-inf masks."""
        bad = nodata | nonfinite
        self.sums += data.sum(axis=(1, 2), where=~bad[None], dtype=np.float64)
        kept = np.isfinite(data) & nonfinite[None]  # finite values of NaN / inf pixels
        self.partial_sums += data.sum(axis=(1, 2), where=kept, dtype=np.float64)
        self.partial_counts += kept.sum(axis=(1, 2))
        self.valid += int((~bad).sum())
        self.nodata += int(nodata.sum())
        self.nonfinite += int(nonfinite.sum())

    @property
    def invalid(self) -> int:
        return self.nodata + self.nonfinite

    def values(self) -> FillValues:
        means = (self.sums / max(self.valid, 1)).astype(np.float32)
        counts = self.valid + self.nodata + self.partial_counts
        nan_means = np.divide(self.sums + self.nodata * means.astype(np.float64) + self.partial_sums, counts,
                              out=np.zeros_like(self.sums), where=counts > 0).astype(np.float32)
        return FillValues(means, nan_means)
