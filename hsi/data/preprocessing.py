"""Spectral reduction: PCA with optional whitening, kept as plain arrays so it can travel."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsi.errors import ConfigError, DataError
from hsi.utils.files import atomic_save_npz

log = logging.getLogger(__name__)


@dataclass
class PCATransform:
    """x -> ((x - mean) @ components.T) * scale, applied per pixel over the band axis."""

    mean: np.ndarray  # (bands,)
    components: np.ndarray  # (n_components, bands)
    scale: np.ndarray  # (n_components,); 1 / sqrt(explained variance) when whitened

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """{"mean", "components", "scale"} as float64 tensors, as a checkpoint stores them."""
        return {k: torch.tensor(np.asarray(getattr(self, k)), dtype=torch.float64)
                for k in ("mean", "components", "scale")}

    @classmethod
    def from_tensors(cls, arrays: Mapping[str, Any] | None) -> PCATransform | None:
        """The transform a checkpoint stored with `to_tensors` (None stays None: no PCA)."""
        if arrays is None:
            return None
        return cls(**{k: torch.as_tensor(arrays[k]).cpu().double().numpy()
                      for k in ("mean", "components", "scale")})

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    def __call__(self, cube: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Reduce a (H, W, bands) cube to (H, W, n_components) float32, in bounded memory."""
        bands = self.components.shape[1]
        if cube.shape[-1] != bands:
            raise ConfigError(f"PCA was fitted on {bands} bands but the cube has {cube.shape[-1]}.")
        flat = cube.reshape(-1, bands)
        out = np.empty((flat.shape[0], self.num_components), dtype=np.float32)
        projection = self.components.T * self.scale  # (bands, n_components)
        for start in range(0, flat.shape[0], chunk):
            block = flat[start:start + chunk].astype(np.float64) - self.mean
            out[start:start + chunk] = block @ projection
        return out.reshape(*cube.shape[:-1], -1)


def fit_pca(pixels: np.ndarray, n_components: int, whiten: bool = True,
            seed: int = 0) -> PCATransform:
    """Fit PCA on pixel spectra (N, bands) with scikit-learn.

    Fitted in float32 (scikit-learn keeps the dtype): half the memory of float64, and the
    transform itself runs in float64 (see `PCATransform`).
    """
    from sklearn.decomposition import PCA

    n_pixels, bands = pixels.shape
    if not 1 <= n_components <= bands:
        raise ConfigError(f"data.pca.components={n_components} but the cube has {bands} bands; "
                         f"choose a value from 1 to {bands}, or data.pca.components=null to "
                         f"keep all bands.")
    if n_components > n_pixels:
        raise ConfigError(f"data.pca.components={n_components} exceeds the {n_pixels} pixels "
                         f"PCA is fitted on.")
    pca = PCA(n_components=n_components, whiten=whiten, random_state=seed)
    pca.fit(np.asarray(pixels, dtype=np.float32))
    check_informative(pca.explained_variance_, n_components, whiten)
    scale = 1.0 / np.sqrt(pca.explained_variance_) if whiten else np.ones(n_components)
    return PCATransform(mean=pca.mean_.astype(np.float64),
                        components=pca.components_.astype(np.float64),
                        scale=np.asarray(scale, dtype=np.float64))


# Below this fraction of the first component's variance a component is numerical noise (constant or
# duplicated bands); real scenes' 30th components sit near 1e-6 (Salinas-A) to 1e-4 (Indian Pines).
NOISE_VARIANCE = 1e-10


def check_informative(variances: np.ndarray, n_components: int, whiten: bool) -> None:
    """Refuse components that carry no variance: whitening would divide by zero (NaN windows)."""
    variances = np.asarray(variances, dtype=np.float64)
    if not np.isfinite(variances).all():
        raise DataError("PCA found non-finite variances: the pixels it was fitted on hold NaN or inf "
                        "values; set data.nan_policy=exclude or fill.")
    if variances.size == 0 or variances[0] <= 0:
        raise DataError("Every band of the cube is constant over the pixels PCA is fitted on: there "
                        "is nothing to classify. Check the cube file (data.cube_path).")
    informative = int((variances > NOISE_VARIANCE * variances[0]).sum())
    if informative < n_components:
        if whiten:
            raise ConfigError(f"data.pca.components={n_components} but only {informative} components "
                              f"carry variance (the others are constant or duplicated bands); "
                              f"whitening them would divide by zero. Set "
                              f"data.pca.components={informative} or lower.")
        log.warning("Only %d of the %d PCA components carry variance; consider "
                    "data.pca.components=%d.", informative, n_components, informative)


