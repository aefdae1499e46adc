"""A2S2K-ResNet (Roy et al., IEEE TGRS 2021): an attention-selected pair of spectral and
spectral-spatial 3-D kernels, then improved residual blocks with efficient channel attention."""

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


class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al., CVPR 2020) as the reference builds it: the window's mean per channel,
    a 3x3 convolution (no bias) over the (1, C) row of means, i.e. a 3-wide convolution across
    neighbouring channels (the kernel's outer rows only ever meet the zero padding), a sigmoid
    gate rescaling each channel."""

    def __init__(self, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        gate = torch.sigmoid(self.conv(global_average(x).view(n, 1, 1, c))).view(n, c, *[1] * (x.dim() - 2))
        return x * gate


class SelectiveKernel(nn.Module):
    """The A2S2K stem: a (7, 1, 1) and a (7, 3, 3) convolution (stride 2 along the bands, each with
    batch norm and ReLU); the window's mean of their sum goes through a 1x1x1 convolution to
    `hidden` units and ReLU, then one excitation per kernel; a softmax over the two kernels weighs
    each channel's two maps (SKNet's selection).

    `shared_excitation`: the reference code applies ONE excitation convolution twice, so both
    kernels get the same logits and the softmax weighs each map 1/2 whatever the input; the paper
    has one excitation per kernel (the default here). Set it to reproduce the code's count.
    """

    def __init__(self, channels: int, hidden: int, shared_excitation: bool = False) -> None:
        super().__init__()
        self.spectral = spectral_stem(channels)
        self.spatial = spectral_stem(channels, (STEM_KERNEL, 3, 3), (0, 1, 1))
        self.squeeze = nn.Sequential(nn.Conv3d(channels, hidden, 1), nn.ReLU(inplace=True))
        self.excite_spatial = nn.Conv3d(hidden, channels, 1)
        self.excite_spectral = self.excite_spatial if shared_excitation else nn.Conv3d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectral, spatial = self.spectral(x), self.spatial(x)
        z = self.squeeze((spectral + spatial).mean(dim=(2, 3, 4), keepdim=True))
        weights = torch.softmax(torch.stack([self.excite_spatial(z), self.excite_spectral(z)]), dim=0)
        return spatial * weights[0] + spectral * weights[1]


class A2S2KResNet(Network):
    """A2S2K-ResNet over windows (N, 1, bands, patch, patch):

    - `SelectiveKernel` to `channels` maps (97 bands left of 200), its excitation `in_bands //
      reduction` wide (the reference sizes it by the bands, not the channels);
    - the spectral improved residual blocks: a starting block (conv, BN, ReLU, conv, BN, ECA,
      + x) and a middle block (BN, ReLU, conv, BN, ReLU, conv, ECA, + x), (7, 1, 1) kernels;
    - a convolution as deep as the bands left to `width` maps, turned into the band axis, and an
      unpadded (width, 3, 3) convolution to `channels` maps;
    - the spatial blocks, (1, 3, 3) kernels: a middle block and an ending block (the middle
      block, then BN and ReLU after the sum);
    - `trunk` ends with the average over the window; `head` (`classifier`): a Linear.

    With 200 bands, 7x7 windows, 16 classes and `shared_excitation=True` it has the reference's
    370,760 parameters; the default (the paper's two excitations) has 2,424 more. Windows of 3x3
    and up, 7 bands and up; window-only (padded convolutions, attention over the window).
    """

    reference = Reference(
        paper="Roy et al., IEEE TGRS 2021 (A2S2K-ResNet)",
        code="suvojit-0x55aa/A2S2K-ResNet A2S2KResNet/A2S2KResNet.py (S3KAIResNet)",
        settings={"in_bands": 200, "patch_size": 7, "num_classes": 16, "shared_excitation": True},
        params=370_760,
        counted="S3KAIResNet(200, 16, 2) with PARAM_KERNEL_SIZE=24 instantiated (torch 2.13): 370,856 "
                "parameters, 370,760 reached by forward (backward leaves the never-called bn2 of its "
                "two middle blocks, 96, without a gradient); the code's one excitation conv is "
                "shared_excitation=True",
    )

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, channels: int = 24,
                 width: int = 128, reduction: int = 2, shared_excitation: bool = False) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        self.stem = SelectiveKernel(channels, max(1, in_bands // reduction), shared_excitation)
        spectral, spatial = (STEM_KERNEL, 1, 1), (1, 3, 3)

        def unit(kernel: tuple[int, int, int], pre: bool, post: str | None = None) -> ResidualUnit:
            return ResidualUnit(channels, kernel, pre_activation=pre, attention=EfficientChannelAttention(),
                                post=post)

        self.spectral = nn.Sequential(unit(spectral, False), unit(spectral, True))
        self.transition = SpectralToSpatial(channels, stem_depth(in_bands), channels, width)
        self.spatial = nn.Sequential(unit(spatial, True), unit(spatial, True, "bn_relu"))
        self.classifier = nn.Linear(channels, num_classes)

    @classmethod
    def input_limits(cls, **net_kwargs: Any) -> tuple[int, int]:
        return STEM_KERNEL, 3

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, channels): the selected kernels, both residual stages, the window's mean."""
        return global_average(self.spatial(self.transition(self.spectral(self.stem(x)))))
