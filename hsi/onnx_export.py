"""Deploy a trained network as ONNX: build the graph, check it against PyTorch, quantize it to int8.

`export_checkpoint` writes into an output folder:

- `model.onnx`: for dense-capable networks (`hsi.inference.supports_dense`: HybridSN, CNN2D,
  CNN3D) the whole pipeline as one fully convolutional graph, raw cube tile (1, bands, H, W)
  with dynamic H and W -> the checkpoint's PCA (mean subtraction, then projection and whitening
  as one 1x1 convolution) -> zero padding by the window margin -> the trunk -> the head as
  convolutions (`hsi.inference.DenseHead`) -> logits (1, classes, H, W). For the others
  (squeeze-excitation inside the trunk: HybridSNSE, HybridSNLite) the network over windows
  (N, 1, components, p, p) -> logits (N, classes), and `pca.onnx` (1, bands, H, W) ->
  (1, components, H, W); `hsi.runtime` cuts the windows.
- `model.int8.onnx` with `quantize="int8"`: onnxruntime's static QDQ quantization (per-channel
  int8 weights, uint8 activations) calibrated on tiles / windows of the checkpoint's training
  pixels. The PCA stays in float (raw radiances quantized to 8 bits would drown the low-variance
  components), and so do the first layers of 3-D networks (see `Int8Settings`).
- `model.json`: what the graph expects (bands, PCA, window, classes, colours, label values, path
  kind), the opset, the checkpoint's SHA-1, the package versions, and the checks below.

Checks, run on the checkpoint's whole scene before anything is moved into the folder: the fp32
graph's logits against PyTorch's (`hsi.inference.scene_logits` on the cube reduced as
`hsi.predict` reduces it): max |difference| <= `fp32_tolerance` x the logit scale (the largest
|logit|) and the same label on every pixel; for int8, the share of pixels whose label changes
and the OA on the test pixels of the checkpoint's split, fp32 against int8 (an OA drop above
`Int8Settings.max_oa_drop` fails). A failed check raises `ExportError` and leaves none of the files:
they are written into a temporary folder inside the output folder and moved out at the end.

The graphs come from `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript); the
TorchScript exporter is not used.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hsi.checkpoint import Checkpoint, load_checkpoint
from hsi.data.patches import pad_cube
from hsi.errors import ConfigError, HsiError
from hsi.inference import DenseHead, scene_logits, supports_dense
from hsi.runtime import EXTRA, FORMAT, FORMAT_VERSION, METADATA, OnnxClassifier
from hsi.utils.files import atomic_write_json

log = logging.getLogger(__name__)

OPSET = 18
# torch.onnx's dynamo exporter has no translations below opset 18, and converting its graph down
# fails (onnx has no Pad adapter to 17): a lower opset would silently stay 18
MIN_OPSET = 18
PACKAGES = ("onnx", "onnxruntime", "onnxscript")
QUANTIZE = (None, "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "pca": "pca.onnx"}


class ExportError(HsiError):
    """The network could not be exported, or the exported graph failed its check."""


@dataclass
class Int8Settings:
    """How `quantize=int8` quantizes (`int8.*` in conf/export.yaml).

    `samples`: training pixels whose windows (raw tiles on the dense path) calibrate the
    activation ranges; `calibration`: onnxruntime's calibration method; `seed`: which training
    pixels. `float_conv3d_below`: the network's first layers, up to the last 3-D convolution with
    fewer input channels per group than this, stay in float: onnxruntime's int8 3-D convolution is
    slower than its float one on so few channels (HybridSN's first layer, 1 -> 8 channels: 16x
    slower), and these layers hold a tiny share of the weights. 0 quantizes them all.
    `max_oa_drop`: the largest allowed drop of OA on the test pixels (None: report only).
    """

    samples: int = 128
    calibration: str = "minmax"
    seed: int = 0
    float_conv3d_below: int = 16
    max_oa_drop: float | None = 0.005

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ConfigError(f"int8.calibration={self.calibration!r}: choose one of "
                              f"{', '.join(CALIBRATION_METHODS)}.")
        if self.samples < 1 or self.float_conv3d_below < 0:
            raise ConfigError(f"int8.samples={self.samples} must be >= 1 and int8.float_conv3d_below="
                              f"{self.float_conv3d_below} >= 0.")


def require_packages() -> None:
    """Refuse to start without the `export` extra, naming it."""
    missing = []
    for name in PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"Exporting to ONNX needs the optional package(s) {', '.join(missing)}: "
                          f"{EXTRA} (or pip install {' '.join(PACKAGES)}).")


# -- the graphs --------------------------------------------------------------------------------
def fold_bands(x: torch.Tensor) -> torch.Tensor:
    """(N, C, D, H, W) -> (N, C*D, H, W), as `nn.Flatten` orders a window's features."""
    return x.reshape(x.shape[0], -1, x.shape[-2], x.shape[-1]) if x.dim() == 5 else x


