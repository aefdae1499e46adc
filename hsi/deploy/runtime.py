"""Classify a scene with an exported model (`python -m hsi.export`) without PyTorch.

This module imports only numpy, onnxruntime and the standard library (and `hsi.errors`,
`hsi.utils`, the readers `hsi.data.readers` and two torch-free modules of `hsi.data.scenes`;
`hsi.data` and its rooms are lazy packages; scipy / h5py only to read `.mat` files), so a
deployment needs neither torch nor Lightning:

    from hsi.deploy.runtime import OnnxClassifier, read_cube
    model = OnnxClassifier.load("outputs/export/runs/<timestamp>")     # or .../model.int8.onnx
    labels = model.predict(read_cube("scene.mat"))                       # (H, W), 1..K, 0 = NaN

An export folder holds `model.json` (what the graph expects and what it was checked against) and
`model.onnx` (plus `model.int8.onnx` with `quantize=int8`, and `pca.onnx` for networks that run
window by window). Two kinds of graph:

- `dense`: the whole pipeline as one fully convolutional graph, raw cube tile (1, bands, H, W) ->
  PCA as a 1x1 convolution -> zero padding by the window margin -> trunk -> head as convolutions
  -> logits (1, classes, H, W). Large scenes run in bands of `tile_rows` rows, each with `margin`
  rows of halo above and below, so every pixel sees exactly the window it would see in one piece.
- `window`: `pca.onnx` reduces the cube (1x1 convolution, row tile by row tile), the reduced cube
  is zero-padded and cut into windows (N, 1, components, p, p) here, and the network graph gives
  logits (N, classes) batch by batch.

Pixels whose spectrum holds NaN or inf get label 0; their values are filled with the band means
of the cube's finite values before the network sees them (as `data.nan_policy=exclude` does), so
their neighbours' windows stay finite (`nan_policy=fill`: they are classified too; `error`: stop).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.readers.io import read_array
from hsi.data.scenes.scene import NAN_POLICIES, fill_nonfinite
from hsi.errors import DataError, HsiError, MissingFileError, first_line
from hsi.utils.run_files import MODEL_METADATA
from hsi.utils.tiles import BATCH_SIZE, TILE_ROWS, halo_rows, row_tiles

log = logging.getLogger(__name__)

METADATA = MODEL_METADATA
FORMAT = "hsi-onnx"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8")
EXTRA = 'pip install -e ".[export]"'


class ModelFileError(HsiError, ValueError):
    """An export folder or file that cannot be used (missing, not written by hsi.export, broken)."""


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise HsiError(f"Running an exported model needs onnxruntime: {EXTRA} (or pip install "
                       f"onnxruntime).") from error
    return onnxruntime


class OnnxClassifier:
    """An exported model: `model.json` and its ONNX graph(s), run by onnxruntime on the CPU.

    `meta` is the content of `model.json`; `precision` the graph that runs (`fp32` or `int8`);
    `threads` onnxruntime's intra-op threads (None: onnxruntime's default, one per core).
    """

    def __init__(self, folder: str | Path, precision: str | None = None, threads: int | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.meta = meta if meta is not None else read_metadata(self.folder)
        files = self.meta["files"]
        precision = precision or self.meta.get("default_precision", "fp32")
        if precision not in PRECISIONS:
            raise ModelFileError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}.")
        if precision not in files:
            raise ModelFileError(f"{self.folder} holds no {precision} graph (files: "
                                 f"{', '.join(sorted(files.values()))}); export it with "
                                 f"python -m hsi.export ckpt_path=<file> quantize={precision}.")
        self.precision = precision
        self.threads = threads
        check_files(self.folder, self.meta)
        self.session = self._session(files[precision])
        self.pca_session = self._session(files["pca"]) if files.get("pca") else None
        self._check_graph()

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, precision: str | None = None,
             threads: int | None = None) -> OnnxClassifier:
        """From an export folder (its `model.json` names the default graph) or one of its `.onnx`
        files (`model.onnx`: fp32, `model.int8.onnx`: int8), with `model.json` beside it."""
        path = Path(path).expanduser()
        if path.is_dir():
            return cls(path, precision, threads)
        if not path.exists():
            raise MissingFileError(f"Exported model not found: {path}. Give the folder "
                                   f"python -m hsi.export wrote (outputs/export/runs/<timestamp>) or "
                                   f"its model.onnx / model.int8.onnx.")
        meta = read_metadata(path.parent)
        by_file = {name: kind for kind, name in meta["files"].items() if kind in PRECISIONS}
        if path.name not in by_file:
            raise ModelFileError(f"{path} is not one of the network graphs of its export folder "
                                 f"({', '.join(sorted(by_file))}).")
        chosen = by_file[path.name]
        if precision is not None and precision != chosen:
            raise ModelFileError(f"{path} is the {chosen} graph but precision={precision} was asked for.")
        return cls(path.parent, chosen, threads, meta)

    def _session(self, name: str):
        ort = _onnxruntime()
        path = self.folder / name
        if not path.is_file():
            raise MissingFileError(f"{path} is missing: the export folder is incomplete; export "
                                   f"again with python -m hsi.export.")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for broken files
            raise ModelFileError(f"{path} cannot be loaded by onnxruntime ({type(error).__name__}: "
                                 f"{first_line(error)}); "
                                 f"export it again.") from error

    def _check_graph(self) -> None:
        """The graph's input and output against model.json: bands, window, classes; for a dense
        graph, the window it really reads (two probes: nothing beyond the margin changes its
        logits, the margin's ring does, probed on the fp32 graph for an int8 one), since the
        halo of its row tiles comes from `patch_size`."""
        where = self.folder / METADATA
        graph_in = [d if isinstance(d, int) else None for d in self.session.get_inputs()[0].shape]
        graph_out = [d if isinstance(d, int) else None for d in self.session.get_outputs()[0].shape]
        classes = graph_out[1] if len(graph_out) > 1 else None
        if classes is not None and classes != self.num_classes:
            raise ModelFileError(f"{where} names {self.num_classes} classes but "
                                 f"{self.folder / self.meta['files'][self.precision]} gives {classes}; "
                                 f"the files come from different exports: export again.")
        if self.kind == "window":
            expected = self.patch_size
            if len(graph_in) == 5 and graph_in[3:] != [expected, expected]:
                raise ModelFileError(f"{where} says patch_size={expected} but the graph takes "
                                     f"{graph_in[3]}x{graph_in[4]} windows: the file was edited or the "
                                     f"graph swapped; export again.")
            return
        if len(graph_in) == 4 and graph_in[1] not in (None, self.bands):
            raise ModelFileError(f"{where} says {self.bands} bands but the graph takes {graph_in[1]}: "
                                 f"the file was edited or the graph swapped; export again.")
        margin = self.patch_size // 2
        # a network that takes the spectrum reads the centre pixel alone, whatever the window
        reach = 0 if self.meta.get("takes") == "spectrum" else margin
        # beyond the window: probed on this graph and on the fp32 graph an int8 one came from (its
        # uint8 activations may round a far ring's share of a logit to nothing)
        source = self._unquantized_session()
        if self._reads_ring(self.session, reach + 1) or self._reads_ring(source, reach + 1) or (
                reach > 0 and not self._reads_ring(source, reach)):
            raise ModelFileError(f"{where} says patch_size={self.patch_size} (margin {margin}) but the "
                                 f"graph reads another window: the file was edited or the graph "
                                 f"swapped; export again.")

    def _unquantized_session(self):
        """The session whose window's outer ring is probed: the fp32 graph an int8 graph was
        quantized from (its uint8 activations can round the outermost pixels' share of a logit to
        nothing, so an int8 graph may not visibly read its own outer ring); else this graph."""
        fp32 = self.meta["files"].get("fp32")
        if self.precision == "fp32" or not fp32:
            return self.session
        return self._session(fp32)

    def _reads_ring(self, session: Any, distance: int) -> bool:
        """Whether the centre pixel's logits change when the pixels `distance` away change."""
        size = 2 * distance + 1
        rng = np.random.default_rng(0)
        tile = rng.normal(size=(1, self.bands, size, size)).astype(np.float32)
        ring = np.ones((size, size), dtype=bool)
        ring[1:-1, 1:-1] = False
        changed = tile.copy()
        changed[:, :, ring] = rng.normal(scale=10.0, size=(1, self.bands, int(ring.sum())))
        name = session.get_inputs()[0].name
        centre = [session.run(None, {name: t})[0][0][:, distance, distance] for t in (tile, changed)]
        scale = float(np.abs(centre[0]).max()) + 1e-6
        return bool(np.abs(centre[0] - centre[1]).max() > 1e-4 * scale)

    # -- what the model expects ----------------------------------------------------------------
    @property
    def bands(self) -> int:
        return int(self.meta["bands"])

    @property
    def patch_size(self) -> int:
        return int(self.meta["patch_size"])

    @property
    def kind(self) -> str:
        """`dense` or `window` (model.json's `eval_path`; exports before it was named wrote `path`,
        with `windows`)."""
        kind = str(self.meta.get("eval_path", self.meta.get("path")))
        return "window" if kind == "windows" else kind

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["class_names"])

    def __repr__(self) -> str:
        return (f"OnnxClassifier({self.meta['network']}, {self.kind}, {self.precision}, "
                f"{self.bands} bands, {self.num_classes} classes, {self.folder})")

    # -- inference -----------------------------------------------------------------------------
    def check_cube(self, cube: np.ndarray, nan_policy: str = "exclude") -> tuple[np.ndarray, np.ndarray]:
        """(float32 cube with NaN/inf filled by band means, (H, W) mask of those pixels), after
        checking its shape and band count."""
        return prepare_cube(cube, self.bands, self.meta.get("scene"), nan_policy)

    def logits(self, cube: np.ndarray, tile_rows: int = TILE_ROWS, batch_size: int = BATCH_SIZE,
               nan_policy: str = "exclude") -> np.ndarray:
        """(classes, H, W) float32 logits for every pixel of a (H, W, bands) cube."""
        filled, _ = self.check_cube(cube, nan_policy)
        return self._logits(filled, tile_rows, batch_size)

    def predict(self, cube: np.ndarray, tile_rows: int = TILE_ROWS, batch_size: int = BATCH_SIZE,
                nan_policy: str = "exclude") -> np.ndarray:
        """(H, W) int16 labels 1..K for every pixel of a (H, W, bands) cube; 0 where the
        spectrum holds NaN or inf (`nan_policy=error` stops instead)."""
        filled, bad = self.check_cube(cube, nan_policy)
        labels = self._logits(filled, tile_rows, batch_size).argmax(0).astype(np.int16) + 1
        labels[bad] = 0
        return labels

    def _logits(self, cube: np.ndarray, tile_rows: int, batch_size: int) -> np.ndarray:
        if tile_rows < 1 or batch_size < 1:
            raise DataError(f"tile_rows={tile_rows} and batch_size={batch_size} must be >= 1.")
        return self.block_logits(cube.transpose(2, 0, 1), 0, 0, tile_rows, batch_size)

    def block_logits(self, planes: np.ndarray, top: int, bottom: int, tile_rows: int,
                     batch_size: int) -> np.ndarray:
        """(classes, rows, W) logits of the output rows of band-first raw spectra `planes` ((bands,
        top + rows + bottom, W), NaN / inf filled) with `top` / `bottom` rows of halo above / below
        them (a whole cube: none; the zero padding stands in for the rest of the margin)."""
        if self.kind == "dense":
            return self._dense(planes, top, bottom, tile_rows)
        if self.kind == "window":
            m = self.patch_size // 2
            padded = np.pad(self.reduce(planes, tile_rows), ((0, 0), (m - top, m - bottom), (m, m)))
            return self.window_logits(padded, batch_size)
        raise ModelFileError(f"{self.folder / METADATA}: unknown eval_path {self.kind!r}.")

    def _dense(self, planes: np.ndarray, top: int, bottom: int, tile_rows: int) -> np.ndarray:
        """The dense graph over row tiles of the output rows, each with `margin` rows of halo (as
        far as `planes` holds them); the graph pads by itself."""
        rows = planes.shape[1]
        margin = self.patch_size // 2
        name = self.session.get_inputs()[0].name
        out = np.empty((self.num_classes, rows - top - bottom, planes.shape[2]), dtype=np.float32)
        for start, stop in row_tiles(rows - top - bottom, tile_rows):
            low, high = halo_rows(start + top, stop + top, margin, rows)
            tile = np.ascontiguousarray(planes[:, low:high])[None]
            logits = self.session.run(None, {name: tile})[0][0]
            out[:, start:stop] = logits[:, start + top - low:stop + top - low]
        return out

    def reduce(self, planes: np.ndarray, tile_rows: int) -> np.ndarray:
        """(components, rows, W) float32 of band-first spectra (bands, rows, W): the PCA graph row
        tile by row tile (no PCA: the bands)."""
        if self.pca_session is None:
            return np.ascontiguousarray(planes)
        name = self.pca_session.get_inputs()[0].name
        tiles = [self.pca_session.run(None, {name: np.ascontiguousarray(planes[None, :, start:stop])})[0][0]
                 for start, stop in row_tiles(planes.shape[1], tile_rows)]
        return np.concatenate(tiles, axis=1)

    def window_logits(self, padded: np.ndarray, batch_size: int) -> np.ndarray:
        """(classes, H, W) logits of the window graph for the H x W pixels whose windows lie in
        `padded` (components, H + p - 1, W + p - 1), in row-major batches of `batch_size` pixels."""
        p = self.patch_size
        height, width = padded.shape[1] - p + 1, padded.shape[2] - p + 1
        rows, cols = np.indices((height, width)).reshape(2, -1)
        offsets = np.arange(p)
        name = self.session.get_inputs()[0].name
        out = np.empty((rows.size, self.num_classes), dtype=np.float32)
        for start in range(0, rows.size, batch_size):
            r = rows[start:start + batch_size, None] + offsets  # (n, p)
            c = cols[start:start + batch_size, None] + offsets
            batch = padded[:, r[:, :, None], c[:, None, :]]  # (channels, n, p, p)
            batch = np.ascontiguousarray(batch.transpose(1, 0, 2, 3))[:, None]
            out[start:start + len(r)] = self.session.run(None, {name: batch})[0]
        return out.T.reshape(self.num_classes, height, width)


