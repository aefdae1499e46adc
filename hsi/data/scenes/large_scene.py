"""Training on a raster larger than memory: the scene's labels in memory, its cube never.

`load_streamed_scene` reads the raster once, block by block (rasterio windows), for its nodata
mask and band means; the labels (2-D, small) come from a label raster or polygons as for an
in-memory raster scene (`hsi.data.scenes.geo_scene`). PCA is fitted on a pixel sample read in a second
pass (`sample_pixels`), and `build_reduced_cube` writes the padded reduced cube block by block: in
memory when it fits `memmap_above_mb`, else into a memory-mapped .npy (pixel-interleaved, (H + 2m,
W + 2m, components), so a window reads p short runs of the file) seen band-first as a view, whose
windows `PatchDataset` cuts as from an in-memory cube (the padding is the file's zeros).

Every pixel is computed as the in-memory path computes it: invalid pixels (nodata, NaN / inf)
filled with the band means of the valid pixels, then the same PCA per pixel; so with the same PCA
the reduced cube equals the in-memory one (to float rounding of the band means).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsi.data.preprocessing import PCATransform
from hsi.data.readers.raster import (
    GDAL_CACHE_MB,
    info_of,
    open_raster,
    raster_streams,
    rasterio,
    read_block_masks,
)
from hsi.data.scenes.geo_scene import classes_left, raster_geo, raster_labels, uses_gdal
from hsi.data.scenes.invalid_pixels import FillSums, FillValues
from hsi.data.scenes.scene import Scene, build_scene
from hsi.errors import ConfigError, DataError
from hsi.utils.tiles import default_block_rows, row_tiles

log = logging.getLogger(__name__)

STREAM_CHOICES = ("auto", True, False)
AUTO_SAMPLE = 100_000  # pixels PCA is fitted on for a streamed scene with data.pca.sample=auto


@dataclass
class StreamSettings:
    """When and how a raster scene is built block by block (`data.stream*`, `data.memmap*`)."""

    stream: str | bool = "auto"  # auto: rasters above `stream_above_mb` as float32 | true | false
    stream_above_mb: float = 1024
    memmap_above_mb: float = 1024  # a larger reduced cube goes to a memory-mapped .npy
    memmap_dir: str | None = None  # None: a temporary folder (the file is deleted once mapped)
    block_rows: int | None = None  # None: about 64 MB of raw float32 spectra per block

    def __post_init__(self) -> None:
        if isinstance(self.stream, str) and self.stream.lower() in ("true", "false"):
            self.stream = self.stream.lower() == "true"
        if not any(self.stream is c or self.stream == c == "auto" for c in STREAM_CHOICES):
            raise ConfigError(f"data.stream={self.stream!r}: choose auto, true or false.")
        for key, value in (("data.stream_above_mb", self.stream_above_mb),
                           ("data.memmap_above_mb", self.memmap_above_mb)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{key}={value!r} must be a number of megabytes >= 0.")
        if self.block_rows is not None and (isinstance(self.block_rows, bool) or int(self.block_rows) < 1):
            raise ConfigError(f"data.block_rows={self.block_rows!r} must be a whole number >= 1, or null.")
        if self.memmap_dir is not None and self.stream is not False:
            check_memmap_dir(self.memmap_dir)

    def streams(self, scene: Any, options: Mapping[str, Any]) -> bool:
        """Whether this scene (`scene` name, scene `options`) is built block by block."""
        raster = scene == "custom" and uses_gdal(options.get("cube_path"), options.get("gt_path"),
                                                 options.get("gt_field"))
        if self.stream is True and not raster:
            raise ConfigError("data.stream=true builds a raster scene (data=custom data.cube_path=<GeoTIFF, "
                              "ENVI, ...>) block by block; this scene is read in memory: set "
                              "data.stream=auto or false.")
        if not raster:
            return False
        return raster_streams(options["cube_path"], self.stream, self.stream_above_mb)


def check_memmap_dir(memmap_dir: str | Path) -> Path:
    """`data.memmap_dir` as a folder that exists or can be made and written (checked before a scene
    loads, without creating anything): a one-line error otherwise."""
    folder = Path(memmap_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"data.memmap_dir={memmap_dir} is a file, not a folder: give a folder for the "
                          f"memory-mapped reduced cube (it is made if missing), or null for a temporary one.")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"data.memmap_dir={memmap_dir} cannot be created or written ({existing} is not a "
                          f"writable folder): give a folder you can write, or null for a temporary one.")
    return folder


@dataclass
class StreamedScene(Scene):
    """A raster scene whose cube stays on disk: `cube` is None, `bands` its band count, `means`
    the valid pixels' band means (what nodata pixels are filled with), `nan_means` what NaN / inf
    values are filled with (each band's mean over its finite values once nodata is filled: what
    `hsi.data.scenes.scene.fill_nonfinite` computes in memory; a pixel keeps its finite values)."""

    bands: int = 0
    means: np.ndarray | None = None
    nan_means: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)

    @property
    def raw_bands(self) -> int:
        return int(self.bands)


def load_streamed_scene(cube_path: str | Path, gt_path: str | Path | None = None,
                        gt_field: str | None = None, class_names: Sequence[str] | None = None,
                        name: str = "custom", ignore_labels: Sequence[int] | None = None,
                        nan_policy: str = "exclude", block_rows: int | None = None,
                        **ignored: Any) -> StreamedScene:
    """`hsi.data.scenes.geo_scene.load_raster_scene` without the cube in memory: one pass over the raster's
    row blocks for the invalid mask (nodata, NaN / inf) and the band means of the valid pixels."""
    with warnings.catch_warnings(), rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        warnings.simplefilter("ignore")
        with open_raster(cube_path) as ds:
            info = info_of(ds)
            rows = block_rows or default_block_rows(info.width, info.bands)
            nodata_mask = np.zeros((info.height, info.width), dtype=bool)
            nonfinite = np.zeros_like(nodata_mask)
            sums = FillSums(info.bands)
            for start, stop in row_tiles(info.height, rows):
                data, nodata_mask[start:stop], nonfinite[start:stop] = read_block_masks(
                    ds, start, stop, band_first=True)
                sums.add(data, nodata_mask[start:stop], nonfinite[start:stop])
    invalid = nodata_mask | nonfinite
    fill = sums.values()
    gt, class_names, label_report, values = raster_labels(info, cube_path, gt_path, gt_field, class_names,
                                                          name)
    if nonfinite.any() and nan_policy == "error":
        raise DataError(f"Scene {name!r}: {int(nonfinite.sum())} pixels hold NaN or inf values. Set "
                        f"data.nan_policy=exclude to leave them out, or data.nan_policy=fill to fill "
                        f"them with band means and keep their labels.")
    gt = np.where(nodata_mask, 0, gt)
    values, class_names = classes_left(gt, values, class_names, name)  # as the in-memory path decides
    excluded = 0 if nan_policy == "fill" else int((nonfinite & (gt > 0)).sum())
    if nan_policy != "fill":
        gt = np.where(nonfinite, 0, gt)
    if invalid.any():
        log.info("Scene %r: %d invalid pixels (nodata, NaN / inf) filled with band means.", name,
                 int(invalid.sum()))
    # the labels' checks and re-indexing on a one-band stand-in cube (zero strides: no memory)
    stand_in = np.broadcast_to(np.zeros((1, 1, 1), dtype=np.float32), (*gt.shape, 1))
    made = build_scene(name, stand_in, gt, class_names=class_names, label_values=values,
                       ignore_labels=ignore_labels, nan_policy=nan_policy)
    geo = raster_geo(info, cube_path, label_report)
    return StreamedScene(name=name, cube=None, labels=made.labels, class_names=made.class_names,
                         label_values=made.label_values, ignored_labels=made.ignored_labels,
                         excluded_pixels=excluded, geo=geo,
                         invalid=invalid, bands=info.bands, means=fill.means, nan_means=fill.nan_means)


def sample_coords(height: int, width: int, coords: np.ndarray | None, sample: int | None,
                  seed: int) -> np.ndarray | None:
    """(N, 2) row-major pixels to fit PCA on: `coords` (None: every pixel), at most `sample` of
    them drawn without replacement (seeded), kept in row-major order; None means every pixel."""
    total = height * width if coords is None else len(coords)
    if sample is None or sample >= total:
        return coords
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=int(sample), replace=False))
    if coords is None:
        return np.stack(np.divmod(chosen, width), axis=1)
    order = np.lexsort((coords[:, 1], coords[:, 0]))
    return np.asarray(coords)[order][chosen]


def _filled(values: np.ndarray, nodata: np.ndarray, scene: StreamedScene) -> np.ndarray:
    """(..., bands) spectra with their pixels' `nodata` flags, filled by the one rule
    (`hsi.data.scenes.invalid_pixels`) with the scene's means."""
    return FillValues(scene.means, scene.nan_means).fill(values, nodata)


