"""HybridSN (Roy et al., 2020): three 3-D convolutions, one 2-D convolution, three dense layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hsi.models.blocks import linear_head, min_input_size
from hsi.models.contract import Network, Reference


class HybridSN(Network):
    """HybridSN over windows (N, 1, bands, patch, patch), every size derived from the input.

    `trunk`: the 3-D convolutions, bands folded into channels, the 2-D convolution (all
    unpadded, so it slides over a whole scene: see hsi.models.dense); `head` (`classifier`): flatten
    and the dense layers. With 30 bands, 25x25 windows and 16 classes it has 5,122,416
    parameters: the notebook's 5,122,176 and 240 of the batch norms it puts after each convolution
    (the notebook imports BatchNormalization but uses none); `batch_norm=False` is the notebook's
    network exactly.
    """

    dense = True
    reference = Reference(
        paper="Roy et al., IEEE GRSL 2020, \"HybridSN: Exploring 3-D-2-D CNN feature hierarchy for "
              "hyperspectral image classification\"",
        code="gokriznastic/HybridSN Hybrid-Spectral-Net.ipynb (Keras)",
        settings={"in_bands": 30, "patch_size": 25, "num_classes": 16, "batch_norm": False},
        params=5_122_176,
        counted="cells 19-21 of the notebook run in Keras 3 (torch backend; _keras_shape read as shape), "
                "model.count_params(); it has no batch norm: ours by default has 240 more, 5,122,416")
    spectral_kernels = (7, 5, 3)
    channels_3d = (8, 16, 32)

    @classmethod
    def input_limits(cls, **net_kwargs: object) -> tuple[int, int]:
        """Three unpadded spectral kernels (7, 5, 3) and four unpadded 3x3 spatial kernels."""
        return min_input_size(cls.spectral_kernels), min_input_size([3] * (len(cls.channels_3d) + 1))

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 channels_2d: int = 64, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.4, batch_norm: bool = True) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)

        def norm(kind: type[nn.Module], channels: int) -> list[nn.Module]:
            return [kind(channels)] if batch_norm else []

        # biased convolutions, as the notebook's (not ConvBNAct): checkpoints keep their keys
        layers: list[nn.Module] = []
        in_channels, depth = 1, in_bands
        for out_channels, k in zip(self.channels_3d, self.spectral_kernels):
            layers += [nn.Conv3d(in_channels, out_channels, (k, 3, 3)),
                       *norm(nn.BatchNorm3d, out_channels), nn.ReLU(inplace=True)]
            in_channels, depth = out_channels, depth - k + 1
        self.features_3d = nn.Sequential(*layers)
        self.features_2d = nn.Sequential(nn.Conv2d(in_channels * depth, channels_2d, 3),
                                         *norm(nn.BatchNorm2d, channels_2d), nn.ReLU(inplace=True))
        side = patch_size - 2 * (len(self.channels_3d) + 1)
        self.classifier = linear_head(channels_2d * side * side, hidden, num_classes, dropout)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Convolutions: (N, 1, bands, H, W) -> (N, channels_2d, H - 8, W - 8)."""
        x = self.features_3d(x)
        n, c, d, h, w = x.shape
        return self.features_2d(x.reshape(n, c * d, h, w))
