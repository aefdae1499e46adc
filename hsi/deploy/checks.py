"""Checks of an exported graph against PyTorch: fp32 logits within a tolerance and the same label
on every pixel; int8 label changes and the OA drop on the checkpoint's test pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from hsi.data.sampling.patches import pad_cube
from hsi.errors import ExportError
from hsi.run.checkpoint import Checkpoint
from hsi.run.inference import scene_logits


# -- checks ------------------------------------------------------------------------------------
def reference_logits(net: nn.Module, checkpoint: Checkpoint, cube: np.ndarray, tile_rows: int,
                     batch_size: int) -> tuple[np.ndarray, str]:
    """PyTorch's (K, H, W) logits for a raw cube, reduced as hsi.predict reduces it."""
    patch = int(checkpoint.data_state["patch_size"])
    padded = pad_cube(checkpoint.reduce(cube), patch)
    logits, path = scene_logits(net, padded, patch, "auto", batch_size, tile_rows)
    return logits.numpy(), path


def overall_accuracy(labels: np.ndarray, truth: np.ndarray, coords: np.ndarray) -> float:
    """OA of (H, W) labels 1..K on the pixels `coords` (row, col) of the ground truth."""
    coords = np.asarray(coords).reshape(-1, 2)
    if len(coords) == 0:
        return float("nan")
    rows, cols = coords[:, 0], coords[:, 1]
    return float((labels[rows, cols] == truth[rows, cols]).mean())


def check_fp32(reference: np.ndarray, onnx_logits: np.ndarray, tolerance: float) -> dict[str, Any]:
    """max |logit difference| against the logit scale, and labels pixel by pixel."""
    difference = np.abs(reference.astype(np.float64) - onnx_logits.astype(np.float64))
    scale = float(np.abs(reference).max())
    max_diff = float(difference.max())
    ref_labels, onnx_labels = reference.argmax(0), onnx_logits.argmax(0)
    changed = ref_labels != onnx_labels
    top2 = np.sort(reference, axis=0)[-2:] if reference.shape[0] > 1 else None
    margin = (top2[1] - top2[0]) if top2 is not None else np.full(changed.shape, np.inf)
    result = {"pixels": int(changed.size), "logit_scale": scale, "max_abs_logit_diff": max_diff,
              "relative_diff": max_diff / scale if scale > 0 else 0.0, "tolerance": tolerance,
              "label_differences": int(changed.sum()),
              "labels_identical": bool(not changed.any()),
              "smallest_margin": float(margin.min())}
    if result["relative_diff"] > tolerance:
        raise ExportError(f"fp32 check failed: the ONNX logits differ from PyTorch's by up to "
                          f"{max_diff:.3g} ({result['relative_diff']:.3g} of the logit scale "
                          f"{scale:.3g}; allowed {tolerance:g}). Nothing was written.")
    if changed.any():
        where = np.argwhere(changed)[:5].tolist()
        raise ExportError(f"fp32 check failed: {int(changed.sum())} pixels get another label from the "
                          f"ONNX graph than from PyTorch (e.g. (row, col) {where}; the smallest "
                          f"top-two logit margin there is {float(margin[changed].min()):.3g}, the "
                          f"largest logit difference {max_diff:.3g}). Nothing was written.")
    return result


def check_int8(fp32_labels: np.ndarray, int8_labels: np.ndarray, truth: np.ndarray,
               test: np.ndarray, max_oa_drop: float | None) -> dict[str, Any]:
    """Share of pixels whose label changes, and OA on the test pixels, fp32 against int8."""
    changed = fp32_labels != int8_labels
    oa32, oa8 = overall_accuracy(fp32_labels, truth, test), overall_accuracy(int8_labels, truth, test)
    result = {"pixels": int(changed.size), "label_changes": int(changed.sum()),
              "label_change_fraction": float(changed.mean()),
              "labelled_label_change_fraction": float(changed[truth > 0].mean()) if (truth > 0).any()
              else None,
              "test_pixels": int(len(np.asarray(test).reshape(-1, 2))), "oa_test_fp32": oa32,
              "oa_test_int8": oa8, "oa_change_points": round(100 * (oa8 - oa32), 4),
              "max_oa_drop": max_oa_drop}
    if max_oa_drop is not None and np.isfinite(oa32) and oa32 - oa8 > max_oa_drop:
        raise ExportError(f"int8 check failed: OA on the {result['test_pixels']} test pixels falls from "
                          f"{oa32:.4f} (fp32) to {oa8:.4f} (int8), more than int8.max_oa_drop="
                          f"{max_oa_drop:g}; {result['label_change_fraction']:.2%} of the pixels change "
                          f"label. Try int8.calibration=entropy or more int8.samples, or "
                          f"deploy the fp32 graph. Nothing was written.")
    return result