def _filled_rows(ds, start: int, stop: int, scene: StreamedScene) -> np.ndarray:
    """Raster rows [start, stop) as (rows, W, bands) float32, invalid pixels filled (`_filled`)."""
    data, nodata, _ = read_block_masks(ds, start, stop)
    return _filled(data, nodata, scene)


def sample_pixels(scene: StreamedScene, coords: np.ndarray | None,
                  block_rows: int | None = None) -> np.ndarray:
    """(N, bands) float32 spectra of `coords` (row-major; None: every pixel), invalid ones filled
    with the band means, read block by block."""
    path = scene.geo["gdal_path"]
    height, width = scene.shape
    rows = block_rows or default_block_rows(width, scene.bands)
    if coords is None:
        out = np.empty((height * width, scene.bands), dtype=np.float32)
    else:
        coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        out = np.empty((len(coords), scene.bands), dtype=np.float32)
        order = np.lexsort((coords[:, 1], coords[:, 0]))
    with warnings.catch_warnings(), rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        warnings.simplefilter("ignore")
        with open_raster(path) as ds:
            for start, stop in row_tiles(height, rows):
                if coords is None:
                    out[start * width:stop * width] = _filled_rows(ds, start, stop, scene).reshape(
                        -1, scene.bands)
                    continue
                lo, hi = np.searchsorted(coords[order, 0], [start, stop])
                if hi > lo:  # band-first as read (no transposed copy of the block)
                    picked = order[lo:hi]
                    data, nodata, _ = read_block_masks(ds, start, stop, band_first=True)
                    r, c = coords[picked, 0] - start, coords[picked, 1]
                    out[picked] = _filled(data[:, r, c].T, nodata[r, c], scene)
    return out


