"""`hsi.predict model_path=<model.onnx> data=custom data.cube_path=<raster>`: an exported graph
(onnxruntime, no torch) classifies a raster read through GDAL; `prediction.tif` and
`confidence.tif` carry the raster's CRS and transform, as with a checkpoint.

Invalid pixels (nodata, NaN / inf) are filled by the rule training and the checkpoint path use
(`hsi.data.scenes.invalid_pixels`: this raster's band means, summed in a fixed order), and are 0 in
the maps. Both kinds of graph stream (`stream=true`, or `auto` above `stream_above_mb`): row
blocks with their halo; a dense graph's blocks are whole `tile_rows` tiles, each the same array
the in-memory path gives the graph; a window graph's blocks start on a whole batch of pixels, the
PCA graph runs on the block's rows and each window is cut from the block padded as the whole
scene is, so the labels are identical.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

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
from hsi.deploy.runtime import OnnxClassifier
from hsi.maps import class_colours
from hsi.run.outputs import add_raster_accuracy, truth_for_model
from hsi.run.prediction import RecordedData, moved_files, raster_truth
from hsi.run.streaming import RasterPrediction, aligned_block_rows, write_prediction_json
from hsi.utils.geotiff import MapWriters, class_and_confidence, map_values, write_class_map, write_confidence
from hsi.utils.tiles import default_block_rows, halo_rows, row_tiles

log = logging.getLogger(__name__)

GDAL_CACHE_MB = 64


def _dense_tiles(model: OnnxClassifier, cube: np.ndarray, offset: int, start: int, stop: int,
                 height: int, tile_rows: int) -> np.ndarray:
    """Logits (K, stop - start, W) of scene rows [start, stop), `cube` holding scene rows from
    `offset` on (with the halo): the tiles `OnnxClassifier._dense` cuts, cut the same way."""
    margin = model.patch_size // 2
    name = model.session.get_inputs()[0].name
    out = []
    for tile_start in range(start, stop, tile_rows):
        tile_stop = min(tile_start + tile_rows, height)
        low, high = halo_rows(tile_start, tile_stop, margin, height)
        tile = np.ascontiguousarray(cube[low - offset:high - offset].transpose(2, 0, 1))[None]
        logits = model.session.run(None, {name: tile})[0][0]
        out.append(logits[:, tile_start - low:tile_stop - low])
    return np.concatenate(out, axis=1)


def onnx_raster_in_memory(model: OnnxClassifier, raster: str | Path, tile_rows: int = 128,
                          batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, RasterInfo, float]:
    """(labels, confidence, info, seconds) of the whole raster read at once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_raster(raster) as ds:
            info = info_of(ds)
            fill, _ = raster_fill_values(ds)
            cube, nodata, nonfinite = read_block_masks(ds, 0, ds.height)
    invalid = nodata | nonfinite
    start = time.perf_counter()
    logits = model.logits(fill.fill(cube, nodata), tile_rows, batch_size)
    seconds = time.perf_counter() - start
    labels, confidence = class_and_confidence(logits)
    labels[invalid], confidence[invalid] = 0, 0
    return labels, confidence, info, seconds


def _window_block(model: OnnxClassifier, cube: np.ndarray, offset: int, start: int, stop: int,
                  tile_rows: int, batch_size: int) -> np.ndarray:
    """Logits (K, stop - start, W) of scene rows [start, stop) through a window graph, `cube` holding
    scene rows from `offset` on (with the halo): the PCA graph in row tiles, then each pixel's window
    cut from the block zero-padded as the in-memory path pads the whole scene."""
    margin = model.patch_size // 2
    high = offset + cube.shape[0]
    reduced = model.reduce(cube, tile_rows)  # (C, rows, W)
    padded = np.pad(reduced, ((0, 0), (margin - (start - offset), margin - (high - stop)), (margin, margin)))
    return model.window_logits(padded, batch_size)


