"""Variants of HybridSN: with squeeze-excitation (`HybridSNSE`) and a MobileNet-style redesign
(`HybridSNLite`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.models.blocks import (
    ConvBNAct,
    DepthwiseSeparable,
    InvertedResidual,
    SqueezeExcite,
    linear_head,
    make_divisible,
    min_input_size,
    pool_window,
)
from hsi.models.contract import Network
from hsi.models.hybridsn import HybridSN


def _with_se(stages: nn.Sequential, names: Sequence[str], chosen: set[str],
             make_se: Callable[[int], nn.Module]) -> nn.Sequential:
    """`stages` (conv, BN, ReLU per stage) with `make_se(channels)` after the ReLU of each chosen stage."""
    layers: list[nn.Module] = []
    names, channels = iter(names), 0
    for layer in stages:
        layers.append(layer)
        if isinstance(layer, nn.modules.conv._ConvNd):
            channels = layer.out_channels
        if isinstance(layer, nn.ReLU) and next(names) in chosen:
            layers.append(make_se(channels))
    return nn.Sequential(*layers)


class HybridSNSE(HybridSN):
    """HybridSN with squeeze-excitation (channel attention) after the chosen stages.

    `se_after` names stages among `3d_1`, `3d_2`, `3d_3` (the three 3-D convolutions; the
    excitation pools over bands and pixels) and `2d`; everything else is HybridSN's.
    """

    dense = False  # squeeze-excitation pools over the window inside the trunk
    reference = None  # our variant: HybridSN's reference does not count it
    stages_3d = ("3d_1", "3d_2", "3d_3")
    stages = (*stages_3d, "2d")

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, se_reduction: int = 4,
                 se_after: Sequence[str] = stages, se_gate: str = "sigmoid", se_gate_scale: float = 1.0,
                 **hybridsn: object) -> None:
        super().__init__(in_bands, patch_size, num_classes, **hybridsn)
        chosen = set(se_after)
        if unknown := chosen - set(self.stages):
            raise ConfigError(f"model.net.se_after: unknown stages {sorted(unknown)}; "
                             f"choose from {self.stages}")
        make_se = partial(SqueezeExcite, reduction=se_reduction, gate=se_gate, gate_scale=se_gate_scale)
        self.features_3d = _with_se(self.features_3d, self.stages_3d, chosen, make_se)
        self.features_2d = _with_se(self.features_2d, ("2d",), chosen, make_se)


class HybridSNLite(Network):
    """MobileNetV3-style HybridSN: a full 3-D convolution over (bands, rows, columns), 3-D
    inverted residuals (depthwise convolutions, squeeze-excitation, h-swish), bands folded into
    channels, a depthwise-separable 2-D convolution, 2-D inverted residuals and a small dense
    head on a narrow, pooled flatten (or a global pool).

    Like HybridSN it keeps the window's full resolution: no strides; spectral kernels and the
    first 3x3 of every stage are unpadded (bands shrink by k - 1, the window by 2 per 3-D stage
    and the 2-D fold); later 2-D blocks are padded and residual. `width` multiplies every channel
    count (rounded to `divisor`). `pool` (see `pool_window`): `pooled` (a 1x1 reduction to
    `flatten_channels`, a 3x3 stride-2 average pool, flattened: the head knows roughly where in
    the window each feature is, as HybridSN's does, and tolerates small shifts), `flatten` (the
    same without the pool), `gdc` (global depthwise convolution) or `avg` (global average pooling).
    """

    dense = False  # squeeze-excitation pools over the window inside the trunk

    @classmethod
    def input_limits(cls, spectral_kernels: Sequence[int] = (7, 5, 3),
                     channels_3d: Sequence[int] = (8, 16, 16), **net_kwargs: object) -> tuple[int, int]:
        """Unpadded spectral kernels; an unpadded 3x3 per 3-D stage and the fold, a pool of 1."""
        return min_input_size(spectral_kernels), 2 * len(channels_3d) + 3

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, width: float = 1.0,
                 channels_3d: Sequence[int] = (8, 16, 16), spectral_kernels: Sequence[int] = (7, 5, 3),
                 channels_2d: Sequence[int] = (64, 64), expansion_3d: float = 1.0,
                 expansion_2d: float = 1.0, se_reduction: int = 4, pool: str = "pooled",
                 flatten_channels: int = 24, hidden: int = 128, dropout: float = 0.4, act: str = "hswish",
                 divisor: int = 4) -> None:
        super().__init__()
        if len(channels_3d) != len(spectral_kernels):
            raise ConfigError("model.net.channels_3d and spectral_kernels need one entry per 3-D stage")
        self.check_input(in_bands, patch_size, spectral_kernels=spectral_kernels, channels_3d=channels_3d)

        def scaled(channels: int) -> int:
            return make_divisible(channels * width, divisor)

        c3d, c2d = [scaled(c) for c in channels_3d], [scaled(c) for c in channels_2d]
        layers: list[nn.Module] = [ConvBNAct(1, c3d[0], (spectral_kernels[0], 3, 3), dims=3, act=act)]
        for c_in, c_out, k in zip(c3d, c3d[1:], spectral_kernels[1:]):
            layers.append(InvertedResidual(c_in, c_out, (k, 3, 3), 1, 0, expansion_3d, se_reduction,
                                           dims=3, act=act, divisor=divisor))
        self.features_3d = nn.Sequential(*layers)
        folded = c3d[-1] * (in_bands - min_input_size(spectral_kernels) + 1)
        layers = [DepthwiseSeparable(folded, c2d[0], 3, dims=2, act=act)]
        for c_in, c_out in zip(c2d, c2d[1:]):
            layers.append(InvertedResidual(c_in, c_out, 3, 1, 1, expansion_2d, se_reduction, dims=2,
                                           act=act, divisor=divisor))
        self.features_2d = nn.Sequential(*layers)
        self.pool, features = pool_window(pool, c2d[-1], patch_size - 2 * len(c3d) - 2,
                                          scaled(flatten_channels), act)
        self.classifier = linear_head(features, (scaled(hidden),), num_classes, dropout, act=act)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """3-D stages, bands folded into channels, 2-D stages, the pool: what the head flattens."""
        x = self.features_3d(x)
        n, c, d, h, w = x.shape
        return self.pool(self.features_2d(x.reshape(n, c * d, h, w)))