def build_reduced_cube(scene: StreamedScene, pca: PCATransform | None, patch_size: int,
                       memmap_above_mb: float = 1024, memmap_dir: str | Path | None = None,
                       block_rows: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The padded reduced cube (C, H + 2m, W + 2m) float32 as `hsi.data.sampling.patches.pad_cube` lays it
    out, built block by block; a memory-mapped .npy when larger than `memmap_above_mb`. Returns it
    as a tensor (sharing the memory or the mapping) and a report of how it was built."""
    height, width = scene.shape
    margin = patch_size // 2
    channels = scene.bands if pca is None else pca.num_components
    shape = (channels, height + 2 * margin, width + 2 * margin)
    nbytes = int(np.prod(shape)) * 4
    mapped = nbytes > float(memmap_above_mb) * 1e6
    rows = block_rows or default_block_rows(width, scene.bands)
    offset, path = 0, None
    if mapped:  # pixel-interleaved on disk (a window reads p short runs, not p x components pages)
        folder = check_memmap_dir(memmap_dir) if memmap_dir else Path(tempfile.gettempdir())
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f"hsi-reduced-{scene.name}-", suffix=".npy", dir=folder)
        except OSError as err:
            raise DataError(f"Cannot write the memory-mapped reduced cube into {folder} ({err.strerror}): "
                            f"set data.memmap_dir to a folder you can write, or null.") from err
        os.close(handle)
        path = Path(name)
        header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(*shape[1:], channels))
        offset = header.offset  # the file is sparse: its padding reads as zeros
        del header
        padded = None
    else:
        padded = np.zeros(shape, dtype=np.float32)
    try:
        with warnings.catch_warnings(), rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB), \
                (open(path, "r+b") if path is not None else contextlib.nullcontext()) as file:
            warnings.simplefilter("ignore")
            with open_raster(scene.geo["gdal_path"]) as ds:
                for start, stop in row_tiles(height, rows):
                    block = _filled_rows(ds, start, stop, scene)
                    reduced = block if pca is None else pca(block)
                    del block
                    if padded is not None:
                        padded[:, margin + start:margin + stop, margin:margin + width] = \
                            reduced.transpose(2, 0, 1)
                        continue
                    rows_out = np.zeros((stop - start, shape[2], channels), dtype=np.float32)
                    rows_out[:, margin:margin + width] = reduced
                    position = offset + 4 * (margin + start) * shape[2] * channels
                    os.pwrite(file.fileno(), rows_out.data, position)  # plain writes: no dirty mapped pages
            if file is not None:  # out of the page cache, so a window maps its own pages, not 64 kB around
                os.fsync(file.fileno())
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        if path is not None:  # copy-on-write: the file itself is never written; band-first as a view
            mapped_array = np.load(path, mmap_mode="c")
            mapped_array._mmap.madvise(mmap.MADV_RANDOM)  # windows are random reads: no read-ahead
            tensor = torch.from_numpy(mapped_array).permute(2, 0, 1)
            if memmap_dir is None:
                path.unlink()  # the mapping keeps the data until the run ends; nothing left behind
        else:
            tensor = torch.from_numpy(padded)
    except BaseException:
        if path is not None:
            path.unlink(missing_ok=True)
        raise
    report = {"reduced_cube": "memmap" if mapped else "memory", "reduced_mb": round(nbytes / 1e6, 1),
              "memmap_path": str(path) if mapped and memmap_dir is not None else None, "block_rows": rows}
    log.info("Scene %r: reduced cube %s (%.0f MB) built in blocks of %d rows.", scene.name,
             "memory-mapped at " + str(path) if mapped else "in memory", nbytes / 1e6, rows)
    return tensor, report
