"""HybridSN (Roy et al., 2020): three 3-D convolutions, one 2-D convolution, three dense layers."""

from __future__ import annotations

import torch
from torch import nn


class HybridSN(nn.Module):
    """HybridSN over windows (N, 1, bands, patch, patch), every size derived from the input.

    With 30 bands, 25x25 windows and 16 classes it has 5,122,416 parameters, as the
    notebook's network does.
    """

    dense_capable = True  # trunk is valid convolutions only: see hsi.inference
    spectral_kernels = (7, 5, 3)
    channels_3d = (8, 16, 32)

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 channels_2d: int = 64, hidden: tuple[int, int] = (256, 128),
                 dropout: float = 0.4) -> None:
        super().__init__()
        min_bands = sum(k - 1 for k in self.spectral_kernels) + 1
        min_patch = 2 * 4 + 1  # four 3x3 convolutions without padding
        if in_bands < min_bands:
            raise ValueError(f"HybridSN needs at least {min_bands} bands per window (its spectral "
                             f"kernels are {self.spectral_kernels}); got {in_bands}. Raise "
                             f"data.pca_components.")
        if patch_size < min_patch:
            raise ValueError(f"HybridSN needs windows of at least {min_patch}x{min_patch} pixels "
                             f"(four 3x3 convolutions); got {patch_size}. Raise data.patch_size.")
        layers: list[nn.Module] = []
        in_channels, depth = 1, in_bands
        for out_channels, k in zip(self.channels_3d, self.spectral_kernels):
            layers += [nn.Conv3d(in_channels, out_channels, (k, 3, 3)),
                       nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]
            in_channels, depth = out_channels, depth - k + 1
        self.features_3d = nn.Sequential(*layers)
        folded = in_channels * depth
        self.features_2d = nn.Sequential(nn.Conv2d(folded, channels_2d, 3),
                                         nn.BatchNorm2d(channels_2d), nn.ReLU(inplace=True))
        side = patch_size - 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels_2d * side * side, hidden[0]), nn.Dropout(dropout), nn.ReLU(inplace=True),
            nn.Linear(hidden[0], hidden[1]), nn.Dropout(dropout), nn.ReLU(inplace=True),
            nn.Linear(hidden[1], num_classes),
        )

    @property
    def head(self) -> nn.Sequential:
        return self.classifier

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Convolutions: (N, 1, bands, H, W) -> (N, channels_2d, H - 8, W - 8)."""
        x = self.features_3d(x)
        n, c, d, h, w = x.shape
        return self.features_2d(x.reshape(n, c * d, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.trunk(x))
