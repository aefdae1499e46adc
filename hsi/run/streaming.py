"""Classify a raster with a trained network, in memory or streamed block by block.

Both paths compute every pixel the same way, so their labels are identical on every pixel:

- the checkpoint's PCA is applied one image row at a time (the same matrix product for a row
  whichever block it comes in);
- invalid pixels (nodata, NaN / inf) are filled before PCA by the rule training uses, with this
  raster's band means (`hsi.data.scenes.invalid_pixels`, as the ONNX path fills them), and are 0
  (no class) in the map;
- the dense path runs row tiles of `tile_rows` output rows (fewer on a raster wider than
  `tile_pixels` / `tile_rows`: `capped_tile_rows`, alike in both paths) with their halo; a streamed block
  is a whole number of tiles, so each tile the network sees is the same array as in memory (the
  window path: a block is a whole number of batches).

Streaming reads rows [start - m, stop + m) of the raster through rasterio windows (m = half the
window), reduces them, runs the network and writes the block of `prediction.tif` and
`confidence.tif` before reading the next: memory is bounded by the block, not the scene.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hsi.data.preprocessing import PCATransform
from hsi.data.readers.raster import (
    RasterInfo,
    check_wavelengths,
    info_of,
    open_raster,
    raster_info,
    raster_streams,
    rasterio,
    read_block_masks,
)
from hsi.data.scenes.invalid_pixels import raster_fill_values
from hsi.maps import class_colours
from hsi.models.dense import check_network_eval_path, supports_dense
from hsi.run.checkpoint import check_bands
from hsi.run.inference import scene_logits
from hsi.utils.files import atomic_write, atomic_write_json
from hsi.utils.geotiff import MapWriters, class_and_confidence, map_values, write_class_map, write_confidence
from hsi.utils.tiles import TILE_PIXELS, capped_tile_rows, default_block_rows, halo_rows

log = logging.getLogger(__name__)

GDAL_CACHE_MB = 64  # GDAL's raster block cache while streaming (its default is 5% of the RAM)


@dataclass
class RasterPrediction:
    """What a prediction over a raster produced (labels / confidence only for the in-memory path)."""

    info: RasterInfo
    path: str  # "dense" or "window"
    seconds: float
    invalid_pixels: int
    streamed: bool
    block_rows: int | None = None
    labels: np.ndarray | None = None
    confidence: np.ndarray | None = None

    @property
    def pixels_per_second(self) -> float:
        return self.info.height * self.info.width / max(self.seconds, 1e-9)


def reduce_rows(state: dict[str, Any], cube: np.ndarray, band_first: bool = False) -> np.ndarray:
    """(rows, W, bands) raw spectra, or (bands, rows, W) with `band_first`, -> (rows, W, components)
    float32 as the network expects: the checkpoint's PCA one image row at a time (the same
    arithmetic for a row whatever block or layout it comes in); invalid pixels already filled."""
    bands = cube.shape[0] if band_first else cube.shape[2]
    check_bands(state, bands, "raster")
    pca = PCATransform.from_tensors(state["pca"])
    rows, width = cube.shape[1:] if band_first else cube.shape[:2]
    out = np.empty((rows, width, bands if pca is None else pca.num_components), dtype=np.float32)
    for r in range(rows):
        row = cube[:, r, :].T if band_first else cube[r]  # (W, bands)
        out[r] = row if pca is None else pca(np.ascontiguousarray(row, dtype=np.float32), chunk=width)
    return out


def padded_tensor(reduced: np.ndarray, top: int, bottom: int, margin: int) -> torch.Tensor:
    """(rows, W, C) reduced rows with `top` / `bottom` zero rows and `margin` zero columns each side,
    band-first, as `hsi.data.sampling.patches.pad_cube` lays out a whole scene."""
    padded = np.pad(reduced, ((top, bottom), (margin, margin), (0, 0)))
    return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32))


def aligned_block_rows(block_rows: int, dense: bool, tile_rows: int, width: int, batch_size: int,
                       down: bool = False) -> int:
    """`block_rows` rounded up (`down`: down, to at least one) to a whole number of dense tiles
    (dense path) or of window batches."""
    step = tile_rows if dense else batch_size // math.gcd(width, batch_size)
    return max(step, (block_rows // step if down else math.ceil(block_rows / step)) * step)


def predict_raster_in_memory(net: nn.Module, state: dict[str, Any], raster: str | Path,
                             eval_path: str = "auto", batch_size: int = 64, tile_rows: int = 128,
                             progress: bool = False,
                             tile_pixels: int | None = TILE_PIXELS) -> RasterPrediction:
    """The whole raster read, reduced and classified at once."""
    check_network_eval_path(net, eval_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_raster(raster) as ds:
            info = info_of(ds)
            fill, _ = raster_fill_values(ds)
            cube, nodata, nonfinite = read_block_masks(ds, 0, ds.height, band_first=True)
    invalid = nodata | nonfinite
    fill.fill(cube, nodata, band_first=True)
    tile_rows = capped_tile_rows(tile_rows, info.width, tile_pixels)
    start = time.perf_counter()
    labels, confidence, path = classify_reduced(net, state, cube, invalid, eval_path, batch_size, tile_rows,
                                                progress, band_first=True)
    seconds = time.perf_counter() - start
    return RasterPrediction(info, path, seconds, int(invalid.sum()), False, None, labels, confidence)


def classify_reduced(net: nn.Module, state: dict[str, Any], cube: np.ndarray, invalid: np.ndarray,
                     eval_path: str, batch_size: int, tile_rows: int,
                     progress: bool = False, band_first: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """(labels with 0 at `invalid` pixels, confidence with 0 there, path) of an in-memory raw cube
    ((H, W, bands), or (bands, H, W) with `band_first`) whose invalid pixels are filled."""
    patch = int(state["patch_size"])
    margin = patch // 2
    padded = padded_tensor(reduce_rows(state, cube, band_first), margin, margin, margin)
    logits, path = scene_logits(net, padded, patch, eval_path, batch_size, tile_rows, progress)
    labels, confidence = class_and_confidence(logits.detach().float().cpu().numpy())
    labels[invalid], confidence[invalid] = 0, 0
    return labels, confidence, path


def predict_raster_streaming(net: nn.Module, state: dict[str, Any], raster: str | Path,
                             output_dir: str | Path, eval_path: str = "auto", batch_size: int = 64,
                             tile_rows: int = 128, block_rows: int | None = None,
                             progress: bool = True,
                             tile_pixels: int | None = TILE_PIXELS) -> RasterPrediction:
    """Classify a raster block by block, writing prediction.tif and confidence.tif as it goes.
    `block_rows` None: about 64 MB of raw float32 spectra per block."""
    check_network_eval_path(net, eval_path)
    with rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB):  # GDAL's block cache would grow with the scene
        return _stream(net, state, raster, Path(output_dir), eval_path, batch_size, tile_rows, block_rows,
                       progress, tile_pixels)


def _stream(net: nn.Module, state: dict[str, Any], raster: str | Path, output_dir: Path, eval_path: str,
            batch_size: int, tile_rows: int, block_rows: int | None, progress: bool,
            tile_pixels: int | None = TILE_PIXELS) -> RasterPrediction:
    patch = int(state["patch_size"])
    margin = patch // 2
    class_names = list(state["class_names"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_raster(raster)
    with ds:
        info = info_of(ds)
        height, width = info.height, info.width
        dense = eval_path != "window" and supports_dense(net)
        tile_rows = capped_tile_rows(tile_rows, width, tile_pixels)
        budget = block_rows is None  # the default budget is a cap (rounded down); a given size a floor
        if budget:
            block_rows = default_block_rows(width, info.bands)
        block_rows = aligned_block_rows(block_rows, dense, tile_rows, width, batch_size, down=budget)
        geo = info.geo()
        invalid_pixels, path = 0, "dense"
        start_time = time.perf_counter()
        fill, _ = raster_fill_values(ds)
        with MapWriters(output_dir, height, width, geo, class_names, class_colours(len(class_names)),
                        progress, map_values(state.get("label_values"), len(class_names))) as maps:
            for start in range(0, height, block_rows):
                stop = min(start + block_rows, height)
                low, high = halo_rows(start, stop, margin, height)
                cube, nodata, nonfinite = read_block_masks(ds, low, high, band_first=True)
                invalid = nodata | nonfinite
                reduced = reduce_rows(state, fill.fill(cube, nodata, band_first=True), band_first=True)
                del cube
                padded = padded_tensor(reduced, margin - (start - low), margin - (high - stop), margin)
                logits, path = scene_logits(net, padded, patch, eval_path, batch_size, tile_rows, False)
                labels, confidence = class_and_confidence(logits.detach().float().cpu().numpy())
                own = invalid[start - low:stop - low]
                labels[own], confidence[own] = 0, 0
                invalid_pixels += int(own.sum())
                maps.write(start, labels, confidence)
            seconds = time.perf_counter() - start_time
    return RasterPrediction(info, path, seconds, invalid_pixels, True, block_rows)


def write_raster_maps(output_dir: str | Path, labels: np.ndarray, confidence: np.ndarray,
                      geo: dict[str, Any] | None, class_names: list[str],
                      label_values: list[int] | None = None) -> list[str]:
    """prediction.tif and confidence.tif of an in-memory prediction (classes written as their
    source values where they fit: `map_values`); returns their names."""
    output_dir = Path(output_dir)
    write_class_map(output_dir / "prediction.tif", labels, geo, class_names, class_colours(len(class_names)),
                    map_values(label_values, len(class_names)))
    write_confidence(output_dir / "confidence.tif", confidence, geo)
    return ["prediction.tif", "confidence.tif"]


def predict_raster_run(cfg: Any, net: nn.Module, state: dict[str, Any], raster: str | Path,
                       source: dict[str, Any]) -> dict[str, Any]:
    """`hsi.predict` on a raster: prediction.tif, confidence.tif and prediction.json in the run folder
    (and prediction.npy for a raster without georeference, read in memory). `cfg.inference.stream`:
    true, false, or auto (stream rasters larger than `cfg.inference.stream_above_mb` as float32)."""
    check_wavelengths(state.get("geo"), raster_info(raster), "the checkpoint")
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = cfg.inference
    options = {"eval_path": settings.eval_path, "batch_size": int(settings.batch_size),
               "tile_rows": int(settings.tile_rows), "tile_pixels": settings.get("tile_pixels", TILE_PIXELS)}
    stream = raster_streams(raster, settings.get("stream", "auto"), settings.get("stream_above_mb", 1024))
    class_names = list(state["class_names"])
    files = ["prediction.tif", "confidence.tif"]
    if stream:
        result = predict_raster_streaming(net, state, raster, output_dir,
                                          block_rows=settings.get("block_rows"),
                                          progress=bool(settings.progress), **options)
    else:
        result = predict_raster_in_memory(net, state, raster, progress=bool(settings.progress), **options)
        write_raster_maps(output_dir, result.labels, result.confidence, result.info.geo(), class_names,
                          state.get("label_values"))
        if not result.info.georeferenced:
            labels = result.labels.astype(np.int16)
            atomic_write(output_dir / "prediction.npy", lambda tmp: _save_npy(tmp, labels))
            files.append("prediction.npy")
    info = result.info
    summary = write_prediction_json(output_dir, source, result, class_names, files)
    log.info("%s inference over %dx%d pixels in %.1f s (%s, %.0f pixels/s); %s in %s", result.path,
             info.height, info.width, result.seconds, "streamed" if result.streamed else "in memory",
             result.pixels_per_second, ", ".join(files), output_dir)
    return summary


def write_prediction_json(output_dir: Path, source: dict[str, Any], result: RasterPrediction,
                          class_names: list[str], files: list[str]) -> dict[str, Any]:
    """`prediction.json` of a raster prediction, checkpoint or ONNX (`source`: what predicted)."""
    info = result.info
    summary = {**source, "raster": info.path, "eval_path": result.path, "streamed": result.streamed,
               "block_rows": result.block_rows, "seconds": round(result.seconds, 2),
               "pixels_per_second": round(result.pixels_per_second), "shape": [info.height, info.width],
               "bands": info.bands, "nodata_pixels": result.invalid_pixels, "class_names": class_names,
               "crs": info.crs, "transform": info.transform, "files": files}
    atomic_write_json(output_dir / "prediction.json", summary)
    return summary


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