def fit_minmax(pixels: np.ndarray, rescale: str = "minmax") -> PCATransform:
    """Every band kept and mapped to (x - min) / (max - min), as a `PCATransform` (identity
    components) so that checkpoints, prediction and export carry it as they carry PCA.

    "minmax": min and max over all values of `pixels` (..., bands), DeepHyperX's scaling of a
    cube; "minmax_band": each band's own min and max (SpectralFormer's and GAHT's scaling; a
    constant band becomes 0)."""
    flat = np.asarray(pixels).reshape(-1, pixels.shape[-1])
    if rescale == "minmax_band":
        low, high = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
    else:
        low, high = np.full(flat.shape[1], float(flat.min())), np.full(flat.shape[1], float(flat.max()))
    if not (high > low).any():
        same = ("every band is constant" if rescale == "minmax_band"
                else f"every value is {float(low[0])}")
        raise DataError(f"data.pca.rescale={rescale}: {same} over the pixels it is fitted on; there is "
                        f"nothing to classify. Check the cube file (data.cube_path).")
    span = high - low
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
    return PCATransform(mean=low, components=np.eye(flat.shape[1]), scale=scale)


# -- fitting on a chosen pixel set, with an on-disk cache ----------------------------------
PCA_FITS = ("scene", "train")
RESCALES = ("minmax", "minmax_band")


@dataclass
class PCASettings:
    """How the datamodule reduces the bands (`data.pca.*`).

    `components`: principal components kept (None: no PCA, all bands). `whiten`: scale each
    component to unit variance. `fit`: "scene" (all pixels, the recipe) or "train" (training
    pixels only). `cache`: keep fitted PCAs on disk in `cache_dir` (None: the user cache,
    `hsi.data.readers.download.user_cache_dir() / "pca"`) and reuse them. `sample`: fit on at most this
    many pixels of the fit set, drawn with the split seed (None: all of them; "auto": all for a
    scene in memory, `AUTO_SAMPLE` for one built block by block, `hsi.data.scenes.large_scene`).
    `rescale`: without PCA, "minmax" maps every band to (x - min) / (max - min), min and max over
    all values of the fit pixels (DeepHyperX's scaling of the cube), "minmax_band" over each band's
    own values (SpectralFormer's); `fit_minmax`.
    """

    components: int | None = 30
    whiten: bool = True
    fit: str = "scene"
    cache: bool = True
    cache_dir: str | None = None
    sample: int | str | None = "auto"
    rescale: str | None = None

    def __post_init__(self) -> None:
        if self.rescale is not None and self.rescale not in RESCALES:
            raise ConfigError(f"data.pca.rescale={self.rescale!r}: choose {', '.join(RESCALES)} or null.")
        if self.rescale is not None and self.components is not None:
            raise ConfigError(f"data.pca.rescale={self.rescale} scales the bands when no PCA is fitted; set "
                              f"data.pca.components=null, or data.pca.rescale=null (PCA centres and "
                              f"whitens its components itself).")
        if self.components is not None:
            if self.components != int(self.components) or self.components < 1:
                raise ConfigError(f"data.pca.components={self.components} must be an integer >= 1, "
                                 f"or null to keep all bands.")
            self.components = int(self.components)
        if self.fit not in PCA_FITS:
            raise ConfigError(f"data.pca.fit={self.fit!r} is not one of {', '.join(PCA_FITS)}.")
        self.whiten, self.cache = bool(self.whiten), bool(self.cache)
        if self.sample != "auto" and self.sample is not None:
            if isinstance(self.sample, bool) or not isinstance(self.sample, (int, float)) \
                    or self.sample != int(self.sample) or self.sample < 2:
                raise ConfigError(f"data.pca.sample={self.sample!r} must be a number of pixels >= 2, "
                                  f"auto (all pixels in memory, a sample for a streamed scene) or null "
                                  f"(all pixels).")
            self.sample = int(self.sample)
        if self.cache_dir is not None:  # relative to where the command runs
            self.cache_dir = str(Path(self.cache_dir).expanduser().resolve())

    @classmethod
    def from_any(cls, value: PCASettings | Mapping[str, Any] | None) -> PCASettings:
        """Settings from themselves, a mapping (a `DictConfig` too) of `data.pca.*`, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"data.pca must be a mapping of {', '.join(_PCA_KEYS)}; got {value!r}.")
        unknown = sorted(set(value) - set(_PCA_KEYS))
        if unknown:
            raise ConfigError(f"data.pca.{unknown[0]} is not a PCA setting; choose from "
                             f"{', '.join(f'data.pca.{k}' for k in _PCA_KEYS)}.")
        return cls(**{k: value[k] for k in value})

    @property
    def transforms(self) -> bool:
        """Whether the bands are transformed (PCA or a rescaling) before windows are cut."""
        return self.components is not None or self.rescale is not None

    def config(self) -> dict[str, Any]:
        """Plain values (what `data.pca` holds), for a checkpoint's hyperparameters."""
        return {k: getattr(self, k) for k in _PCA_KEYS}