class PCAConv(nn.Module):
    """`PCATransform` as a graph: (1, bands, H, W) -> ((x - mean) @ components.T) * scale: the
    mean subtracted first (folded into a bias, large radiance terms would cancel in float32),
    then projection and whitening as one 1x1 convolution."""

    def __init__(self, pca: dict[str, Any]) -> None:
        super().__init__()
        arrays = {k: torch.as_tensor(pca[k]).double() for k in ("mean", "components", "scale")}
        weight = arrays["components"] * arrays["scale"][:, None]
        self.register_buffer("mean", arrays["mean"].float().view(1, -1, 1, 1))
        self.register_buffer("weight", weight.float()[:, :, None, None])

    def forward(self, cube: torch.Tensor) -> torch.Tensor:
        return F.conv2d(cube - self.mean, self.weight)


class DenseScene(nn.Module):
    """The whole pipeline as one fully convolutional module: raw tile (1, bands, H, W) -> PCA ->
    zero padding by patch_size // 2 -> trunk -> head as convolutions -> logits (1, K, H, W)."""

    def __init__(self, net: nn.Module, pca: dict[str, Any] | None, patch_size: int, bands: int) -> None:
        super().__init__()
        self.pca = PCAConv(pca) if pca is not None else nn.Identity()
        self.net = net.eval()
        self.margin = patch_size // 2
        with torch.no_grad():
            window = fold_bands(net.trunk(torch.zeros(1, 1, bands, patch_size, patch_size)))
        self.head = DenseHead(net.head, tuple(window.shape[1:])).eval()

    def forward(self, cube: torch.Tensor) -> torch.Tensor:
        m = self.margin
        x = F.pad(self.pca(cube), (m, m, m, m))
        return self.head(fold_bands(self.net.trunk(x.unsqueeze(1))))


def _example_size(avoid: set[int], start: int) -> int:
    """A tracing size equal to none of the model's static sizes (a precaution: torch.export may
    specialise a dimension whose example size equals a static one)."""
    size = start
    while size in avoid:
        size += 1
    return size


def quiet_exporter_logs() -> None:
    """The exporter's and quantizer's step-by-step INFO records (and the missing-torchvision
    warnings) would bury the command's own log; keep their warnings and errors."""
    for name in ("onnxscript", "onnx_ir", "onnxruntime", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


def export_graph(module: nn.Module, example: torch.Tensor, dynamic: dict[int, Any], path: Path,
                 input_name: str, output_name: str, opset: int) -> None:
    """`torch.onnx.export(dynamo=True)` of `module` with the dims in `dynamic` left free."""
    quiet_exporter_logs()
    try:
        with torch.no_grad():
            program = torch.onnx.export(module.eval(), (example,), dynamo=True, opset_version=opset,
                                        input_names=[input_name], output_names=[output_name],
                                        dynamic_shapes=(dynamic,), verbose=False, optimize=True,
                                        external_data=False)
        program.save(str(path), external_data=False)
        written = _opset_of(path)
    except Exception as error:  # the exporter raises many types; name the module and the cause
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch.onnx.export (dynamo) could not translate {type(module).__name__} "
                          f"at opset {opset}: {cause}") from error
    if written != opset:
        raise ExportError(f"opset={opset} was asked for but the exporter wrote opset {written}; choose "
                          f"an opset from {MIN_OPSET} to the newest onnxruntime runs.")


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def build_graphs(checkpoint: Checkpoint, net: nn.Module, folder: Path, opset: int) -> dict[str, str]:
    """Write the fp32 graph(s) into `folder`; return {"fp32": file, ["pca": file]}."""
    state = checkpoint.scene
    bands, patch = int(state["raw_bands"]), int(state["patch_size"])
    pca = state.get("pca")
    components = bands if pca is None else int(torch.as_tensor(pca["components"]).shape[0])
    avoid = {1, bands, components, patch, len(state["class_names"])}
    height, width = torch.export.Dim("height", min=1), torch.export.Dim("width", min=1)
    if supports_dense(net):
        h = _example_size(avoid, patch + 7)
        w = _example_size(avoid | {h}, h + 3)
        export_graph(DenseScene(net, pca, patch, components), torch.zeros(1, bands, h, w),
                     {2: height, 3: width}, folder / FILES["fp32"], "cube", "logits", opset)
        return {"fp32": FILES["fp32"]}
    n = _example_size(avoid, 5)
    export_graph(net, torch.zeros(n, 1, components, patch, patch), {0: torch.export.Dim("batch", min=1)},
                 folder / FILES["fp32"], "windows", "logits", opset)
    files = {"fp32": FILES["fp32"]}
    if pca is not None:
        h = _example_size(avoid, 11)
        w = _example_size(avoid | {h}, h + 3)
        export_graph(PCAConv(pca), torch.zeros(1, bands, h, w), {2: height, 3: width},
                     folder / FILES["pca"], "cube", "components", opset)
        files["pca"] = FILES["pca"]
    return files


