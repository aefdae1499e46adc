"""A deterministic synthetic scene for tests and offline try-outs."""

from __future__ import annotations

import numpy as np

from hsi.data.scenes.scene import Scene
from hsi.errors import DataError


def make_synthetic_scene(height: int = 48, width: int = 48, bands: int = 60, classes: int = 6,
                         noise: float = 0.05, labelled_fraction: float = 0.75,
                         seed: int = 0) -> Scene:
    """Spatially coherent class regions (Voronoi cells) with class-specific spectra plus noise.

    Every class owns at least one cell; a band of unlabelled pixels (label 0) separates some
    cells, as in real ground truths. The same arguments always give the same scene.
    """
    if classes < 2 or bands < 2 or height < 4 or width < 4:
        raise DataError("synthetic scene needs classes >= 2, bands >= 2 and at least 4x4 pixels")
    rng = np.random.default_rng(seed)
    n_cells = 3 * classes
    centres = rng.uniform(0, 1, size=(n_cells, 2)) * [height, width]
    cell_class = np.concatenate([np.arange(classes), rng.integers(0, classes, n_cells - classes)])
    rows, cols = np.mgrid[0:height, 0:width]
    dist = (rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2
    order = np.sort(dist, axis=2)
    nearest = np.argmin(dist, axis=2)
    truth = cell_class[nearest] + 1
    # Unlabelled pixels: those near a cell boundary, up to (1 - labelled_fraction) of the scene.
    margin = np.sqrt(order[..., 1]) - np.sqrt(order[..., 0])
    cut = np.quantile(margin, 1 - labelled_fraction)
    labels = np.where(margin >= cut, truth, 0)

    wavelengths = np.linspace(0, 1, bands)
    spectra = np.empty((classes, bands))
    for k in range(classes):
        peaks = rng.uniform(0, 1, 3)
        widths = rng.uniform(0.05, 0.2, 3)
        heights = rng.uniform(0.3, 1.0, 3)
        spectra[k] = 0.2 + sum(h * np.exp(-((wavelengths - p) / w) ** 2)
                               for p, w, h in zip(peaks, widths, heights))
    brightness = 1 + 0.1 * rng.standard_normal((height, width, 1))
    cube = spectra[truth - 1] * brightness + noise * rng.standard_normal((height, width, bands))
    names = [f"class_{k}" for k in range(1, classes + 1)]
    return Scene(name="synthetic", cube=cube.astype(np.float32), labels=labels,
                 class_names=names)
