"""Whole-scene inference: dense (trunk once over the scene) or window by window.

Dense inference needs a network split as `forward(x) = head(trunk(x))` where `trunk` is
translation-equivariant (convolutions, batch norm in eval mode, point-wise activations) and
`head` is `Flatten -> Linear ...` or `global pool -> Flatten -> Linear ...`. The first Linear
after a flatten becomes a convolution as large as the trunk's window output; after a global
pool it becomes a box filter followed by a 1x1 convolution; later Linears become 1x1
convolutions. Networks opt in with `dense_capable = True`; others (e.g. with squeeze-excitation
inside the trunk, whose statistics span the window) use the window path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
             nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout)


def supports_dense(net: nn.Module) -> bool:
    return bool(getattr(net, "dense_capable", False)) and hasattr(net, "trunk") and hasattr(net, "head")


def _fold(x: torch.Tensor) -> torch.Tensor:
    """(N, C, D, H, W) -> (N, C*D, H, W): spectral depth folded into channels, as Flatten orders it."""
    return x.reshape(x.shape[0], -1, *x.shape[-2:]) if x.dim() == 5 else x


class DenseHead(nn.Module):
    """`net.head` rewritten as convolutions over a (N, C, H, W) trunk map."""

    def __init__(self, head: nn.Module, window_shape: tuple[int, int, int]) -> None:
        super().__init__()
        channels, h, w = window_shape
        layers: list[nn.Module] = []
        pending: str | None = None  # "flatten" (full window) or "pool" (global average)
        for module in (head if isinstance(head, nn.Sequential) else [head]):
            if isinstance(module, nn.Flatten):
                pending = pending or "flatten"
            elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
                pending = "pool"
            elif isinstance(module, nn.Linear):
                conv = self._linear_as_conv(module, channels, h, w, pending)
                if pending == "pool" and (h, w) != (1, 1):
                    layers.append(nn.AvgPool2d((h, w), stride=1))
                layers.append(conv)
                pending, channels, h, w = None, module.out_features, 1, 1
            elif isinstance(module, nn.BatchNorm1d):
                bn = nn.BatchNorm2d(module.num_features, eps=module.eps, affine=module.affine)
                bn.load_state_dict(module.state_dict())
                layers.append(bn)
            elif isinstance(module, POINTWISE):
                layers.append(module)
            else:
                raise TypeError(f"cannot run {type(module).__name__} densely")
        self.layers = nn.Sequential(*layers)

    @staticmethod
    def _linear_as_conv(linear: nn.Linear, channels: int, h: int, w: int,
                        pending: str | None) -> nn.Conv2d:
        if pending == "flatten":
            kernel = (h, w)
            weight = linear.weight.reshape(linear.out_features, channels, h, w)
        else:
            kernel = (1, 1)
            weight = linear.weight.reshape(linear.out_features, -1, 1, 1)
        conv = nn.Conv2d(weight.shape[1], linear.out_features, kernel, bias=linear.bias is not None)
        conv.weight.data.copy_(weight)
        if linear.bias is not None:
            conv.bias.data.copy_(linear.bias)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _tiles(height: int, tile_rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, height, tile_rows):
        yield start, min(start + tile_rows, height)


@torch.inference_mode()
def dense_logits(net: nn.Module, padded: torch.Tensor, patch_size: int, tile_rows: int = 128,
                 progress: bool = False) -> torch.Tensor:
    """Logits (K, H, W) for every pixel of a scene padded by `pad_cube` ((B, H+p-1, W+p-1)).

    The scene is cut into bands of `tile_rows` output rows (each with its p-1 rows of halo), so
    memory stays bounded on large scenes.
    """
    from tqdm.auto import tqdm

    net.eval()
    device = next(net.parameters()).device
    bands = padded.shape[0]
    window = _fold(net.trunk(torch.zeros(1, 1, bands, patch_size, patch_size, device=device)))
    head = DenseHead(net.head, tuple(window.shape[1:])).to(device).eval()
    height, width = padded.shape[1] - patch_size + 1, padded.shape[2] - patch_size + 1
    rows = []
    for start, stop in tqdm(list(_tiles(height, tile_rows)), desc="dense", disable=not progress):
        tile = padded[:, start:stop + patch_size - 1].to(device)
        logits = head(_fold(net.trunk(tile[None, None])))
        rows.append(logits[0].cpu())
    out = torch.cat(rows, dim=1)
    if out.shape[1:] != (height, width):
        raise RuntimeError(f"dense output {tuple(out.shape[1:])} != scene {(height, width)}: the "
                           f"network's trunk is not a valid-convolution trunk")
    return out


@torch.inference_mode()
def window_logits(net: nn.Module, padded: torch.Tensor, coords: np.ndarray, patch_size: int,
                  batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """Logits (N, K) for the windows around `coords` (row, col), cut batch by batch."""
    from tqdm.auto import tqdm

    net.eval()
    device = next(net.parameters()).device
    coords = torch.as_tensor(np.asarray(coords, dtype=np.int64))
    offsets = torch.arange(patch_size)
    out = []
    for start in tqdm(range(0, len(coords), batch_size), desc="windows", disable=not progress):
        rc = coords[start:start + batch_size]
        rows = (rc[:, 0, None] + offsets)[:, :, None]  # (n, p, 1)
        cols = (rc[:, 1, None] + offsets)[:, None, :]  # (n, 1, p)
        batch = padded[:, rows, cols].permute(1, 0, 2, 3).unsqueeze(1)  # (n, 1, B, p, p)
        out.append(net(batch.to(device)).cpu())
    return torch.cat(out) if out else torch.empty(0)


def scene_logits(net: nn.Module, padded: torch.Tensor, patch_size: int, method: str = "auto",
                 batch_size: int = 64, tile_rows: int = 128,
                 progress: bool = False) -> tuple[torch.Tensor, str]:
    """(K, H, W) logits for every pixel and the path that ran ("dense" or "window")."""
    if method not in ("auto", "dense", "window"):
        raise ValueError(f"method={method!r}: choose auto, dense or window")
    if method == "dense" and not supports_dense(net):
        raise ValueError(f"{type(net).__name__} has window-global steps inside its trunk; "
                         f"use method=window (or auto)")
    if method != "window" and supports_dense(net):
        return dense_logits(net, padded, patch_size, tile_rows, progress), "dense"
    height, width = padded.shape[1] - patch_size + 1, padded.shape[2] - patch_size + 1
    rows, cols = np.indices((height, width)).reshape(2, -1)
    logits = window_logits(net, padded, np.stack([rows, cols], 1), patch_size, batch_size, progress)
    return logits.T.reshape(-1, height, width), "window"


def scene_info(datamodule) -> dict:
    """What a checkpoint must carry to classify a cube on its own: PCA, window, classes, split.

    Only tensors and plain Python values, so `torch.load(weights_only=True)` reads it.
    """
    from hsi.data.catalogue import CATALOGUE
    from hsi.maps import class_colours

    pca = datamodule.pca
    scene = datamodule.scene
    spec = CATALOGUE.get(scene.name)
    return {
        "scene": scene.name,
        "rgb_bands": list(spec.rgb_bands) if spec is not None else None,
        "raw_bands": scene.num_bands,
        "patch_size": int(datamodule.hparams.patch_size),
        "pca": None if pca is None else {"mean": torch.as_tensor(pca.mean),
                                         "components": torch.as_tensor(pca.components),
                                         "scale": torch.as_tensor(pca.scale)},
        "class_names": list(scene.class_names),
        "label_values": [int(v) for v in scene.label_values],
        "colours": class_colours(scene.num_classes)[1:].tolist(),
        "data": {k: v for k, v in dict(datamodule.hparams).items()},
        "split": {k: torch.as_tensor(v) for k, v in datamodule.split.items()},
    }


def reduce_cube(info: dict, cube: np.ndarray) -> np.ndarray:
    """Apply the checkpoint's spectral reduction to a (H, W, bands) cube, checking the bands."""
    from hsi.data.preprocessing import PCATransform

    if cube.ndim != 3:
        raise ValueError(f"expected a (height, width, bands) cube, got shape {cube.shape}")
    if cube.shape[2] != info["raw_bands"]:
        raise ValueError(f"The checkpoint was trained on cubes with {info['raw_bands']} bands "
                         f"(scene {info['scene']!r}) but this cube has {cube.shape[2]}; predict on "
                         f"a cube from the same sensor and band set.")
    if info["pca"] is None:
        return cube.astype(np.float32)
    pca = PCATransform(**{k: v.double().numpy() for k, v in info["pca"].items()})
    return pca(cube)


def predict_labels(net: nn.Module, info: dict, cube: np.ndarray, method: str = "auto",
                   batch_size: int = 64, tile_rows: int = 128,
                   progress: bool = False) -> tuple[np.ndarray, str]:
    """(H, W) predicted classes 1..K for every pixel of `cube`, and the path that ran."""
    from hsi.data.patches import pad_cube

    padded = pad_cube(reduce_cube(info, cube), info["patch_size"])
    logits, path = scene_logits(net, padded, info["patch_size"], method, batch_size, tile_rows, progress)
    return logits.argmax(0).numpy() + 1, path