# -- int8 --------------------------------------------------------------------------------------
def calibration_batches(checkpoint: Checkpoint, datamodule: Any, dense: bool, samples: int,
                        seed: int, batch: int = 32) -> Iterator[np.ndarray]:
    """Inputs for calibration, from the TRAINING pixels of the checkpoint's split only.

    Dense graph: for each sampled training pixel, the raw-cube tile of its window (p x p, centred
    on it), padded outside the scene with the PCA mean spectrum, which the graph's PCA maps to
    the zeros `pad_cube` pads with. Window graph: the training windows as the datamodule cuts them
    (N, 1, components, p, p), in batches of `batch`.
    """
    coords = np.asarray(datamodule.split["train"]).reshape(-1, 2)
    if len(coords) == 0:
        raise ExportError("The checkpoint's split has no training pixel to calibrate int8 on.")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(coords), size=min(samples, len(coords)), replace=False))
    patch = int(checkpoint.scene["patch_size"])
    if dense:
        cube = datamodule.scene.cube
        pca = checkpoint.scene.get("pca")
        fill = (np.zeros(cube.shape[2], np.float32) if pca is None
                else torch.as_tensor(pca["mean"]).float().numpy())
        m = patch // 2
        padded = np.empty((cube.shape[0] + 2 * m, cube.shape[1] + 2 * m, cube.shape[2]), np.float32)
        padded[:] = fill
        padded[m:m + cube.shape[0], m:m + cube.shape[1]] = cube
        for r, c in coords[chosen]:
            yield np.ascontiguousarray(padded[r:r + patch, c:c + patch].transpose(2, 0, 1))[None]
        return
    dataset = datamodule.datasets["train"]
    for start in range(0, len(chosen), batch):
        yield np.stack([dataset[int(i)][0].numpy() for i in chosen[start:start + batch]])


def _pca_nodes(model: Any) -> list[str]:
    """Names of the dense graph's PCA nodes: the Sub on the input and the Conv after it."""
    source = model.graph.input[0].name
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names = []
    for node in consumers.get(source, []):
        if node.op_type == "Sub":
            names.append(node.name)
            names += [n.name for n in consumers.get(node.output[0], []) if n.op_type == "Conv"]
    return names


def _float_prefix(model: Any, below: int) -> list[str]:
    """Names of the nodes from the graph's input through the last 3-D convolution with fewer
    than `below` input channels per group (none if there is no such convolution).

    A whole prefix, not just those convolutions: onnxruntime turns a float convolution whose
    input comes dequantized and whose output is quantized into an int8 one anyway (its
    weight-quantizing graph transformer), so the float layers must not sit between int8 ones.
    """
    weights = {init.name: init for init in model.graph.initializer}
    last = -1
    for index, node in enumerate(model.graph.node):  # ONNX graphs are topologically sorted
        weight = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weight is not None and len(weight.dims) == 5 and weight.dims[1] < below:
            last = index
    return [node.name for node in model.graph.node[:last + 1]]


