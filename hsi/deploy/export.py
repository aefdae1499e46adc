"""Deploy a trained network as ONNX: build the graph, check it against PyTorch, quantize it to int8.

`export_checkpoint` writes into an output folder:

- `model.onnx`: for networks with a dense form (`hsi.models.contract.Network.dense`: HybridSN,
  CNN2D, CNN3D, ...) the whole pipeline as one fully convolutional graph, raw cube tile (1, bands, H, W)
  with dynamic H and W -> the checkpoint's PCA (mean subtraction, then projection and whitening
  as one 1x1 convolution) -> zero padding by the window margin -> the trunk -> the head as
  convolutions (`hsi.models.dense.DenseHead`) -> logits (1, classes, H, W). For the others
  (squeeze-excitation inside the trunk: HybridSNSE, HybridSNLite) the network over windows
  (N, 1, components, p, p) -> logits (N, classes), and `pca.onnx` (1, bands, H, W) ->
  (1, components, H, W); `hsi.deploy.runtime` cuts the windows.
- `model.int8.onnx` with `quantize="int8"`: onnxruntime's static QDQ quantization (per-channel
  int8 weights, uint8 activations) calibrated on tiles / windows of the checkpoint's training
  pixels. The PCA stays in float (raw radiances quantized to 8 bits would drown the low-variance
  components), and so do the first layers of 3-D networks (see `Int8Settings`).
- `model.json`: what the graph expects (bands, PCA, window, classes, colours, label values, path
  kind), the opset, the checkpoint's SHA-1, the package versions, and the checks below.

Checks, run on the checkpoint's whole scene before anything is moved into the folder: the fp32
graph's logits against PyTorch's (`hsi.run.inference.scene_logits` on the cube reduced as
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
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hsi.deploy.checks import check_fp32, check_int8, overall_accuracy, reference_logits
from hsi.deploy.graphs import (
    FILES,
    MIN_OPSET,
    OPSET,
    PACKAGES,
    build_graphs,
    check_exportable,
    require_packages,
)
from hsi.deploy.quantize import QUANTIZE, Int8Settings, calibration_batches, quantize_int8
from hsi.deploy.runtime import FORMAT, FORMAT_VERSION, METADATA, OnnxClassifier
from hsi.errors import ConfigError, ExportError
from hsi.models.dense import supports_dense
from hsi.run.checkpoint import Checkpoint, load_checkpoint
from hsi.run.validation import require_int, require_number
from hsi.utils.files import atomic_write_json

log = logging.getLogger(__name__)

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
    state = checkpoint.data_state
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
        # "spectrum": the graph reads each pixel's own spectrum only (hsi.models.contract.Network.takes)
        "takes": getattr(net, "takes", "window"),
        "eval_path": "dense" if dense else "window",
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
        # the training raster's band centres, compared with a raster's before predicting on it
        "wavelengths": (state.get("geo") or {}).get("wavelengths"),
        "wavelength_units": (state.get("geo") or {}).get("wavelength_units"),
        "scene": state.get("scene"),
        "opset": opset,
        "checkpoint": {"path": str(checkpoint.path.resolve()), "sha1": file_sha1(checkpoint.path),
                       "format": checkpoint.format},
        "data": _jsonable(checkpoint.data),
        "exported_with": _versions(),
    }


def export_checkpoint(ckpt_path: str | Path, output_dir: str | Path, *, quantize: str | None = None,
                      opset: int = OPSET, moved: Mapping[str, Any] | None = None, tile_rows: int = 128,
                      batch_size: int = 256, threads: int | None = None,
                      fp32_tolerance: float = 1e-4, int8: Int8Settings | None = None) -> dict[str, Any]:
    """Export a checkpoint into `output_dir` (model.onnx, model.json, ...), checked; return model.json.
    `moved`: where the checkpoint's scene files are now (`data_dir`, `cube_path`, `gt_path`)."""
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize={quantize!r}: choose null (fp32 only) or int8.")
    if opset < MIN_OPSET:
        raise ConfigError(f"opset={opset}: torch.onnx's dynamo exporter writes opset {MIN_OPSET} and "
                          f"newer (converting down fails); choose {MIN_OPSET} or more.")
    int8 = int8 or Int8Settings()
    require_packages()
    checkpoint = load_checkpoint(ckpt_path)
    net = checkpoint.classifier("cpu").net.eval()
    check_exportable(net)  # before the scene is loaded
    # the scene in memory (a streamed raster too: the graph is checked on every pixel), the recorded
    # PCA and the split (checked against the recorded one)
    datamodule = checkpoint.datamodule(**dict(moved or {}), stream=False)
    datamodule.setup()
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
    """Long on purpose: one linear sequence of export, check and write steps sharing the temporary folder."""
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
    meta["sha1"] = {name: file_sha1(folder / name) for name in files.values()}  # checked on load
    meta["verification"] = checks
    atomic_write_json(folder / METADATA, meta)
    return meta


def export(cfg: Any) -> dict[str, Any]:
    """`python -m hsi.export` with its composed config."""
    require_int(cfg, "opset", MIN_OPSET, hint=" (the dynamo exporter writes no older opset)")
    require_int(cfg, "inference.tile_rows", 1)
    require_int(cfg, "inference.batch_size", 1)
    require_int(cfg, "inference.threads", 1, optional=True)
    require_number(cfg, "fp32_tolerance", 0.0, 1.0)
    require_number(cfg, "int8.max_oa_drop", 0.0, 1.0, optional=True)
    require_int(cfg, "int8.samples", 1)
    require_int(cfg, "int8.seed", 0)
    require_int(cfg, "int8.float_conv3d_below", 0)
    # quantize and int8.calibration: checked where they are used (export_checkpoint, Int8Settings)
    output_dir = Path(cfg.paths.output_dir)
    meta = export_checkpoint(
        cfg.ckpt_path, output_dir, quantize=cfg.quantize, opset=cfg.opset,
        moved={key: value for key, value in cfg.moved.items() if value is not None},
        tile_rows=cfg.inference.tile_rows, batch_size=cfg.inference.batch_size, threads=cfg.inference.threads,
        fp32_tolerance=cfg.fp32_tolerance, int8=Int8Settings(**cfg.int8))
    sizes = ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in meta["sizes_bytes"].items())
    log.info("Exported %s (%s path): %s; in %s", meta["network"], meta["eval_path"], sizes, output_dir)
    return meta


