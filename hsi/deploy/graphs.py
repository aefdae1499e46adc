"""ONNX graphs of a trained network: the whole dense pipeline as one fully convolutional graph
(raw tile -> PCA -> padding -> trunk -> head as convolutions, `hsi.models.dense`), or the network
over windows plus a PCA graph for networks that cannot run densely. The graphs come from
`torch.onnx.export(..., dynamo=True)`; the TorchScript exporter is not used."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsi.deploy.runtime import EXTRA
from hsi.errors import ExportError, first_line
from hsi.models.contract import Network
from hsi.models.dense import build_dense_head, fold_bands, supports_dense
from hsi.run.checkpoint import Checkpoint
from hsi.utils.run_files import MODEL_GRAPHS

log = logging.getLogger(__name__)

OPSET = 18
# torch.onnx's dynamo exporter has no translations below opset 18, and converting its graph down
# fails (onnx has no Pad adapter to 17): a lower opset would silently stay 18
MIN_OPSET = 18
PACKAGES = ("onnx", "onnxruntime", "onnxscript")
FILES = MODEL_GRAPHS  # the export folder's graphs, by precision (and the window path's PCA)


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
        self.head = build_dense_head(net, bands, patch_size)

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
        cause = first_line(error)
        raise ExportError(f"torch.onnx.export (dynamo) could not translate {type(module).__name__} "
                          f"at opset {opset}: {cause}") from error
    if written != opset:
        raise ExportError(f"opset={opset} was asked for but the exporter wrote opset {written}; choose "
                          f"an opset from {MIN_OPSET} to the newest onnxruntime runs.")


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def check_exportable(net: nn.Module) -> None:
    """Refuse, in one line, a network outside the contract or one that declares it has no ONNX graph."""
    if not isinstance(net, Network):
        raise ExportError(f"{type(net).__name__} is not an hsi.models.contract.Network: only the zoo's "
                          f"networks are exported; run it with hsi.predict ckpt_path=<checkpoint>.")
    if net.cannot_export:
        raise ExportError(f"{type(net).__name__} cannot be exported to ONNX ({net.cannot_export}); "
                          f"run it with hsi.predict ckpt_path=<checkpoint> instead.")


def build_graphs(checkpoint: Checkpoint, net: nn.Module, folder: Path, opset: int) -> dict[str, str]:
    """Write the fp32 graph(s) into `folder`; return {"fp32": file, ["pca": file]}."""
    state = checkpoint.data_state
    return network_graphs(net, int(state["raw_bands"]), int(state["patch_size"]), state.get("pca"),
                          len(state["class_names"]), folder, opset)


def network_graphs(net: nn.Module, bands: int, patch: int, pca: dict[str, Any] | None, classes: int,
                   folder: Path, opset: int = OPSET) -> dict[str, str]:
    """The fp32 graph(s) of `net` for windows of `patch` pixels over `bands` raw bands (reduced by
    `pca` where given) into `folder`: the dense scene graph where the network has a dense form,
    else the window graph (and the PCA's); returns {"fp32": file, ["pca": file]}."""
    check_exportable(net)
    components = bands if pca is None else int(torch.as_tensor(pca["components"]).shape[0])
    avoid = {1, bands, components, patch, classes}
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