def quantize_int8(fp32: Path, int8: Path, batches: Iterator[np.ndarray], settings: Int8Settings,
                  dense: bool) -> dict[str, Any]:
    """Static QDQ quantization of `fp32` into `int8`: per-channel int8 weights, uint8
    activations, calibrated on `batches`; the dense graph's PCA and the first 3-D layers (see
    `Int8Settings`) stay in float. Returns what was done, for model.json."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quiet_exporter_logs()
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    count = 0

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            nonlocal count
            item = next(batches, None)
            if item is None:
                return None
            count += len(item)
            return {input_name: item}

    prepared = int8.with_name(int8.stem + ".pre.onnx")
    try:
        # shape inference and graph optimisation (batch norm folded into convolutions) first, as
        # onnxruntime recommends before static quantization
        quant_pre_process(str(fp32), str(prepared))
        model = onnx.load(str(prepared))
        prefix = _float_prefix(model, settings.float_conv3d_below)
        excluded = prefix + [n for n in (_pca_nodes(model) if dense else []) if n not in prefix]
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                        calibrate_method=methods[settings.calibration])
    except HsiError:
        raise
    except Exception as error:  # onnxruntime.quantization raises plain exceptions
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"int8 quantization failed ({type(error).__name__}: {cause}).") from error
    finally:
        prepared.unlink(missing_ok=True)
    return {"format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor",
            "calibration": settings.calibration, "calibration_inputs": count,
            "float_nodes": excluded, "float_prefix_nodes": len(prefix)}


# -- checks ------------------------------------------------------------------------------------
def reference_logits(net: nn.Module, checkpoint: Checkpoint, cube: np.ndarray, tile_rows: int,
                     batch_size: int) -> tuple[np.ndarray, str]:
    """PyTorch's (K, H, W) logits for a raw cube, reduced as hsi.predict reduces it."""
    patch = int(checkpoint.scene["patch_size"])
    padded = pad_cube(checkpoint.reduce(cube), patch)
    logits, path = scene_logits(net, padded, patch, "auto", batch_size, tile_rows)
    return logits.numpy(), path


def overall_accuracy(labels: np.ndarray, truth: np.ndarray, coords: np.ndarray) -> float:
    """OA of (H, W) labels 1..K on the pixels `coords` (row, col) of the ground truth."""
    coords = np.asarray(coords).reshape(-1, 2)
    if len(coords) == 0:
        return float("nan")
    rows, cols = coords[:, 0], coords[:, 1]
    return float((labels[rows, cols] == truth[rows, cols]).mean())


def check_fp32(reference: np.ndarray, onnx_logits: np.ndarray, tolerance: float) -> dict[str, Any]:
    """max |logit difference| against the logit scale, and labels pixel by pixel."""
    difference = np.abs(reference.astype(np.float64) - onnx_logits.astype(np.float64))
    scale = float(np.abs(reference).max())
    max_diff = float(difference.max())
    ref_labels, onnx_labels = reference.argmax(0), onnx_logits.argmax(0)
    changed = ref_labels != onnx_labels
    top2 = np.sort(reference, axis=0)[-2:] if reference.shape[0] > 1 else None
    margin = (top2[1] - top2[0]) if top2 is not None else np.full(changed.shape, np.inf)
    result = {"pixels": int(changed.size), "logit_scale": scale, "max_abs_logit_diff": max_diff,
              "relative_diff": max_diff / scale if scale > 0 else 0.0, "tolerance": tolerance,
              "label_differences": int(changed.sum()),
              "labels_identical": bool(not changed.any()),
              "smallest_margin": float(margin.min())}
    if result["relative_diff"] > tolerance:
        raise ExportError(f"fp32 check failed: the ONNX logits differ from PyTorch's by up to "
                          f"{max_diff:.3g} ({result['relative_diff']:.3g} of the logit scale "
                          f"{scale:.3g}; allowed {tolerance:g}). Nothing was written.")
    if changed.any():
        where = np.argwhere(changed)[:5].tolist()
        raise ExportError(f"fp32 check failed: {int(changed.sum())} pixels get another label from the "
                          f"ONNX graph than from PyTorch (e.g. (row, col) {where}; the smallest "
                          f"top-two logit margin there is {float(margin[changed].min()):.3g}, the "
                          f"largest logit difference {max_diff:.3g}). Nothing was written.")
    return result


