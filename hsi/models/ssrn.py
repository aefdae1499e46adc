"""SSRN (Zhong et al., IEEE TGRS 2018): spectral, then spatial residual learning over raw 3-D windows."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hsi.models.contract import Network, Reference
from hsi.models.residual3d import (
    STEM_KERNEL,
    ResidualUnit,
    SpectralToSpatial,
    global_average,
    spectral_stem,
    stem_depth,
)


class SSRN(Network):
    """Spectral-spatial residual network over windows (N, 1, bands, patch, patch), the paper's Fig. 6:

    - a (7, 1, 1) convolution with stride 2 along the bands to `channels` maps (97 bands left of 200);
    - `blocks` spectral residual units of two (7, 1, 1) convolutions each, identity shortcuts;
    - a convolution as deep as the bands left to `width` maps, turned into the band axis of one
      channel, and an unpadded (width, 3, 3) convolution to `channels` maps (the window shrinks by 2);
    - `blocks` spatial residual units of two padded (1, 3, 3) convolutions;
    - `trunk` ends with the average over the window; `head` (`classifier`): optional dropout and
      a Linear to the classes.

    Every convolution is followed by batch norm (the units as the PyTorch port builds them:
    conv, ReLU, BN, ReLU, conv, BN, + x, ReLU). With 200 bands, 7x7 windows and 16 classes it has
    364,168 parameters, as lironui's port (`SSRN_network`) does. Windows of 3x3 and up, 7 bands
    and up; padded convolutions and the window average make it window-only (no dense form).
    """

    reference = Reference(
        paper="Zhong et al., IEEE TGRS 2018 (SSRN)",
        code="lironui/Double-Branch-Dual-Attention-Mechanism-Network global_module/network.py (SSRN_network)",
        settings={"in_bands": 200, "patch_size": 7, "num_classes": 16},
        params=364_168,
        counted="SSRN_network(200, 16) instantiated (torch 2.13), sum of numel over parameters(); the "
                "authors' Keras SSRN_IN.py trains one residual unit per branch and a 1x1x1 shortcut conv: "
                "346,144 trainable (its saved models/Indian_best_RES_3D_SS4_10_1.hdf5, read with h5py)",
    )

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, channels: int = 24,
                 width: int = 128, blocks: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        self.spectral = nn.Sequential(
            spectral_stem(channels),
            *[ResidualUnit(channels, (STEM_KERNEL, 1, 1)) for _ in range(blocks)])
        self.transition = SpectralToSpatial(channels, stem_depth(in_bands), channels, width)
        self.spatial = nn.Sequential(*[ResidualUnit(channels, (1, 3, 3)) for _ in range(blocks)])
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))

    @classmethod
    def input_limits(cls, **net_kwargs: Any) -> tuple[int, int]:
        return STEM_KERNEL, 3

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, channels): both residual stages, averaged over the window."""
        return global_average(self.spatial(self.transition(self.spectral(x))))
