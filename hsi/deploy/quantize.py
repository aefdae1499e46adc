"""int8 quantization of an exported graph: onnxruntime's static QDQ quantization (per-channel int8
weights, uint8 activations) calibrated on tiles / windows of the checkpoint's training pixels. The
PCA stays in float, and so do the first layers of 3-D networks (see `Int8Settings`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsi.deploy.graphs import quiet_exporter_logs
from hsi.errors import ConfigError, ExportError, HsiError, first_line
from hsi.run.checkpoint import Checkpoint

log = logging.getLogger(__name__)

QUANTIZE = (None, "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
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
    patch = int(checkpoint.data_state["patch_size"])
    if dense:
        cube = datamodule.scene.cube
        pca = checkpoint.data_state.get("pca")
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
    `Int8Settings`) stay in float. Returns what was done, for model.json.
    Long on purpose: onnxruntime's calibration reader, exclusions and quantization call, one linear sequence.
    """
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
        cause = first_line(error)
        raise ExportError(f"int8 quantization failed ({type(error).__name__}: {cause}).") from error
    finally:
        prepared.unlink(missing_ok=True)
    check_loads(int8)
    return {"format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor",
            "calibration": settings.calibration, "calibration_inputs": count,
            "float_nodes": excluded, "float_prefix_nodes": len(prefix)}


def check_loads(int8: Path) -> None:
    """Refuse, in one line, an int8 graph onnxruntime cannot load (its quantizer can write one:
    MambaHSI's scan gets duplicate names), before anything is checked or moved."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for invalid graphs
        int8.unlink(missing_ok=True)
        raise ExportError(f"onnxruntime's int8 quantizer wrote a graph it cannot load ({first_line(error)}); "
                          f"export this network without quantize=int8 (fp32 ONNX).") from error
