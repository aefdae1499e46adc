"""One raster prediction, whatever classifies it: a checkpoint's network (`hsi.run.checkpoint_raster`)
or an exported graph (`hsi.deploy.raster`), each a small `RasterBackend`.

The driver holds everything else, once:

- the stream decision (`hsi.data.readers.raster.raster_streams`: `inference.stream`, `stream_above_mb`);
- the invalid-pixel rule (`hsi.data.scenes.invalid_pixels`: this raster's band means, filled before the
  backend sees the spectra; those pixels are 0, no class, in the maps);
- the row-block loop: output rows [start, stop) read with `margin` = patch_size // 2 rows of halo
  above and below (`hsi.utils.tiles.halo_rows`); a row block is a whole number of dense tiles
  (dense backends) or starts on a whole window batch (`aligned_block_rows`), so every tile or
  batch the backend runs is the same array whatever the row-block size;
- the maps (`prediction.tif`, `confidence.tif` through `MapWriters`, with its one progress bar in
  pixels), the log summary and `prediction.json` (`write_prediction_json`).

Streamed, each row block is read from the raster, classified and written before the next
(memory bounded by the row block); in memory, the raster is read once and the same row blocks are
cut from it (the labels are kept: `prediction.npy` for a raster without georeference). The two
give identical maps. Both backends default to `BATCH_SIZE` (64) windows per batch and
`TILE_ROWS` (128) rows per dense tile, capped on wide rasters (`capped_tile_rows`).

Only numpy and rasterio at import: the ONNX path needs no torch from here.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hsi.data.readers.raster import (
    GDAL_CACHE_MB,
    RasterInfo,
    check_wavelengths,
    info_of,
    open_raster,
    raster_info,
    raster_streams,
    rasterio,
    read_block_masks,
)
from hsi.data.scenes.invalid_pixels import FillSums, FillValues
from hsi.maps import class_colours
from hsi.utils.files import atomic_write, atomic_write_json
from hsi.utils.geotiff import MapWriters, class_and_confidence, map_values
from hsi.utils.run_files import CONFIDENCE_RASTER, PREDICTION_FILE, PREDICTION_RASTER, PREDICTION_SUMMARY
from hsi.utils.tiles import (
    BATCH_SIZE,
    TILE_PIXELS,
    TILE_ROWS,
    capped_tile_rows,
    default_block_rows,
    halo_rows,
    row_tiles,
)

log = logging.getLogger(__name__)

MEAN_ROWS = 256  # rows per block when summing a raster's band means (fixed: one order for all paths)
MODEL_WORDS = {"checkpoint": "the checkpoint", "onnx": "the exported model"}  # by `RasterBackend.kind`


class RasterBackend(Protocol):
    """What classifies the row blocks of a raster."""

    kind: str  # "checkpoint" or "onnx" (`MODEL_WORDS`)
    eval_path: str  # what runs, as prediction.json records it: "dense", "window", "onnx-dense-fp32", ...
    dense: bool  # runs dense row tiles (row blocks: whole tiles), else window batches
    patch_size: int
    class_names: list[str]
    label_values: list[int] | None  # the classes' source values, written in prediction.tif
    band_record: dict[str, Any] | None  # the model's band centres (`wavelengths`), checked on the raster

    def block_logits(self, block: np.ndarray, top: int, bottom: int, tile_rows: int,
                     batch_size: int) -> np.ndarray:
        """(K, rows, W) float32 logits of the output rows of `block` ((bands, top + rows + bottom, W)
        raw spectra, invalid pixels filled): `top` / `bottom` rows of halo above / below them (fewer
        than the margin at the raster's edge: the rest is zero padding)."""
        ...


@dataclass(frozen=True)
class RasterSettings:
    """How the rows of a raster are cut and batched (`inference.*`)."""

    block_rows: int | None = None  # None: ~64 MB of raw float32 spectra, rounded down; a number: rounded up
    tile_rows: int = TILE_ROWS
    tile_pixels: int | None = TILE_PIXELS
    batch_size: int = BATCH_SIZE
    progress: bool = True

    @classmethod
    def of(cls, settings: Any) -> RasterSettings:
        """From `cfg.inference`."""
        return cls(settings.get("block_rows"), int(settings.get("tile_rows", TILE_ROWS)),
                   settings.get("tile_pixels", TILE_PIXELS), int(settings.get("batch_size", BATCH_SIZE)),
                   bool(settings.get("progress", True)))


@dataclass
class RasterPrediction:
    """What a prediction over a raster produced (labels / confidence kept only in memory)."""

    info: RasterInfo
    path: str  # the backend's eval_path
    seconds: float  # the fill values, the row-block loop (reading, classifying, writing)
    invalid_pixels: int
    streamed: bool
    block_rows: int
    labels: np.ndarray | None = None
    confidence: np.ndarray | None = None

    @property
    def pixels_per_second(self) -> float:
        return self.info.height * self.info.width / max(self.seconds, 1e-9)


@dataclass
class ClassifiedRows:
    """What the row-block loop gives back."""

    block_rows: int
    invalid_pixels: int
    labels: np.ndarray | None
    confidence: np.ndarray | None


class RasterRows:
    """Row blocks read from an open raster when needed (streaming), invalid pixels filled."""

    def __init__(self, ds: Any, fill: FillValues) -> None:
        self.ds, self.fill = ds, fill

    def read(self, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
        """((bands, high - low, W) filled spectra, (high - low, W) invalid mask) of rows [low, high)."""
        cube, nodata, nonfinite = read_block_masks(self.ds, low, high, band_first=True)
        return self.fill.fill(cube, nodata, band_first=True), nodata | nonfinite


class ArrayRows:
    """Row blocks cut from a cube in memory ((bands, H, W), invalid pixels filled)."""

    def __init__(self, planes: np.ndarray, invalid: np.ndarray) -> None:
        self.planes, self.invalid = planes, invalid

    def read(self, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
        return self.planes[:, low:high], self.invalid[low:high]


def raster_fill_values(ds: Any) -> FillValues:
    """What the invalid pixels of an open raster are filled with (`hsi.data.scenes.invalid_pixels`), its
    band sums read in blocks of `MEAN_ROWS` rows."""
    sums = FillSums(ds.count)
    for start, stop in row_tiles(ds.height, MEAN_ROWS):
        sums.add(*read_block_masks(ds, start, stop, band_first=True))
    return sums.values()


def aligned_block_rows(block_rows: int, dense: bool, tile_rows: int, width: int, batch_size: int,
                       down: bool = False) -> int:
    """`block_rows` rounded up (`down`: down, to at least one step) to a whole number of dense tiles
    (dense path) or of window batches."""
    step = tile_rows if dense else batch_size // math.gcd(width, batch_size)
    return max(step, (block_rows // step if down else math.ceil(block_rows / step)) * step)


def row_block_rows(block_rows: int | None, dense: bool, tile_rows: int, width: int, bands: int,
                   batch_size: int) -> int:
    """The rows of one row block: `block_rows` rounded up, or (None) the ~64 MB budget rounded down."""
    budget = block_rows is None
    rows = default_block_rows(width, bands) if budget else int(block_rows)
    return aligned_block_rows(rows, dense, tile_rows, width, batch_size, down=budget)


def classify_rows(backend: RasterBackend, rows: RasterRows | ArrayRows, shape: tuple[int, int, int],
                  geo: dict[str, Any] | None, output_dir: Path, settings: RasterSettings,
                  keep: bool) -> ClassifiedRows:
    """The one row-block loop: every row block of a (H, W, bands) raster classified and written to
    prediction.tif / confidence.tif in `output_dir` (`keep`: the labels and confidence kept too)."""
    height, width, bands = shape
    tile_rows = capped_tile_rows(settings.tile_rows, width, settings.tile_pixels)
    block_rows = row_block_rows(settings.block_rows, backend.dense, tile_rows, width, bands,
                                settings.batch_size)
    margin = backend.patch_size // 2
    names = list(backend.class_names)
    kept_labels = np.zeros((height, width), dtype=np.int64) if keep else None
    kept_confidence = np.zeros((height, width), dtype=np.float32) if keep else None
    invalid_pixels = 0
    with MapWriters(output_dir, height, width, geo, names, class_colours(len(names)), settings.progress,
                    map_values(backend.label_values, len(names))) as maps:
        for start, stop in row_tiles(height, block_rows):
            low, high = halo_rows(start, stop, margin, height)
            block, invalid = rows.read(low, high)
            logits = backend.block_logits(block, start - low, high - stop, tile_rows, settings.batch_size)
            labels, confidence = class_and_confidence(logits)
            own = invalid[start - low:stop - low]
            labels[own], confidence[own] = 0, 0
            invalid_pixels += int(own.sum())
            maps.write(start, labels, confidence)
            if keep:
                kept_labels[start:stop], kept_confidence[start:stop] = labels, confidence
    return ClassifiedRows(block_rows, invalid_pixels, kept_labels, kept_confidence)


def predict_raster(backend: RasterBackend, raster: str | Path, output_dir: str | Path, stream: bool,
                   settings: RasterSettings = RasterSettings()) -> RasterPrediction:
    """prediction.tif and confidence.tif of `raster` in `output_dir`, streamed or read in memory."""
    output_dir = Path(output_dir)
    with rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB):  # GDAL's block cache would grow with the scene
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning for a plain raster
            ds = open_raster(raster)
        with ds:
            info = info_of(ds)
            started = time.perf_counter()
            fill = raster_fill_values(ds)
            if stream:
                rows: RasterRows | ArrayRows = RasterRows(ds, fill)
            else:
                cube, nodata, nonfinite = read_block_masks(ds, 0, info.height, band_first=True)
                rows = ArrayRows(fill.fill(cube, nodata, band_first=True), nodata | nonfinite)
            done = classify_rows(backend, rows, (info.height, info.width, info.bands), info.geo(), output_dir,
                                 settings, keep=not stream)
            seconds = time.perf_counter() - started
    return RasterPrediction(info, backend.eval_path, seconds, done.invalid_pixels, stream, done.block_rows,
                            done.labels, done.confidence)


def predict_cube(backend: RasterBackend, cube: np.ndarray, invalid: np.ndarray, geo: dict[str, Any] | None,
                 output_dir: str | Path, settings: RasterSettings = RasterSettings()) -> ClassifiedRows:
    """prediction.tif and confidence.tif of a (H, W, bands) cube in memory whose invalid pixels
    (`invalid`) are filled (a training scene read from a raster), labels and confidence kept."""
    rows = ArrayRows(cube.transpose(2, 0, 1), invalid)
    return classify_rows(backend, rows, cube.shape, geo, Path(output_dir), settings, keep=True)


def predict_raster_run(backend: RasterBackend, raster: str | Path, output_dir: str | Path, settings: Any,
                       source: dict[str, Any]) -> dict[str, Any]:
    """`hsi.predict` on a raster: prediction.tif, confidence.tif and prediction.json in `output_dir`
    (and prediction.npy for a raster without georeference, read in memory). `settings`:
    `cfg.inference` (`stream`: true, false or auto, streaming rasters larger than `stream_above_mb`
    as float32); `source`: what predicted, for prediction.json."""
    check_wavelengths(backend.band_record, raster_info(raster), MODEL_WORDS[backend.kind])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stream = raster_streams(raster, settings.get("stream", "auto"), settings.get("stream_above_mb", 1024))
    result = predict_raster(backend, raster, output_dir, stream, RasterSettings.of(settings))
    files = [PREDICTION_RASTER, CONFIDENCE_RASTER]
    if result.labels is not None and not result.info.georeferenced:
        labels = result.labels.astype(np.int16)
        atomic_write(output_dir / PREDICTION_FILE, lambda tmp: _save_npy(tmp, labels))
        files.append(PREDICTION_FILE)
    summary = write_prediction_json(output_dir, source, result, list(backend.class_names), files)
    info = result.info
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
    atomic_write_json(output_dir / PREDICTION_SUMMARY, summary)
    return summary


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
