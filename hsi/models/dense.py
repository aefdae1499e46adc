"""Dense conversion of a network: its head rewritten as convolutions over its trunk's map.

Dense inference needs a network split as `forward(x) = head(trunk(x))` where `trunk` is
translation-equivariant (convolutions, batch norm in eval mode, point-wise activations) and
`head` is `Flatten -> Linear ...` or `global pool -> Flatten -> Linear ...`. The first Linear
after a flatten becomes a convolution as large as the trunk's window output; after a global
pool it becomes a box filter followed by a 1x1 convolution; later Linears become 1x1
convolutions. Networks declare it with `dense = True` (`hsi.models.contract.Network`); others
(e.g. with squeeze-excitation inside the trunk, whose statistics span the window) use the window path.
"""

from __future__ import annotations

import torch
from torch import nn

from hsi.data.sampling.patches import EVAL_PATHS
from hsi.errors import ConfigError
from hsi.models.contract import Network
from hsi.models.cost import evaluating

POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
             nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout)


def supports_dense(net: nn.Module) -> bool:
    """Whether the network declares an exact dense form (`Network.dense`)."""
    return isinstance(net, Network) and net.dense


def check_network_eval_path(net: nn.Module, eval_path: str, key: str = "eval_path") -> None:
    """Refuse an unknown evaluation path, or `dense` for a network that cannot run densely."""
    if eval_path not in EVAL_PATHS:
        raise ConfigError(f"{key}={eval_path!r}: choose one of {', '.join(EVAL_PATHS)}.")
    if eval_path == "dense" and not supports_dense(net):
        raise ConfigError(f"{key}=dense: {type(net).__name__} has window-global steps inside its trunk; "
                          f"use {key}=window (or auto)")


def fold_bands(x: torch.Tensor) -> torch.Tensor:
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


def build_dense_head(net: nn.Module, bands: int, patch_size: int) -> DenseHead:
    """`net.head` as convolutions over `net.trunk`'s map, for windows of `patch_size` pixels
    over `bands` bands, on the network's device and in its dtype, in eval mode.

    It copies the head's current weights: build it again after they change (once per
    evaluation epoch). The trunk runs once on a zero window, in eval mode, to learn its output
    shape; the network is left in the mode it was in.
    """
    if not supports_dense(net):
        raise ConfigError(f"{type(net).__name__} cannot run densely: it has window-global steps "
                          f"inside its trunk; use eval_path=window (or auto)")
    param = next(net.parameters())
    with evaluating(net):
        window = fold_bands(net.trunk(torch.zeros(1, 1, bands, patch_size, patch_size,
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
    return head(fold_bands(net.trunk(tile[None])))[0]