# -- checks ------------------------------------------------------------------------------------
def prepare_cube(cube: Any, bands: int, scene: str | None = None,
                 nan_policy: str = "exclude") -> tuple[np.ndarray, np.ndarray]:
    """Check a (H, W, bands) cube for a model of `bands` bands; return it as float32 with NaN/inf
    values filled by band means, and the (H, W) mask of the pixels left unclassified: those that
    held them (none with `nan_policy=fill`)."""
    if nan_policy not in NAN_POLICIES:
        raise DataError(f"nan_policy={nan_policy!r}; choose one of {', '.join(NAN_POLICIES)}.")
    cube = np.asarray(cube)
    if cube.ndim != 3:
        what = (" (one band or a ground truth?)" if cube.ndim == 2 else "")
        raise DataError(f"expected a (height, width, bands) cube, got shape {cube.shape}{what}; "
                        f"give the 3-D cube the model was trained on.")
    if cube.dtype.kind not in "biuf":
        raise DataError(f"the cube has dtype {cube.dtype}; it must hold numbers (integer or float).")
    check_band_count(bands, cube.shape[2], scene, "cube",
                     f" It looks band-first {cube.shape}: transpose it to (height, width, bands)."
                     if cube.shape[0] == bands else "")
    if 0 in cube.shape:
        raise DataError(f"the cube {cube.shape} holds no pixel.")
    cube = cube.astype(np.float32, copy=False)
    finite = np.isfinite(cube)
    bad = ~finite.all(axis=2)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return cube, bad
    if nan_policy == "error":
        raise DataError(f"{n_bad} pixels of the cube hold NaN or inf values; fill them, or use "
                        f"nan_policy=exclude (label 0 there, values filled with band means).")
    if n_bad == bad.size:
        raise DataError("every pixel of the cube holds NaN or inf values; there is nothing to classify.")
    cube, _ = fill_nonfinite(cube)  # the one rule (data/scenes/invalid_pixels.py)
    if nan_policy == "fill":
        log.warning("%d pixels hold NaN or inf values: filled with band means and classified.", n_bad)
        return cube, np.zeros_like(bad)
    log.warning("%d pixels hold NaN or inf values: filled with band means for the network and left "
                "unclassified (0).", n_bad)
    return cube, bad


