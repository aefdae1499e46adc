"""Rasters through rasterio (GDAL's drivers: GeoTIFF, ENVI, and whatever else GDAL reads).

A raster keeps what a GIS needs to place it: its coordinate reference system, geotransform,
nodata value and, where the file records them, band wavelengths and names. They travel as a
plain `RasterInfo` (and its `geo()` dict, which a checkpoint can store). Reading is by row
windows, so a scene larger than memory can be read block by block (`read_block`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.io import require_file
from hsi.errors import DataError, MissingFileError, first_line

log = logging.getLogger(__name__)

# Files the other readers own (hsi.data.io): never handed to GDAL
ARRAY_SUFFIXES = (".mat", ".npy", ".npz")
_WAVELENGTH_KEYS = ("wavelength", "WAVELENGTH", "CENTRAL_WAVELENGTH_UM", "central_wavelength")


def rasterio():
    """The rasterio module (a default dependency; the message says how to install it if missing)."""
    try:
        import rasterio as module
    except ImportError as err:  # pragma: no cover - rasterio is a default dependency
        raise DataError("Reading rasters needs rasterio: pip install -e . (or pip install rasterio).") \
            from err
    return module


def is_raster_path(path: str | Path | None) -> bool:
    """Whether `path` is read through GDAL (anything but .mat / .npy / .npz)."""
    return path is not None and Path(path).suffix.lower() not in ARRAY_SUFFIXES


def gdal_path(path: str | Path) -> Path:
    """The file GDAL opens: for an ENVI header (`.hdr`), its data file beside it."""
    path = Path(path)
    if path.suffix.lower() != ".hdr":
        return path
    for suffix in ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".bin"):
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise MissingFileError(f"{path} is an ENVI header but no data file is beside it "
                           f"({path.with_suffix('')} or .img / .dat / .raw / .bsq / .bil / .bip).")


@dataclass
class RasterInfo:
    """Size, data type and georeference of a raster file (no pixels)."""

    path: str
    height: int
    width: int
    bands: int
    dtype: str
    crs: str | None = None  # WKT
    transform: list[float] | None = None  # GDAL order: a, b, c, d, e, f of the affine (x = a*col + b*row + c)
    nodata: float | None = None
    wavelengths: list[float] | None = None
    wavelength_units: str | None = None
    band_names: list[str] | None = field(default=None)

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and self.transform is not None

    @property
    def nbytes_float32(self) -> int:
        return self.height * self.width * self.bands * 4

    def affine(self):
        from affine import Affine

        return None if self.transform is None else Affine(*self.transform[:6])

    def geo(self) -> dict[str, Any]:
        """Plain values only (a checkpoint stores them): crs, transform, nodata, wavelengths, names."""
        return {"path": self.path, "crs": self.crs, "transform": self.transform, "nodata": self.nodata,
                "wavelengths": self.wavelengths, "wavelength_units": self.wavelength_units,
                "band_names": self.band_names, "height": self.height, "width": self.width}


def open_raster(path: str | Path):
    """An open rasterio dataset, or a one-line error naming the file and the fix."""
    path = require_file(gdal_path(path), "raster file")
    rio = rasterio()
    try:
        return rio.open(path)
    except rio.errors.RasterioIOError as err:
        raise DataError(f"GDAL cannot read {path} as a raster ({first_line(err)}): use a GeoTIFF, an ENVI "
                        f"image (.hdr + data file) or another format GDAL reads, or .mat / .npy / "
                        f".npz.") from err


def raster_info(path: str | Path) -> RasterInfo:
    """What a raster file holds, without reading its pixels."""
    with open_raster(path) as ds:
        return info_of(ds)


def info_of(ds) -> RasterInfo:
    """`RasterInfo` of an open rasterio dataset."""
    has_transform = ds.transform is not None and not ds.transform.is_identity
    transform = [float(v) for v in tuple(ds.transform)[:6]] if has_transform else None
    crs = ds.crs.to_wkt() if ds.crs is not None else None
    wavelengths, units = _wavelengths(ds)
    names = [d for d in ds.descriptions] if any(ds.descriptions) else None
    return RasterInfo(path=str(Path(ds.name).resolve()), height=int(ds.height), width=int(ds.width),
                      bands=int(ds.count), dtype=str(ds.dtypes[0]), crs=crs, transform=transform,
                      nodata=None if ds.nodata is None else float(ds.nodata), wavelengths=wavelengths,
                      wavelength_units=units, band_names=[str(n or "") for n in names] if names else None)


def _wavelengths(ds) -> tuple[list[float] | None, str | None]:
    """Band centre wavelengths from band metadata (GDAL's ENVI / IMAGERY domains) or the ENVI header."""
    values: list[float] = []
    units = None
    for band in range(1, ds.count + 1):
        tags = {**ds.tags(band), **_tags(ds, band, "IMAGERY")}
        value = next((tags[k] for k in _WAVELENGTH_KEYS if k in tags), None)
        if value is None:
            values = []
            break
        try:
            values.append(float(value))
        except ValueError:
            values = []
            break
        units = units or tags.get("wavelength_units") or ("um" if "CENTRAL_WAVELENGTH_UM" in tags else None)
    if len(values) == ds.count:
        return values, units
    envi = _tags(ds, None, "ENVI")
    if "wavelength" in envi:
        numbers = re.findall(r"[-+0-9.eE]+", envi["wavelength"])
        try:
            parsed = [float(v) for v in numbers]
        except ValueError:
            parsed = []
        if len(parsed) == ds.count:
            return parsed, envi.get("wavelength_units")
    return None, None


def _tags(ds, band: int | None, namespace: str) -> dict[str, str]:
    try:
        return ds.tags(band, ns=namespace) if band is not None else ds.tags(ns=namespace)
    except Exception:  # noqa: BLE001 - a driver without that metadata domain
        return {}


def read_block(ds, row_start: int, row_stop: int,
               band_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rows [row_start, row_stop) of an open raster as ((rows, W, bands) float32, or (bands, rows, W)
    with `band_first`, which saves a copy; (rows, W) invalid mask): nodata pixels (every band equal
    to the nodata value) and pixels holding NaN or inf are invalid; their values are left as read."""
    from rasterio.windows import Window

    window = Window(0, row_start, ds.width, row_stop - row_start)
    data = ds.read(window=window, out_dtype="float32")  # (bands, rows, W)
    invalid = ~np.isfinite(data).all(axis=0)
    if ds.nodata is not None and not np.isnan(ds.nodata):
        invalid |= (data == np.float32(ds.nodata)).all(axis=0)
    if band_first:
        return data, invalid
    return np.ascontiguousarray(data.transpose(1, 2, 0)), invalid


def read_raster(path: str | Path) -> tuple[np.ndarray, np.ndarray, RasterInfo]:
    """A whole raster in memory: ((H, W, bands) float32, (H, W) invalid mask, its `RasterInfo`)."""
    with open_raster(path) as ds:
        info = info_of(ds)
        try:
            cube, invalid = read_block(ds, 0, ds.height)
        except MemoryError as err:
            raise DataError(f"{path} ({info.height}x{info.width}x{info.bands}, "
                            f"{info.nbytes_float32 / 1e9:.1f} GB as float32) does not fit in memory: "
                            f"predict with inference.stream=true, which reads it block by block.") from err
    return cube, invalid, info


def read_label_raster(path: str | Path, grid: RasterInfo | None = None) -> np.ndarray:
    """A one-band label raster as (H, W) int64 (nodata -> 0), checked against `grid`'s shape and,
    when both are georeferenced, its transform."""
    with open_raster(path) as ds:
        if ds.count != 1:
            raise DataError(f"The ground truth {path} has {ds.count} bands; a label raster has one "
                            f"(class numbers, 0 = unlabelled), or give polygons with data.gt_field.")
        labels = ds.read(1)
        info = info_of(ds)
        if ds.nodata is not None:
            labels = np.where(labels == ds.nodata, 0, labels)
    if grid is not None and info.georeferenced and grid.georeferenced and (
            (info.height, info.width) == (grid.height, grid.width)
            and not np.allclose(info.transform, grid.transform)):
        raise DataError(f"The ground truth {path} is on another grid than the cube (transform "
                        f"{info.transform} vs {grid.transform}); resample it onto the cube's grid, or "
                        f"give polygons (data.gt_field=<attribute>).")
    return labels

