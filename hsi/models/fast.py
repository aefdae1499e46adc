"""HybridSNFast: a lite HybridSN that is as cheap in seconds as in multiply-accumulates on a CPU,
and dense-capable (its trunk slides over a whole scene, see hsi.models.dense)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.models.blocks import (
    ConvBNAct,
    FusedBlock,
    GridLinear,
    head_activation,
    make_divisible,
)
from hsi.models.contract import Network

FAST_POOLS = ("pooled", "flatten", "avg")


class HybridSNFast(Network):
    """Bands folded into channels at once (then an optional 1x1 spectral-mixing `stem`), unpadded
    fused inverted residuals (full k x k convolution, per-pixel channel gate, linear 1x1
    projection, centre-crop shortcut) with h-swish, a 1x1 reduction and a flatten head.

    Why not `HybridSNLite`'s blocks: on a CPU its depthwise 3-D convolutions, squeeze-excitations
    and many thin layers run far below peak (9% of HybridSN's MACs, the same windows per second).
    Here every layer is a 2-D convolution over the whole window with enough work per output to
    run near peak, and there are few of them (the batch-norm and activation passes over each
    layer's map cost as much as a thin convolution). Channel attention is computed per pixel from
    that pixel's features (`PixelGate`), never pooled over the window, and no convolution is
    padded or strided, so the trunk is translation-equivariant: dense whole-scene inference and
    dense evaluation apply (`dense`).

    The window shrinks by k - 1 per block. `pool` (the head): `pooled` (default) averages the
    reduced map over 3x3 neighbourhoods (stride 1, unpadded, in the trunk; smaller when the map
    is) and the first dense layer reads every second row and column of it (`GridLinear`), as
    `HybridSNLite`'s pooled head does with a stride-2 pool: position kept at half resolution, a
    window shifted by a pixel looks alike to the head; `flatten` (the reduced map flattened) or
    `avg` (global average pooling of the last block). `width` multiplies every channel count
    (rounded to `divisor`).
    """

    dense = True

    @classmethod
    def input_limits(cls, channels: Sequence[int] = (64, 64), kernel_size: int = 3,
                     **net_kwargs: object) -> tuple[int, int]:
        """Any bands; one unpadded kernel_size x kernel_size convolution per block."""
        return 1, (kernel_size - 1) * len(channels) + 1

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, width: float = 1.0,
                 stem: int = 0, channels: Sequence[int] = (64, 64), kernel_size: int = 3,
                 expansion: float = 1.0, groups: int = 1, gate_reduction: int | None = 4,
                 pool: str = "pooled", flatten_channels: int = 24, hidden: int = 128,
                 dropout: float = 0.4, act: str = "hswish", divisor: int = 8,
                 channels_last: bool = True) -> None:
        """Long on purpose: the layer list of the network, read top to bottom."""
        super().__init__()
        if pool not in FAST_POOLS:
            raise ConfigError(f"model.net.pool: unknown pool {pool!r}; choose one of {FAST_POOLS}")
        if not channels:
            raise ConfigError("model.net.channels: at least one block")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"model.net.kernel_size must be odd (centred windows), got {kernel_size}")
        shrink = (kernel_size - 1) * len(channels)
        self.check_input(in_bands, patch_size, channels=channels, kernel_size=kernel_size)

        def scaled(c: int) -> int:
            return make_divisible(c * width, divisor)

        widths = [scaled(c) for c in channels]
        for c in widths:
            if c % groups:
                raise ConfigError(f"model.net.groups={groups} must divide every block's channels, "
                                  f"got {widths} (model.net.channels x model.net.width)")
        self.channels_last = channels_last
        layers: list[nn.Module] = []
        c_in = in_bands
        if stem:
            layers.append(ConvBNAct(in_bands, scaled(stem), 1, act=act))
            c_in = scaled(stem)
        if groups > 1 and c_in % groups:
            raise ConfigError(f"model.net.groups={groups} must divide the first block's input "
                              f"channels ({c_in}: model.net.stem, or the bands without a stem)")
        for c_out in widths:
            layers.append(FusedBlock(c_in, c_out, kernel_size, expansion, groups, gate_reduction,
                                     act=act, divisor=divisor))
            c_in = c_out
        side = patch_size - shrink
        if pool == "avg":
            self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                            nn.Linear(c_in, scaled(hidden)), nn.Dropout(dropout),
                                            head_activation(act), nn.Linear(scaled(hidden), num_classes))
        else:
            features = scaled(flatten_channels)
            layers.append(ConvBNAct(c_in, features, 1, act=act))
            if pool == "pooled":
                window = min(3, side)
                layers.append(nn.AvgPool2d(window, stride=1))
                first = GridLinear(features, side - window + 1, 2, scaled(hidden))
            else:
                first = nn.Linear(features * side * side, scaled(hidden))
            self.classifier = nn.Sequential(nn.Flatten(), first, nn.Dropout(dropout), head_activation(act),
                                            nn.Linear(scaled(hidden), num_classes))
        self.features = nn.Sequential(*layers)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, bands, H, W) -> (N, C, H - shrink, W - shrink) (minus 2 more with `pooled`)."""
        x = x.flatten(1, 2)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.features(x)