def check_band_count(bands: int, found: int, scene: str | None = None, what: str = "cube",
                     hint: str = "") -> None:
    """Refuse a `what` (cube, raster) of `found` bands for a model of `bands` bands."""
    if found != bands:
        where = f" (scene {scene!r})" if scene else ""
        raise DataError(f"The model was trained on cubes with {bands} bands{where} but this {what} has "
                        f"{found}; predict on a {what} from the same sensor and band set.{hint}")


# keys of model.json the runtime reads
REQUIRED = ("files", "bands", "patch_size", "class_names", "network")


def check_files(folder: Path, meta: dict[str, Any]) -> None:
    """Each graph's size and SHA-1 against model.json (`sizes_bytes`, `sha1`; exports without
    them are not checked): a graph swapped for another export's is refused."""
    sizes, sums = meta.get("sizes_bytes") or {}, meta.get("sha1") or {}
    for name in meta["files"].values():
        path = folder / name
        if not path.is_file():
            continue  # named when its session is opened
        if name in sizes and path.stat().st_size != sizes[name]:
            raise ModelFileError(f"{path} has {path.stat().st_size} bytes but {folder / METADATA} "
                                 f"recorded {sizes[name]}: the graph was replaced; export again.")
        if name in sums and _sha1(path) != sums[name]:
            raise ModelFileError(f"{path} is not the graph {folder / METADATA} was written with (SHA-1 "
                                 f"differs): the graph was replaced; export again.")


