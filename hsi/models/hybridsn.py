"""HybridSN (Roy et al., 2020): three 3-D convolutions, one 2-D convolution, three dense layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hsi.models.blocks import TrunkHead, linear_head, min_input_size, require_input


class HybridSN(TrunkHead):
    """HybridSN over windows (N, 1, bands, patch, patch), every size derived from the input.

    `trunk`: the 3-D convolutions, bands folded into channels, the 2-D convolution (all
    unpadded, so it slides over a whole scene: see hsi.run.inference); `head` (`classifier`): flatten
    and the dense layers. With 30 bands, 25x25 windows and 16 classes it has 5,122,416
    parameters, as the notebook's network does.
    """

    spectral_kernels = (7, 5, 3)
    channels_3d = (8, 16, 32)

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 channels_2d: int = 64, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.4) -> None:
        super().__init__()
        spatial_kernels = [3] * (len(self.channels_3d) + 1)
        require_input(type(self).__name__, in_bands, patch_size, min_input_size(self.spectral_kernels),
                      min_input_size(spatial_kernels),
                      f"spectral kernels {self.spectral_kernels}, {len(spatial_kernels)} unpadded 3x3 "
                      f"spatial kernels")
        # biased convolutions, as the notebook's (not ConvBNAct): checkpoints keep their keys
        layers: list[nn.Module] = []
        in_channels, depth = 1, in_bands
        for out_channels, k in zip(self.channels_3d, self.spectral_kernels):
            layers += [nn.Conv3d(in_channels, out_channels, (k, 3, 3)),
                       nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]
            in_channels, depth = out_channels, depth - k + 1
        self.features_3d = nn.Sequential(*layers)
        self.features_2d = nn.Sequential(nn.Conv2d(in_channels * depth, channels_2d, 3),
                                         nn.BatchNorm2d(channels_2d), nn.ReLU(inplace=True))
        side = patch_size - sum(k - 1 for k in spatial_kernels)
        self.classifier = linear_head(channels_2d * side * side, hidden, num_classes, dropout)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Convolutions: (N, 1, bands, H, W) -> (N, channels_2d, H - 8, W - 8)."""
        x = self.features_3d(x)
        n, c, d, h, w = x.shape
        return self.features_2d(x.reshape(n, c * d, h, w))
