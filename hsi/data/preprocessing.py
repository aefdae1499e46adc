"""Spectral reduction: PCA with optional whitening, kept as plain arrays so it can travel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PCATransform:
    """x -> ((x - mean) @ components.T) * scale, applied per pixel over the band axis."""

    mean: np.ndarray  # (bands,)
    components: np.ndarray  # (n_components, bands)
    scale: np.ndarray  # (n_components,); 1 / sqrt(explained variance) when whitened

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    def __call__(self, cube: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Reduce a (H, W, bands) cube to (H, W, n_components) float32, in bounded memory."""
        bands = self.components.shape[1]
        if cube.shape[-1] != bands:
            raise ValueError(f"PCA was fitted on {bands} bands but the cube has {cube.shape[-1]}.")
        flat = cube.reshape(-1, bands)
        out = np.empty((flat.shape[0], self.num_components), dtype=np.float32)
        projection = self.components.T * self.scale  # (bands, n_components)
        for start in range(0, flat.shape[0], chunk):
            block = flat[start:start + chunk].astype(np.float64) - self.mean
            out[start:start + chunk] = block @ projection
        return out.reshape(*cube.shape[:-1], -1)


def fit_pca(pixels: np.ndarray, n_components: int, whiten: bool = True,
            seed: int = 0) -> PCATransform:
    """Fit PCA on pixel spectra (N, bands) with scikit-learn.

    Fitted in float32 (scikit-learn keeps the dtype): half the memory of float64, and the
    transform itself runs in float64 (see `PCATransform`).
    """
    from sklearn.decomposition import PCA

    n_pixels, bands = pixels.shape
    if not 1 <= n_components <= bands:
        raise ValueError(f"data.pca_components={n_components} but the cube has {bands} bands; "
                         f"choose a value from 1 to {bands}, or data.pca_components=null to "
                         f"keep all bands.")
    if n_components > n_pixels:
        raise ValueError(f"data.pca_components={n_components} exceeds the {n_pixels} pixels "
                         f"PCA is fitted on.")
    pca = PCA(n_components=n_components, whiten=whiten, random_state=seed)
    pca.fit(np.asarray(pixels, dtype=np.float32))
    scale = 1.0 / np.sqrt(pca.explained_variance_) if whiten else np.ones(n_components)
    return PCATransform(mean=pca.mean_.astype(np.float64),
                        components=pca.components_.astype(np.float64),
                        scale=np.asarray(scale, dtype=np.float64))