def _sha1(path: Path) -> str:
    import hashlib

    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_metadata(path: Path, meta: dict[str, Any]) -> None:
    """The keys the runtime needs, of the right kinds, and one name per class."""
    missing = [k for k in REQUIRED if k not in meta]
    if "eval_path" not in meta and "path" not in meta:
        missing.append("eval_path")
    if missing:
        raise ModelFileError(f"{path} lacks {', '.join(missing)}: it was edited or is incomplete; "
                             f"export again.")
    if not isinstance(meta["files"], dict) or not isinstance(meta["class_names"], list):
        raise ModelFileError(f"{path}: files must be an object and class_names a list; export again.")
    for key in ("bands", "patch_size"):
        if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 1:
            raise ModelFileError(f"{path}: {key}={meta[key]!r} must be a whole number >= 1; export again.")
    if "margin" in meta and meta["margin"] != meta["patch_size"] // 2:
        raise ModelFileError(f"{path}: patch_size={meta['patch_size']} but margin={meta['margin']} "
                             f"(patch_size // 2 = {meta['patch_size'] // 2}): the file was edited; "
                             f"export again.")
    names = meta["class_names"]
    for key in ("label_values", "classes", "colours"):
        other = meta.get(key)
        if isinstance(other, list) and len(other) != len(names):
            raise ModelFileError(f"{path} has {len(names)} class_names but {len(other)} {key}: the file "
                                 f"was edited; export again.")
    output = (meta.get("output") or {}).get("shape") if isinstance(meta.get("output"), dict) else None
    declared = output[1] if isinstance(output, list) and len(output) > 1 else None
    if isinstance(declared, int) and declared != len(names):
        raise ModelFileError(f"{path} has {len(names)} class_names but its graph gives {declared} "
                             f"classes: the file was edited; export again.")


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """`model.json` of an export folder, checked to be one this version reads."""
    path = Path(folder) / METADATA
    if not path.is_file():
        raise MissingFileError(f"{path} not found: give a folder written by python -m hsi.export "
                               f"(outputs/export/runs/<timestamp>) or a .onnx file inside one.")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{path} cannot be read as JSON ({error}); export again.") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} was not written by python -m hsi.export.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} has format version {meta.get('format_version')}; this version "
                             f"of hsi reads {FORMAT_VERSION}. Export again with this version.")
    check_metadata(path, meta)
    return meta


# -- reading cubes ---------------------------------------------------------------------------
def read_cube(path: str | Path, key: str | None = None) -> np.ndarray:
    """A (H, W, bands) cube from a file `hsi.data.readers.io` reads (`.npy`, `.npz`, `.mat` v5 / v7.3;
    ENVI and GeoTIFF with the io extra): the variable `key`, or the only 3-D array in the file."""
    return read_array(Path(path).expanduser(), key, 3, "cube")


def default_threads() -> int | None:
    """`HSI_ORT_THREADS` if set (onnxruntime's intra-op threads), else None (one per core)."""
    value = os.environ.get("HSI_ORT_THREADS")
    return int(value) if value else None
