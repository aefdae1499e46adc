"""Figures: a fixed colour table for classes, label images with a legend, the 4-panel map figure,
the confusion matrix.

Builds matplotlib figures and saves them (`write_figure`); `hsi.run.outputs` decides which.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hsi.utils.files import atomic_write

# Class k (1-based) gets PALETTE[(k - 1) % len(PALETTE)]; 0 (unlabelled / unknown) is black.
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
    [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128],
], dtype=np.uint8)


def write_figure(path: str | Path, fig, dpi: int = 120, **savefig: Any) -> Path:
    """Save a matplotlib figure as PNG (atomically) and close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", **savefig))
    pyplot().close(fig)
    return Path(path)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (the one place that chooses the backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes + 1, 3) uint8 RGB: row 0 black, row k the colour of class k."""
    rows = [np.zeros(3, dtype=np.uint8)] + [PALETTE[(k - 1) % len(PALETTE)]
                                              for k in range(1, num_classes + 1)]
    return np.stack(rows)


def colourise(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) labels with 0 = none, 1..K = classes -> (H, W, 3) uint8 image."""
    return class_colours(num_classes)[np.clip(labels, 0, num_classes)]


def false_colour(cube: np.ndarray, bands: Sequence[int] | None = None) -> np.ndarray:
    """(H, W, B) cube -> (H, W, 3) float RGB in [0, 1], each band stretched to its 2-98 percentiles."""
    b = cube.shape[2]
    if bands is None:  # spread over the spectrum: roughly NIR, red, green of an AVIRIS-like cube
        bands = (int(b * 0.25), int(b * 0.12), int(b * 0.06))
    rgb = np.stack([cube[:, :, i] for i in bands], axis=-1).astype(np.float64)
    low, high = np.percentile(rgb, 2, axis=(0, 1)), np.percentile(rgb, 98, axis=(0, 1))
    return np.clip((rgb - low) / np.maximum(high - low, 1e-12), 0, 1)


def _legend(ax, class_names: Sequence[str]) -> None:
    from matplotlib.patches import Patch

    colours = class_colours(len(class_names))[1:] / 255
    ax.legend(handles=[Patch(color=c, label=n) for c, n in zip(colours, class_names)],
              loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)


def label_figure(labels: np.ndarray, class_names: Sequence[str], title: str = ""):
    """A label map with the fixed colour table and a legend."""
    fig, ax = pyplot().subplots(figsize=(7, 5))
    ax.imshow(colourise(labels, len(class_names)), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    _legend(ax, class_names)
    fig.tight_layout()
    return fig


def map_figure(cube: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray,
               class_names: Sequence[str], rgb_bands: Sequence[int] | None = None, title: str = "",
               evaluated: np.ndarray | None = None):
    """False-colour cube | ground truth | prediction | errors on labelled pixels; with `evaluated`
    (a mask: a run's validation and test pixels) the errors are counted there only and the other
    labelled pixels (training, dropped) are drawn dark grey."""
    k = len(class_names)
    panels = [("false colour", false_colour(cube, rgb_bands))]
    if truth is not None:
        panels.append(("ground truth", colourise(truth, k)))
    panels.append(("prediction", colourise(prediction, k)))
    if truth is not None:
        labelled = truth > 0
        errors = np.zeros((*truth.shape, 3))
        counted, what = labelled, "labelled"
        if evaluated is not None:
            counted, what = labelled & evaluated, "val + test"
            errors[labelled & ~evaluated] = (0.35, 0.35, 0.35)
        errors[counted & (prediction == truth)] = (0.85, 0.85, 0.85)
        errors[counted & (prediction != truth)] = (0.85, 0.0, 0.0)
        wrong = int((counted & (prediction != truth)).sum())
        panels.append((f"errors ({wrong} of {int(counted.sum())} {what} pixels, red)", errors))
    fig, axes = pyplot().subplots(1, len(panels), figsize=(4.2 * len(panels) + 2, 4.6))
    for ax, (name, image) in zip(np.atleast_1d(axes), panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    _legend(np.atleast_1d(axes)[-1], class_names)
    return _finished(fig, title)


def confusion_matrix_figure(confusion: np.ndarray, class_names: list[str], title: str = ""):
    """Row-normalised confusion matrix with counts, as a matplotlib figure."""
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    size = max(5.0, 0.45 * k + 2)
    fig, ax = pyplot().subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    return fig


# train, validation, test, dropped (labelled but in no subset); 0 (unlabelled) stays black
SUBSET_COLOURS = np.array([[0, 114, 178], [230, 159, 0], [0, 158, 115], [150, 150, 150]], dtype=np.uint8)


def split_image(labels: np.ndarray, split: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W) codes: 0 unlabelled, 1 train, 2 val, 3 test, 4 labelled but in no subset."""
    codes = np.where(labels > 0, 4, 0).astype(np.uint8)
    for code, subset in enumerate(("train", "val", "test"), start=1):
        coords = np.asarray(split.get(subset, np.zeros((0, 2), dtype=np.int64))).reshape(-1, 2)
        codes[coords[:, 0], coords[:, 1]] = code
    return codes


def split_figure(labels: np.ndarray, split: dict[str, np.ndarray], class_names: Sequence[str],
                 title: str = "", dropped: str = "dropped (in no subset)"):
    """Ground truth | where the train / val / test pixels are, and the labelled pixels in none
    (`dropped` names them, e.g. the margin of a spatially disjoint split), with pixel counts."""
    from matplotlib.patches import Patch

    codes = split_image(labels, split)
    image = np.concatenate([np.zeros((1, 3), dtype=np.uint8), SUBSET_COLOURS])[codes]
    counts = np.bincount(codes.ravel(), minlength=5)
    names = ["train", "validation", "test", dropped]
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4.8))
    axes[0].imshow(colourise(labels, len(class_names)), interpolation="nearest")
    axes[0].set_title("ground truth", fontsize=9)
    axes[1].imshow(image, interpolation="nearest")
    axes[1].set_title("split", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    axes[1].legend(handles=[Patch(color=SUBSET_COLOURS[k] / 255, label=f"{name} ({counts[k + 1]:,})")
                            for k, name in enumerate(names)],
                   loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return _finished(fig, title)


def _finished(fig, title: str | None):
    """The figure with its title (if any), laid out."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