def check_int8(fp32_labels: np.ndarray, int8_labels: np.ndarray, truth: np.ndarray,
               test: np.ndarray, max_oa_drop: float | None) -> dict[str, Any]:
    """Share of pixels whose label changes, and OA on the test pixels, fp32 against int8."""
    changed = fp32_labels != int8_labels
    oa32, oa8 = overall_accuracy(fp32_labels, truth, test), overall_accuracy(int8_labels, truth, test)
    result = {"pixels": int(changed.size), "label_changes": int(changed.sum()),
              "label_change_fraction": float(changed.mean()),
              "labelled_label_change_fraction": float(changed[truth > 0].mean()) if (truth > 0).any()
              else None,
              "test_pixels": int(len(np.asarray(test).reshape(-1, 2))), "oa_test_fp32": oa32,
              "oa_test_int8": oa8, "oa_change_points": round(100 * (oa8 - oa32), 4),
              "max_oa_drop": max_oa_drop}
    if max_oa_drop is not None and np.isfinite(oa32) and oa32 - oa8 > max_oa_drop:
        raise ExportError(f"int8 check failed: OA on the {result['test_pixels']} test pixels falls from "
                          f"{oa32:.4f} (fp32) to {oa8:.4f} (int8), more than int8.max_oa_drop="
                          f"{max_oa_drop:g}; {result['label_change_fraction']:.2%} of the pixels change "
                          f"label. Try int8.calibration=entropy or more int8.samples, or "
                          f"deploy the fp32 graph. Nothing was written.")
    return result


# -- the whole export ---------------------------------------------------------------------------
def file_sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _versions() -> dict[str, str]:
    out = {}
    for name in ("torch", *PACKAGES):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def metadata(checkpoint: Checkpoint, net: nn.Module, files: dict[str, str], opset: int,
             default_precision: str) -> dict[str, Any]:
    """model.json without its checks: what the graph expects and where it came from."""
    state = checkpoint.scene
    pca = state.get("pca")
    pca_settings = dict(checkpoint.data.get("pca") or {})
    names = list(state["class_names"])
    values = [int(v) for v in state.get("label_values") or range(1, len(names) + 1)]
    colours = state.get("colours")
    colours = [list(map(int, c)) for c in colours] if colours is not None else None
    dense = supports_dense(net)
    patch = int(state["patch_size"])
    components = int(state["raw_bands"]) if pca is None else int(torch.as_tensor(pca["components"]).shape[0])
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "network": type(net).__name__,
        "path": "dense" if dense else "windows",
        "files": dict(files),
        "default_precision": default_precision,
        "input": ({"name": "cube", "shape": [1, int(state["raw_bands"]), "height", "width"],
                   "dtype": "float32", "what": "raw cube tile, bands first"} if dense else
                  {"name": "windows", "shape": ["batch", 1, components, patch, patch],
                   "dtype": "float32", "what": "windows of the PCA-reduced, zero-padded cube"}),
        "output": {"name": "logits", "shape": [1, len(names), "height", "width"] if dense
                   else ["batch", len(names)]},
        "bands": int(state["raw_bands"]),
        "pca": None if pca is None else {
            "components": components,
            "whiten": bool(pca_settings.get("whiten", True)), "fit": pca_settings.get("fit"),
            "in_graph": dense, "graph": None if dense else files.get("pca")},
        "patch_size": patch, "margin": patch // 2,
        "class_names": names, "label_values": values, "colours": colours,
        "classes": [{"label": k + 1, "name": n, "source_value": v,
                     "colour": colours[k] if colours else None}
                    for k, (n, v) in enumerate(zip(names, values))],
        "rgb_bands": state.get("rgb_bands"),
        "scene": state.get("scene"),
        "opset": opset,
        "checkpoint": {"path": str(checkpoint.path.resolve()), "sha1": file_sha1(checkpoint.path),
                       "format": checkpoint.format},
        "data": _jsonable(checkpoint.data),
        "exported_with": _versions(),
    }


