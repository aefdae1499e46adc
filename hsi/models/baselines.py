"""Classic baselines: a 2-D CNN over the bands as channels and a plain 3-D CNN.

Both use unpadded, spatially unstrided convolutions, so their `trunk` (everything before the
final flatten) is translation-equivariant and can slide over a whole scene (`dense`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.models.blocks import ConvBNAct, linear_head, min_input_size
from hsi.models.contract import Network


class CNN2D(Network):
    """2-D CNN: (conv k x k, BN, ReLU) per entry of `channels` over the bands as input channels,
    then flatten and a dense head."""

    dense = True

    @classmethod
    def input_limits(cls, channels: Sequence[int] = (64, 64, 64), kernel_size: int = 3,
                     **net_kwargs: object) -> tuple[int, int]:
        """Any bands; one unpadded kernel_size x kernel_size convolution per stage."""
        return 1, min_input_size([kernel_size] * len(channels))

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 channels: Sequence[int] = (64, 64, 64), kernel_size: int = 3,
                 hidden: Sequence[int] = (128,), dropout: float = 0.4) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size, channels=channels, kernel_size=kernel_size)
        widths = [in_bands, *channels]
        self.features = nn.Sequential(*[ConvBNAct(c_in, c_out, kernel_size, dims=2)
                                        for c_in, c_out in zip(widths, channels)])
        side = patch_size - (kernel_size - 1) * len(channels)
        self.classifier = linear_head(channels[-1] * side * side, hidden, num_classes, dropout)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, bands, H, W) -> (N, channels[-1], H - 6, W - 6) with the default 3 stages."""
        return self.features(x.flatten(1, 2))


class CNN3D(Network):
    """Plain 3-D CNN: (conv k x 3 x 3, BN, ReLU) per stage, strided along the bands only, then
    flatten and a dense head."""

    dense = True

    @classmethod
    def input_limits(cls, channels: Sequence[int] = (8, 16, 32), spectral_kernels: Sequence[int] = (3, 3, 3),
                     spectral_strides: Sequence[int] = (2, 2, 1), **net_kwargs: object) -> tuple[int, int]:
        """Unpadded spectral kernels with their strides; an unpadded 3x3 per stage."""
        return min_input_size(spectral_kernels, spectral_strides), min_input_size([3] * len(channels))

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 channels: Sequence[int] = (8, 16, 32), spectral_kernels: Sequence[int] = (3, 3, 3),
                 spectral_strides: Sequence[int] = (2, 2, 1), hidden: Sequence[int] = (64,),
                 dropout: float = 0.4) -> None:
        super().__init__()
        if not len(channels) == len(spectral_kernels) == len(spectral_strides):
            raise ConfigError("model.net.channels, spectral_kernels and spectral_strides need one entry "
                             "per stage")
        self.check_input(in_bands, patch_size, channels=channels, spectral_kernels=spectral_kernels,
                         spectral_strides=spectral_strides)
        layers, c_in, depth = [], 1, in_bands
        for c_out, k, s in zip(channels, spectral_kernels, spectral_strides):
            layers.append(ConvBNAct(c_in, c_out, (k, 3, 3), (s, 1, 1), dims=3))
            c_in, depth = c_out, (depth - k) // s + 1
        self.features = nn.Sequential(*layers)
        side = patch_size - 2 * len(channels)
        self.classifier = linear_head(c_in * depth * side * side, hidden, num_classes, dropout)
