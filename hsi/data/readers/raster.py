"""Rasters through rasterio (GDAL's drivers: GeoTIFF, ENVI, and whatever else GDAL reads).

A raster keeps what a GIS needs to place it: its coordinate reference system, geotransform,
nodata value and, where the file records them, band wavelengths and names. They travel as a
plain `RasterInfo` (and its `geo()` dict, which a checkpoint can store). Reading is by row
windows, so a scene larger than memory can be read block by block (`read_block`).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.readers.io import require_file
from hsi.errors import DataError, MissingFileError, first_line

log = logging.getLogger(__name__)

# Files the other readers own (hsi.data.readers.io): never handed to GDAL
ARRAY_SUFFIXES = (".mat", ".npy", ".npz")
GDAL_CACHE_MB = 64  # GDAL's block cache while a raster is read in blocks (its default is 5% of the RAM)
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning: `RasterInfo` says it
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


# band centres may differ by this share of the wavelength, or by WAVELENGTH_TOLERANCE_NM, the larger
WAVELENGTH_TOLERANCE = 0.01
WAVELENGTH_TOLERANCE_NM = 2.0
_MICROMETRES = ("um", "µm", "micrometer", "micrometre", "micron")


def wavelengths_nm(values: list[float] | None, units: str | None) -> np.ndarray | None:
    """Band centres in nanometres: `units` as ENVI / GDAL spell them (nm, Nanometers, um,
    Micrometers, ...); unknown units are taken as micrometres below 30, else nanometres."""
    if not values:
        return None
    centres = np.asarray(values, dtype=np.float64)
    unit = (units or "").strip().lower()
    if unit.startswith(_MICROMETRES) or (not unit.startswith("nano") and unit != "nm"
                                         and np.nanmedian(centres) < 30):
        return centres * 1000
    return centres


def check_wavelengths(recorded: dict[str, Any] | None, info: RasterInfo, model: str = "the model") -> None:
    """Refuse a raster whose band centres differ from those `model` was trained on (`recorded`:
    its `wavelengths` / `wavelength_units`) by more than 1% or 2 nm, the larger; nothing to
    compare when either side has none (or their band counts differ: checked elsewhere)."""
    theirs = wavelengths_nm((recorded or {}).get("wavelengths"), (recorded or {}).get("wavelength_units"))
    ours = wavelengths_nm(info.wavelengths, info.wavelength_units)
    if theirs is None or ours is None or len(theirs) != len(ours):
        return
    allowed = np.maximum(WAVELENGTH_TOLERANCE * theirs, WAVELENGTH_TOLERANCE_NM)
    beyond = np.abs(ours - theirs) > allowed
    if beyond.any():
        band = int(np.argmax(np.abs(ours - theirs) / allowed))
        raise DataError(f"The band centres of {info.path} differ from those {model} was trained on: band "
                        f"{band + 1} is at {ours[band]:.1f} nm, the model's at {theirs[band]:.1f} nm "
                        f"({int(beyond.sum())} of {len(ours)} bands beyond 1% or 2 nm); predict on a "
                        f"raster of the same sensor and band set, or correct its wavelength metadata "
                        f"(ENVI header `wavelength`, GDAL band metadata) if that is what is wrong.")


def read_block(ds, row_start: int, row_stop: int,
               band_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rows [row_start, row_stop) of an open raster as ((rows, W, bands) float32, or (bands, rows, W)
    with `band_first`, which saves a copy; (rows, W) invalid mask): nodata pixels and pixels holding
    NaN or inf are invalid (`read_block_masks` tells the two apart)."""
    data, nodata, nonfinite = read_block_masks(ds, row_start, row_stop, band_first)
    return data, nodata | nonfinite