def export_checkpoint(ckpt_path: str | Path, output_dir: str | Path, *, quantize: str | None = None,
                      opset: int = OPSET, data_dir: str | None = None, tile_rows: int = 128,
                      batch_size: int = 256, threads: int | None = None,
                      fp32_tolerance: float = 1e-4, int8: Int8Settings | None = None) -> dict[str, Any]:
    """Export a checkpoint into `output_dir` (model.onnx, model.json, ...), checked; return model.json."""
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize={quantize!r}: choose null (fp32 only) or int8.")
    if opset < MIN_OPSET:
        raise ConfigError(f"opset={opset}: torch.onnx's dynamo exporter writes opset {MIN_OPSET} and "
                          f"newer (converting down fails); choose {MIN_OPSET} or more.")
    int8 = int8 or Int8Settings()
    require_packages()
    checkpoint = load_checkpoint(ckpt_path)
    net = checkpoint.classifier("cpu").net.eval()
    datamodule = checkpoint.datamodule(data_dir=data_dir)
    datamodule.setup()  # the scene, the recorded PCA and the split (checked against the recorded one)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (*FILES.values(), METADATA):
        if (output_dir / name).exists():
            raise ExportError(f"{output_dir / name} already exists; export into a fresh folder.")
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=output_dir))
    try:
        meta = _export_into(staging, checkpoint, net, datamodule, quantize, opset, tile_rows,
                            batch_size, threads, fp32_tolerance, int8)
        for name in meta["files"].values():  # model.json last: its presence means a complete export
            os.replace(staging / name, output_dir / name)
        os.replace(staging / METADATA, output_dir / METADATA)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def _export_into(folder: Path, checkpoint: Checkpoint, net: nn.Module, datamodule: Any,
                 quantize: str | None, opset: int, tile_rows: int, batch_size: int,
                 threads: int | None, fp32_tolerance: float, settings: Int8Settings) -> dict[str, Any]:
    dense = supports_dense(net)
    scene = datamodule.scene
    start = time.perf_counter()
    files = build_graphs(checkpoint, net, folder, opset)
    log.info("%s exported as a %s graph (opset %d) in %.1f s", type(net).__name__,
             "dense" if dense else "window", opset, time.perf_counter() - start)
    meta = metadata(checkpoint, net, files, opset, "fp32")
    atomic_write_json(folder / METADATA, meta)

    start = time.perf_counter()
    reference, _ = reference_logits(net, checkpoint, scene.cube, tile_rows, batch_size)
    torch_seconds = time.perf_counter() - start
    runtime = OnnxClassifier(folder, "fp32", threads, meta)
    start = time.perf_counter()
    fp32_logits = runtime.logits(scene.cube, tile_rows, batch_size)
    onnx_seconds = time.perf_counter() - start
    checks = {"scene": scene.name, "shape": list(scene.shape),
              "fp32": check_fp32(reference, fp32_logits, fp32_tolerance) | {
                  "seconds_torch": round(torch_seconds, 3), "seconds_onnx": round(onnx_seconds, 3)}}
    fp32_labels = fp32_logits.argmax(0) + 1
    test = np.asarray(datamodule.split["test"]).reshape(-1, 2)
    checks["fp32"]["oa_test"] = overall_accuracy(fp32_labels, scene.labels, test)
    log.info("fp32 check: max |logit difference| %.3g (%.3g of the logit scale), labels identical on "
             "all %d pixels", checks["fp32"]["max_abs_logit_diff"], checks["fp32"]["relative_diff"],
             fp32_labels.size)

    if quantize == "int8":
        start = time.perf_counter()
        batches = calibration_batches(checkpoint, datamodule, dense, settings.samples, settings.seed)
        done = quantize_int8(folder / files["fp32"], folder / FILES["int8"], batches, settings, dense)
        files["int8"] = FILES["int8"]
        quantize_seconds = time.perf_counter() - start
        meta |= {"files": files, "default_precision": "int8"}
        int8_runtime = OnnxClassifier(folder, "int8", threads, meta)
        start = time.perf_counter()
        int8_labels = int8_runtime.logits(scene.cube, tile_rows, batch_size).argmax(0) + 1
        int8_seconds = time.perf_counter() - start
        checks["int8"] = check_int8(fp32_labels, int8_labels, scene.labels, test, settings.max_oa_drop) | {
            "quantization": done | {"samples_from": "train", "settings": asdict(settings)},
            "seconds_quantize": round(quantize_seconds, 2), "seconds_onnx": round(int8_seconds, 3)}
        log.info("int8 check: %.2f%% of the pixels change label; OA on %d test pixels %.4f (fp32) -> "
                 "%.4f (int8)", 100 * checks["int8"]["label_change_fraction"],
                 checks["int8"]["test_pixels"], checks["int8"]["oa_test_fp32"],
                 checks["int8"]["oa_test_int8"])
    meta["sizes_bytes"] = {name: (folder / name).stat().st_size for name in files.values()}
    meta["verification"] = checks
    atomic_write_json(folder / METADATA, meta)
    return meta


