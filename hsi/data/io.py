"""Reading cubes and ground truths from `.mat` (v5 and v7.3) and `.npy` / `.npz` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """All numeric arrays in a `.mat`, `.npy` or `.npz` file, keyed by variable name.

    MATLAB v7.3 files are HDF5 and store arrays column-major, so they are transposed back
    to the (rows, cols, bands) order that scipy gives for v5 files.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"File not found: {path}. Check the path (relative paths are "
                                f"relative to the folder the command runs in).")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return {path.stem: np.load(path, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    if suffix == ".mat":
        return _read_mat(path)
    raise ValueError(f"Unsupported file type {suffix!r} for {path}: use .mat or .npy/.npz.")


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
        raise ValueError(f"Could not read {path} as a MATLAB file ({err}); is it truncated?") from err
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
    arrays = read_arrays(path)
    listing = ", ".join(f"{k} {v.shape}" for k, v in arrays.items()) or "none"
    if key is not None:
        if key not in arrays:
            raise KeyError(f"{path} has no variable {key!r} for the {what}; "
                           f"variables there: {listing}.")
        return arrays[key]
    candidates = [k for k, v in arrays.items() if v.ndim == ndim]
    if len(candidates) != 1:
        raise ValueError(f"Cannot tell which variable of {path} is the {what} "
                         f"({len(candidates)} arrays with {ndim} dimensions; variables there: "
                         f"{listing}). Name it with the key option (e.g. data.cube_key / data.gt_key).")
    return arrays[candidates[0]]