def read_block_masks(ds, row_start: int, row_stop: int,
                     band_first: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows [row_start, row_stop) as `read_block` reads them, with two (rows, W) masks: nodata
    (every band equal to the nodata value, NaN included: a pixel of NaN in every band when the
    nodata value is NaN) and, apart from those, pixels holding NaN or inf (`data.nan_policy`).

    Values are physical: each band's GDAL scale and offset (`value * scale + offset`, as
    `gdalinfo` lists them) are applied, so a cube stored as scaled integers reads as the floats it
    stands for; nodata is compared with the stored values. Invalid values are left as read."""
    from rasterio.windows import Window

    window = Window(0, row_start, ds.width, row_stop - row_start)
    try:
        data = ds.read(window=window, out_dtype="float32")  # (bands, rows, W)
    except rasterio().errors.RasterioIOError as err:
        raise DataError(f"Reading rows {row_start}..{row_stop} of {ds.name} failed ({first_line(err)}): "
                        f"the file is truncated or damaged; copy it again and check it with "
                        f"gdalinfo -checksum {ds.name}.") from err
    if ds.nodata is None:
        nodata = np.zeros(data.shape[1:], dtype=bool)
    elif np.isnan(ds.nodata):
        nodata = np.isnan(data).all(axis=0)
    else:
        nodata = (data == np.float32(ds.nodata)).all(axis=0)
    _apply_scales(ds, data)
    nonfinite = ~np.isfinite(data).all(axis=0) & ~nodata
    if band_first:
        return data, nodata, nonfinite
    return np.ascontiguousarray(data.transpose(1, 2, 0)), nodata, nonfinite


def _apply_scales(ds, data: np.ndarray) -> None:
    """GDAL's per-band scale and offset, in place on (bands, rows, W) values (none: unchanged)."""
    scales = np.asarray([1.0 if s is None else s for s in ds.scales], dtype=np.float64)
    offsets = np.asarray([0.0 if o is None else o for o in ds.offsets], dtype=np.float64)
    if np.all(scales == 1) and np.all(offsets == 0):
        return
    for band, (scale, offset) in enumerate(zip(scales, offsets)):
        if scale != 1 or offset != 0:
            data[band] = (data[band] * scale + offset).astype(np.float32)


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
    """A one-band label raster as (H, W) int64 (nodata -> 0). When it and `grid` both have a
    geotransform and their CRS, transform or size differ, it is reprojected onto `grid` with
    nearest-neighbour resampling (what QGIS shows, and `gdalwarp -r near` does), and logged."""
    with open_raster(path) as ds:
        if ds.count != 1:
            raise DataError(f"The ground truth {path} has {ds.count} bands; a label raster has one "
                            f"(class numbers, 0 = unlabelled), or give polygons with data.gt_field.")
        try:
            labels = ds.read(1)
        except rasterio().errors.RasterioIOError as err:
            raise DataError(f"Reading {path} failed ({first_line(err)}): the file is truncated or "
                            f"damaged; copy it again and check it with gdalinfo -checksum {path}.") from err
        info = info_of(ds)
        if ds.nodata is not None:
            labels = np.where(labels == ds.nodata, 0, labels)
    if grid is not None and info.transform is not None and grid.transform is not None and \
            not same_grid(info, grid):
        labels = _onto_grid(labels, info, grid)
    return labels


def same_grid(a: RasterInfo, b: RasterInfo) -> bool:
    """Whether two rasters have the same size, transform and CRS (a raster without a CRS is taken
    to share the other's: only two CRSs that differ make another grid of the same numbers)."""
    from rasterio.crs import CRS

    if (a.height, a.width) != (b.height, b.width) or not np.allclose(a.transform, b.transform):
        return False
    return a.crs is None or b.crs is None or CRS.from_wkt(a.crs) == CRS.from_wkt(b.crs)


def crs_name(wkt: str | None) -> str:
    """A CRS as people name it (EPSG:32610), its WKT's name otherwise, or 'no CRS'."""
    from rasterio.crs import CRS

    if wkt is None:
        return "no CRS"
    crs = CRS.from_wkt(wkt)
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else crs.to_string()[:80]


def _onto_grid(labels: np.ndarray, info: RasterInfo, grid: RasterInfo) -> np.ndarray:
    """Labels of `info`'s grid reprojected onto `grid`'s (nearest neighbour; 0 outside)."""
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, reproject

    if (info.crs is None) != (grid.crs is None):
        raise DataError(f"The ground truth {info.path} is in {crs_name(info.crs)} but the cube {grid.path} "
                        f"in {crs_name(grid.crs)}, so one cannot be placed on the other; give both "
                        f"the same CRS (gdal_edit.py -a_srs EPSG:<code> on the one without).")
    out = np.zeros((grid.height, grid.width), dtype=np.int64)
    crs = {"src_crs": CRS.from_wkt(info.crs), "dst_crs": CRS.from_wkt(grid.crs)} if info.crs else \
        {"src_crs": CRS.from_epsg(3857), "dst_crs": CRS.from_epsg(3857)}  # neither has one: same plane
    reproject(labels.astype(np.int64), out, src_transform=info.affine(),
              dst_transform=grid.affine(), src_nodata=0, dst_nodata=0, resampling=Resampling.nearest,
              **crs)
    if labels.any() and not out.any():
        raise DataError(f"The ground truth {info.path} ({crs_name(info.crs)}) covers no pixel of the cube "
                        f"{grid.path} ({crs_name(grid.crs)}) once reprojected onto its grid: check that "
                        f"they belong to the same scene and that each file declares its real CRS "
                        f"(gdalinfo shows it; gdal_edit.py -a_srs EPSG:<code> sets it).")
    log.warning("The ground truth %s (%s, %dx%d) is on another grid than the cube (%s, %dx%d): "
                "reprojected onto the cube's grid, nearest neighbour (gdalwarp -r near -t_srs %s "
                "does the same).", info.path, crs_name(info.crs), info.height, info.width,
                crs_name(grid.crs), grid.height, grid.width, crs_name(grid.crs))
    return out


def raster_streams(raster: str | Path, stream: str | bool, stream_above_mb: float) -> bool:
    """The one "stream?" decision for a raster (training scene, checkpoint or ONNX prediction):
    `stream` true / false as given, auto when the raster as float32 is larger than `stream_above_mb`
    MB (`data.stream_above_mb`, `inference.stream_above_mb`)."""
    if stream != "auto":
        return bool(stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_raster(raster) as ds:
            return info_of(ds).nbytes_float32 > float(stream_above_mb) * 1e6