def export(cfg: Any) -> dict[str, Any]:
    """`python -m hsi.export` with its composed config."""
    from hsi.validation import require_choice, require_int, require_number

    require_int(cfg, "opset", MIN_OPSET, hint=" (the dynamo exporter writes no older opset)")
    require_int(cfg, "tile_rows", 1)
    require_int(cfg, "batch_size", 1)
    require_int(cfg, "threads", 1, optional=True)
    if cfg.get("quantize") not in QUANTIZE:
        raise ConfigError(f"quantize={cfg.get('quantize')!r}: choose null (fp32 only) or int8.")
    require_number(cfg, "fp32_tolerance", 0.0, 1.0)
    require_number(cfg, "int8.max_oa_drop", 0.0, 1.0, optional=True)
    require_int(cfg, "int8.samples", 1)
    require_int(cfg, "int8.seed", 0)
    require_int(cfg, "int8.float_conv3d_below", 0)
    require_choice(cfg, "int8.calibration", CALIBRATION_METHODS)
    output_dir = Path(cfg.paths.output_dir)
    meta = export_checkpoint(
        cfg.ckpt_path, output_dir, quantize=cfg.quantize, opset=cfg.opset, data_dir=cfg.get("data_dir"),
        tile_rows=cfg.tile_rows, batch_size=cfg.batch_size, threads=cfg.get("threads"),
        fp32_tolerance=cfg.fp32_tolerance, int8=Int8Settings(**cfg.int8))
    sizes = ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in meta["sizes_bytes"].items())
    log.info("Exported %s (%s path): %s; in %s", meta["network"], meta["path"], sizes, output_dir)
    return meta


# -- prediction from an exported model (hsi.predict model_path=...) ----------------------------
class RecordedData:
    """The scene settings an export recorded (model.json's `data`), standing in for a checkpoint
    where only `datamodule()` is needed (loading the scene it was trained on)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def datamodule(self, **overrides: Any):
        from hsi.data.datamodule import HSIDataModule

        return HSIDataModule(**(self.data | {k: v for k, v in overrides.items() if v is not None}))


def predict_onnx(cfg: Any, load_scene: Callable[[Any, Any], tuple[np.ndarray, Any]]) -> dict[str, Any]:
    """`python -m hsi.predict model_path=<export>/model.onnx [data=...]`: every pixel of a scene
    classified by an exported graph; writes what `hsi.predict` writes. `load_scene(data_cfg,
    checkpoint_like)` is hsi.predict's scene_from_config."""
    from hsi.run_files import write_prediction_run

    model = OnnxClassifier.load(cfg.model_path, threads=cfg.get("threads"))
    method = cfg.get("method", "auto")
    wanted = {"dense": "dense", "window": "windows"}.get(method)
    if wanted is not None and wanted != model.kind:
        raise ConfigError(f"method={method}: {cfg.model_path} is a {model.kind} graph; use method=auto.")
    cube, scene = load_scene(cfg.get("data"), RecordedData(model.meta["data"]))
    filled, bad = model.check_cube(cube)  # band count, shape; NaN / inf filled with band means
    start = time.perf_counter()
    prediction = model.predict(filled, cfg.get("tile_rows", 128), cfg.get("batch_size", 256))
    seconds = time.perf_counter() - start
    path = f"onnx-{model.kind}-{model.precision}"
    title = f"{model.meta['network']} on {scene.name if scene else 'cube'} ({path} inference)"
    same_scene = scene is not None and scene.name == model.meta.get("scene")
    return write_prediction_run(cfg.paths.output_dir, filled, scene, prediction, bad, model.class_names,
                                title, model.meta.get("rgb_bands") if same_scene else None, path, seconds,
                                {"model": str(Path(cfg.model_path).resolve()),
                                 "checkpoint": model.meta["checkpoint"]["path"]})
