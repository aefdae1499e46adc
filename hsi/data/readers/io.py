"""Reading cubes and ground truths: `.mat` (v5, v7.3), `.npy` / `.npz`, ENVI and GeoTIFF files.

ENVI (via `spectral`) and GeoTIFF (via `tifffile`) need the optional extra: `pip install -e ".[io]"`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsi.errors import (
    DataError,
    HsiError,
    MissingDependencyError,
    MissingFileError,
    MissingKeyError,
    first_line,
)

ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".bin")
SUPPORTED = (".mat (v5 / v7.3), .npy, .npz, ENVI (.hdr + data file), GeoTIFF (.tif / .tiff), or any "
             "raster GDAL reads (hsi.data.readers.raster)")


def require_file(path: str | Path, what: str = "data file") -> Path:
    """`path` as a Path if it is a file; else one line naming the problem and the fix."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give the path of the {what} in it.")
    if not path.is_file():
        raise MissingFileError(f"File not found: {path}. Check the path (relative paths are "
                               f"relative to the folder the command runs in).")
    return path


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """All numeric arrays in a file, keyed by variable name (the file's stem for one-array formats).

    MATLAB v7.3 files are HDF5 and store arrays column-major, so they are transposed back
    to the (rows, cols, bands) order that scipy gives for v5 files. ENVI cubes come as
    (rows, cols, bands) whatever their interleave; a GeoTIFF comes as stored (bands may be
    first; see `hsi.data.scenes.scene.orient_cube`). Single-band ENVI / GeoTIFF images are 2-D.
    """
    path = require_file(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); the copy or download did not finish.")
    try:
        return _read_any(path)
    except (HsiError, ImportError):
        raise
    except Exception as err:  # a reader's own error on a damaged file: name the file instead
        raise DataError(f"Could not read {path} ({type(err).__name__}: {first_line(err)}): the file "
                        f"is truncated or damaged, or is not a {path.suffix or 'supported'} file "
                        f"({SUPPORTED}).") from err



def _read_any(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return {path.stem: np.load(path, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    if suffix == ".mat":
        return _read_mat(path)
    if suffix in (".tif", ".tiff"):
        return {path.stem: _read_tiff(path)}
    header = envi_header(path)
    if header is not None:
        return {header.stem: _read_envi(header)}
    raise DataError(f"Unsupported file type {suffix!r} for {path}: use {SUPPORTED}. For ENVI, give "
                     f"the .hdr file (or a data file with a .hdr beside it).")


def envi_header(path: Path) -> Path | None:
    """The ENVI header for `path`: itself if `.hdr`, else `<path>.hdr` or `<stem>.hdr` beside it."""
    if path.suffix.lower() == ".hdr":
        return path
    if path.suffix.lower() not in ENVI_DATA_SUFFIXES:
        return None
    for candidate in (path.with_name(path.name + ".hdr"), path.with_suffix(".hdr")):
        if candidate.is_file():
            return candidate
    return None


def _import_optional(module: str, package: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(f"Reading {what} files needs the optional package {package!r}: "
                          f"pip install -e \".[io]\" (or pip install spectral tifffile), or convert "
                          f"the file to .npy / .mat.") from err


def _read_envi(header: Path) -> np.ndarray:
    envi = _import_optional("spectral.io.envi", "spectral", "ENVI")
    try:
        image = envi.open(str(header))
        _check_envi_size(header, image)
        array = np.asarray(image.load())
    except DataError:
        raise
    except Exception as err:  # spectral raises its own error types for bad headers / missing data
        raise DataError(f"Could not read the ENVI image {header} ({type(err).__name__}: {err}); "
                         f"check the header and that its data file is beside it.") from err
    return array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array


def _check_envi_size(header: Path, image) -> None:
    """The data file must hold what the header claims, before anything is allocated."""
    claimed = int(np.prod(image.shape)) * np.dtype(image.dtype).itemsize
    data_file = Path(getattr(image, "filename", ""))
    have = data_file.stat().st_size if data_file.is_file() else 0
    if claimed > have:
        raise DataError(f"The ENVI header {header} claims a {' x '.join(map(str, image.shape))} "
                        f"{np.dtype(image.dtype).name} image ({claimed / 1e9:.2f} GB) but its data file "
                        f"{data_file} holds {have / 1e9:.2f} GB: the header is wrong or the data file "
                        f"is truncated.")


def _read_tiff(path: Path) -> np.ndarray:
    tifffile = _import_optional("tifffile", "tifffile", "GeoTIFF")
    array = np.asarray(tifffile.imread(path))
    return np.squeeze(array) if array.ndim > 2 else array


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    import scipy.io

    try:
        raw = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 (HDF5)
        return _read_mat_v73(path)
    except ValueError as err:
        import h5py

        if h5py.is_hdf5(path):  # HDF5 without MATLAB's header
            return _read_mat_v73(path)
        raise DataError(f"Could not read {path} as a MATLAB file ({err}); is it truncated?") from err
    return {k: v for k, v in raw.items() if not k.startswith("__") and _is_numeric(v)}


def _read_mat_v73(path: Path) -> dict[str, np.ndarray]:
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        for key, item in f.items():
            if isinstance(item, h5py.Dataset) and not key.startswith("#"):
                value = item[()]
                if _is_numeric(value):
                    arrays[key] = np.ascontiguousarray(np.asarray(value).T)
    return arrays


def _is_numeric(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def read_array(path: str | Path, key: str | None, ndim: int, what: str) -> np.ndarray:
    """One array from a file: the variable `key`, or the only `ndim`-dimensional array.

    `what` names the array ("cube", "ground truth") in error messages.
    """
    return pick_array(read_arrays(path), key, ndim, what, path)


def pick_array(arrays: dict[str, np.ndarray], key: str | None, ndim: int, what: str,
               source: str | Path) -> np.ndarray:
    """`arrays[key]`, or the only `ndim`-dimensional array; errors list what `source` holds."""
    listing = ", ".join(f"{k} {v.shape}" for k, v in arrays.items()) or "none"
    if key is not None:
        if key not in arrays:
            raise MissingKeyError(f"{source} has no variable {key!r} for the {what}; "
                           f"variables there: {listing}.")
        return arrays[key]
    candidates = [k for k, v in arrays.items() if v.ndim == ndim]
    if len(candidates) != 1:
        raise DataError(f"Cannot tell which variable of {source} is the {what} "
                         f"({len(candidates)} arrays with {ndim} dimensions; variables there: "
                         f"{listing}). Name it with the key option (data.cube_key / data.gt_key), "
                         f"or give the file that holds it (data.cube_path / data.gt_path).")
    return arrays[candidates[0]]