def onnx_raster_streaming(model: OnnxClassifier, raster: str | Path, output_dir: str | Path,
                          tile_rows: int = 128, block_rows: int | None = None, progress: bool = True,
                          batch_size: int = 64) -> tuple[RasterInfo, float, int, int]:
    """Stream a raster through the graph, writing prediction.tif and confidence.tif block by block;
    returns (info, seconds, invalid pixels, block rows). A dense graph's blocks are whole `tile_rows`
    tiles; a window graph's blocks start on a whole `batch_size` batch of pixels, so both see the
    arrays the in-memory path gives them."""
    output_dir = Path(output_dir)
    names = list(model.class_names)
    with warnings.catch_warnings(), rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        warnings.simplefilter("ignore")
        with open_raster(raster) as ds:
            info = info_of(ds)
            height, width, margin = info.height, info.width, model.patch_size // 2
            rows = aligned_block_rows(block_rows or default_block_rows(width, info.bands),
                                      model.kind == "dense", tile_rows, width, batch_size)
            started = time.perf_counter()
            fill, invalid_pixels = raster_fill_values(ds)
            geo = info.geo()
            with MapWriters(output_dir, height, width, geo, names, class_colours(len(names)),
                            progress, map_values(model.meta.get("label_values"), len(names))) as maps:
                for start, stop in row_tiles(height, rows):
                    low, high = halo_rows(start, stop, margin, height)
                    cube, nodata, nonfinite = read_block_masks(ds, low, high)
                    invalid = nodata | nonfinite
                    cube = fill.fill(cube, nodata)
                    if model.kind == "dense":
                        logits = _dense_tiles(model, cube, low, start, stop, height, tile_rows)
                    else:
                        logits = _window_block(model, cube, low, start, stop, tile_rows, batch_size)
                    labels, confidence = class_and_confidence(logits)
                    own = invalid[start - low:stop - low]
                    labels[own], confidence[own] = 0, 0
                    maps.write(start, labels, confidence)
    return info, time.perf_counter() - started, invalid_pixels, rows


def predict_onnx_raster(cfg: Any, raster: str | Path) -> dict[str, Any]:
    """Classify `raster` with the exported graph `cfg.model_path`; write the maps and prediction.json."""
    settings = cfg.inference
    model = OnnxClassifier.load(cfg.model_path, threads=settings.threads)
    truth = truth_for_model(raster_truth(cfg.get("data"), RecordedData(model.meta["data"]), moved_files(cfg),
                                         settings.block_rows),
                            model.class_names, model.meta.get("label_values"), model.meta.get("scene"))
    check_wavelengths(model.meta, raster_info(raster), "the exported model")
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tile_rows, batch_size = int(settings.tile_rows), int(settings.batch_size)
    stream = raster_streams(raster, settings.stream, settings.stream_above_mb)
    names = list(model.class_names)
    block_rows = None
    if stream:
        info, seconds, invalid_pixels, block_rows = onnx_raster_streaming(
            model, raster, output_dir, tile_rows, settings.block_rows, bool(settings.progress),
            batch_size)
    else:
        labels, confidence, info, seconds = onnx_raster_in_memory(model, raster, tile_rows, batch_size)
        invalid_pixels = int((labels == 0).sum())
        write_class_map(output_dir / "prediction.tif", labels, info.geo(), names, class_colours(len(names)),
                        map_values(model.meta.get("label_values"), len(names)))
        write_confidence(output_dir / "confidence.tif", confidence, info.geo())
    path = f"onnx-{model.kind}-{model.precision}"
    result = RasterPrediction(info, path, seconds, invalid_pixels, bool(stream), block_rows)
    summary = write_prediction_json(output_dir, {"model": str(Path(cfg.model_path).resolve())}, result, names,
                                    ["prediction.tif", "confidence.tif"])
    log.info("%s inference over %dx%d pixels in %.1f s (%s); prediction.tif, confidence.tif in %s", path,
             info.height, info.width, seconds, "streamed" if stream else "in memory", output_dir)
    return add_raster_accuracy(output_dir, summary, truth)
