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
from tqdm.auto import tqdm

from hsi.data.patches import pad_cube
from hsi.errors import ConfigError
from hsi.models.cost import evaluating

log = logging.getLogger(__name__)

POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
             nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout)


METHODS = ("auto", "dense", "window")


def supports_dense(net: nn.Module) -> bool:
    return bool(getattr(net, "dense_capable", False)) and hasattr(net, "trunk") and hasattr(net, "head")


def check_method(net: nn.Module, method: str, key: str = "method") -> None:
    """Refuse an unknown inference path, or `dense` for a network that cannot run densely."""
    if method not in METHODS:
        raise ConfigError(f"{key}={method!r}: choose one of {', '.join(METHODS)}.")
    if method == "dense" and not supports_dense(net):
        raise ConfigError(f"{key}=dense: {type(net).__name__} has window-global steps inside its trunk; "
                         f"use {key}=window (or auto)")


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


def dense_logits(net: nn.Module, padded: torch.Tensor, patch_size: int, tile_rows: int = 128,
                 progress: bool = False) -> torch.Tensor:
    """Logits (K, H, W) for every pixel of a scene padded by `pad_cube` ((B, H+p-1, W+p-1)).

    The scene is cut into bands of `tile_rows` output rows (each with its p-1 rows of halo), so
    memory stays bounded on large scenes. The network runs in eval mode and is left in the mode
    it was in.
    """
    with evaluating(net):
        return _dense_logits(net, padded, patch_size, tile_rows, progress)


def _dense_logits(net: nn.Module, padded: torch.Tensor, patch_size: int, tile_rows: int,
                  progress: bool) -> torch.Tensor:
    device = next(net.parameters()).device
    bands = padded.shape[0]
    window = _fold(net.trunk(torch.zeros(1, 1, bands, patch_size, patch_size, device=device)))
    head = DenseHead(net.head, tuple(window.shape[1:])).to(device).eval()
    height, width = padded.shape[1] - patch_size + 1, padded.shape[2] - patch_size + 1
    rows = []
    for start, stop in tqdm(list(_tiles(height, tile_rows)), desc="dense", disable=not progress):
        tile = padded[:, start:stop + patch_size - 1].contiguous().to(device)  # same array, any layout
        logits = head(_fold(net.trunk(tile[None, None])))
        rows.append(logits[0].cpu())
    out = torch.cat(rows, dim=1)
    if out.shape[1:] != (height, width):
        raise RuntimeError(f"dense output {tuple(out.shape[1:])} != scene {(height, width)}: the "
                           f"network's trunk is not a valid-convolution trunk")
    return out


def window_logits(net: nn.Module, padded: torch.Tensor, coords: np.ndarray, patch_size: int,
                  batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """Logits (N, K) for the windows around `coords` (row, col), cut batch by batch, in eval mode
    (the network is left in the mode it was in)."""
    with evaluating(net):
        return _window_logits(net, padded, coords, patch_size, batch_size, progress)


def _window_logits(net: nn.Module, padded: torch.Tensor, coords: np.ndarray, patch_size: int,
                   batch_size: int, progress: bool) -> torch.Tensor:
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
    check_method(net, method)
    if method != "window" and supports_dense(net):
        return dense_logits(net, padded, patch_size, tile_rows, progress), "dense"
    height, width = padded.shape[1] - patch_size + 1, padded.shape[2] - patch_size + 1
    rows, cols = np.indices((height, width)).reshape(2, -1)
    logits = window_logits(net, padded, np.stack([rows, cols], 1), patch_size, batch_size, progress)
    return logits.T.reshape(-1, height, width), "window"


def predict_labels(net: nn.Module, cube: np.ndarray, patch_size: int, method: str = "auto",
                   batch_size: int = 64, tile_rows: int = 128,
                   progress: bool = False) -> tuple[np.ndarray, str]:
    """(H, W) predicted classes 1..K for every pixel of a (H, W, bands) cube already reduced as
    the network expects (see `hsi.checkpoint.reduce_cube`), and the path that ran."""
    padded = pad_cube(cube, patch_size)
    logits, path = scene_logits(net, padded, patch_size, method, batch_size, tile_rows, progress)
    return logits.argmax(0).numpy() + 1, path


# -- dense evaluation of labelled pixels (validation / test in HSIClassifier) -------------------
def build_dense_head(net: nn.Module, bands: int, patch_size: int) -> DenseHead:
    """`net.head` as convolutions over `net.trunk`'s map, for windows of `patch_size` pixels
    over `bands` bands, on the network's device and in its dtype, in eval mode.

    It copies the head's current weights: build it again after they change (once per
    evaluation epoch). The trunk runs once on a zero window, in eval mode, to learn its output
    shape; the network is left in the mode it was in.
    """
    if not supports_dense(net):
        raise ConfigError(f"{type(net).__name__} cannot run densely: it has window-global steps "
                          f"inside its trunk")
    param = next(net.parameters())
    with evaluating(net):
        window = _fold(net.trunk(torch.zeros(1, 1, bands, patch_size, patch_size,
                                             device=param.device, dtype=param.dtype))).shape[1:]
    # new layers draw initial weights (then overwritten) from the global generator: keep it
    # untouched, so that evaluating during training does not change the training's randomness
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        head = DenseHead(net.head, tuple(window))
    return head.to(device=param.device, dtype=param.dtype).eval()


def tile_logits(net: nn.Module, head: DenseHead, tile: torch.Tensor) -> torch.Tensor:
    """Logits (K, rows, cols) of a padded tile (1, B, rows + p - 1, cols + p - 1) (or without its
    leading axis): `net.trunk` once over the tile, then `head` from `build_dense_head`."""
    if tile.dim() == 3:
        tile = tile[None]
    return head(_fold(net.trunk(tile[None])))[0]