_PCA_KEYS = tuple(f.name for f in fields(PCASettings))


def fit_pca_on(cube: np.ndarray, coords: np.ndarray | None, n_components: int, whiten: bool = True,
               seed: int = 0) -> PCATransform:
    """Fit PCA on the spectra of `coords` (N, 2) (row, col) of a (H, W, B) cube, or on all pixels.

    Only the selected pixels' spectra are read, so other pixels (test pixels) cannot leak in.
    """
    if coords is None:
        pixels = cube.reshape(-1, cube.shape[-1])
    else:
        coords = np.asarray(coords).reshape(-1, 2)
        pixels = cube[coords[:, 0], coords[:, 1]]
    return fit_pca(pixels, n_components, whiten, seed=seed)


def cube_fingerprint(cube: np.ndarray) -> str:
    """SHA-1 of a cube's shape, dtype and bytes."""
    digest = hashlib.sha1(f"{cube.shape}{cube.dtype.str}".encode())
    digest.update(memoryview(np.ascontiguousarray(cube)).cast("B"))
    return digest.hexdigest()


def pca_cache_key(scene_name: str, cube: np.ndarray, coords: np.ndarray | None, n_components: int,
                  whiten: bool, seed: int) -> str:
    """What identifies a fitted PCA: scene, cube bytes, settings and the pixels it was fitted on."""
    fit_set = "scene" if coords is None else hashlib.sha1(
        np.ascontiguousarray(np.asarray(coords, dtype=np.int64)).tobytes()).hexdigest()
    return (f"scene={scene_name};cube={cube_fingerprint(cube)};components={int(n_components)};"
            f"whiten={bool(whiten)};seed={int(seed)};fit={fit_set}")


def _check_cached(pca: PCATransform, bands: int, n_components: int) -> None:
    """A cached PCA must fit the cube and the settings and hold finite numbers."""
    shapes = {"mean": (bands,), "components": (n_components, bands), "scale": (n_components,)}
    for name, shape in shapes.items():
        array = getattr(pca, name)
        if array.shape != shape:
            raise ValueError(f"its {name} has shape {array.shape}, expected {shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"its {name} holds non-finite values")


def cached_fit_pca(cube: np.ndarray, coords: np.ndarray | None, n_components: int, whiten: bool,
                   seed: int, scene_name: str, cache_dir: str | Path | None) -> PCATransform:
    """`fit_pca_on`, loaded from / saved to `cache_dir` (.npz named by the key's SHA-1) when given.

    A cache file that cannot be read, or holds another key, is ignored and rewritten; a
    folder that cannot be written only costs the cache (a warning).
    """
    if cache_dir is None:
        return fit_pca_on(cube, coords, n_components, whiten, seed)
    key = pca_cache_key(scene_name, cube, coords, n_components, whiten, seed)
    path = Path(cache_dir) / f"pca-{hashlib.sha1(key.encode()).hexdigest()}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz["key"]) != key:
                    raise ValueError("it holds another key")
                cached = PCATransform(mean=npz["mean"], components=npz["components"], scale=npz["scale"])
            _check_cached(cached, cube.shape[-1], n_components)
            return cached
        except Exception as error:  # noqa: BLE001 - any unusable file is just a cache miss
            log.warning("Ignoring the PCA cache %s (%s); refitting.", path, error)
    pca = fit_pca_on(cube, coords, n_components, whiten, seed)
    try:
        atomic_save_npz(path, key=np.array(key), mean=pca.mean, components=pca.components, scale=pca.scale)
    except OSError as error:
        log.warning("Could not write the PCA cache %s (%s); set data.pca.cache_dir to a writable "
                    "folder or data.pca.cache=false.", path, error)
    return pca
