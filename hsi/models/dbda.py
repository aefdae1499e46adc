"""DBDA (Li et al., Remote Sensing 2020): a spectral and a spatial branch of 3-D dense blocks,
each ending in a self-attention block (channel attention, position attention), Mish activations."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hsi.models.contract import Network, Reference
from hsi.models.residual3d import REFERENCE_EPS, STEM_KERNEL, STEM_STRIDE, global_average, stem_depth


def norm_mish(channels: int) -> nn.Sequential:
    """BatchNorm3d (eps 1e-3, as the reference), Mish."""
    return nn.Sequential(nn.BatchNorm3d(channels, eps=REFERENCE_EPS), nn.Mish())


class DenseBlock3D(nn.Module):
    """DenseNet block: `layers` times (batch norm, Mish, a size-preserving conv to `growth` maps),
    each reading the block's input and every earlier layer's maps; returns them all concatenated
    (in_channels + layers * growth maps)."""

    def __init__(self, in_channels: int, growth: int, layers: int, kernel: tuple[int, int, int]) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel)
        widths = [in_channels + i * growth for i in range(layers)]
        self.norms = nn.ModuleList(norm_mish(w) for w in widths)
        self.convs = nn.ModuleList(nn.Conv3d(w, growth, kernel, padding=padding) for w in widths)
        self.out_channels = in_channels + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for norm, conv in zip(self.norms, self.convs):
            features.append(conv(norm(torch.cat(features, dim=1))))
        return torch.cat(features, dim=1)


class ChannelAttention(nn.Module):
    """DANet's channel attention (Fu et al., 2019): channel affinities from the flattened maps,
    turned so that the least similar channel weighs most, the maps re-mixed by them, scaled by
    `gamma` (starts at 0) and added to the input.

    The reference takes softmax(max - energy) over each row; the row's max is a constant shift,
    which softmax ignores, so this is softmax(-energy), the same numbers without a ReduceMax
    (whose opset-18 form onnxruntime's int8 shape inference cannot read)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        energy = flat @ flat.transpose(1, 2)
        attention = torch.softmax(-energy, dim=-1)
        return self.gamma * (attention @ flat).view_as(x) + x


class PositionAttention(nn.Module):
    """DANet's position attention over (N, C, 1, H, W) maps: 1x1 query and key projections to
    C // 8, position affinities softmaxed over the window, a 1x1 value projection re-mixed by
    them, scaled by `gamma` (starts at 0) and added to the input."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, channels // reduction, 1)
        self.key = nn.Conv2d(channels, channels // reduction, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = x.squeeze(2)
        query, key = self.query(maps).flatten(2), self.key(maps).flatten(2)
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)
        out = (self.value(maps).flatten(2) @ attention.transpose(1, 2)).view_as(maps)
        return (self.gamma * out + maps).unsqueeze(2)


class DBDA(Network):
    """Double-branch dual-attention network over windows (N, 1, bands, patch, patch), as
    DBDA/main.py trains it (`DBDA_network_MISH`):

    - spectral branch: a (7, 1, 1) convolution with stride 2 to 24 maps, a dense block of three
      (7, 1, 1) layers growing by 12 (60 maps), BN, Mish and a convolution as deep as the bands
      left to 60 maps, channel attention;
    - spatial branch: a convolution as deep as all bands to 24 maps, a dense block of three
      padded (1, 3, 3) layers growing by 12 (60 maps), position attention;
    - each attention block's output is multiplied element-wise by its input (the reference's
      `torch.mul` after each block), then BN, Mish, dropout `dropout` and the window's mean;
    - `trunk` ends with both branches' 60 features side by side; `head` (`classifier`): a Linear.

    With 200 bands, 9x9 windows and 16 classes it has 382,328 parameters, the reference's less
    its never-called `conv25` (19). Any window, 7 bands and up; window-only (padded convolutions,
    attention over the window).
    """

    reference = Reference(
        paper="Li et al., Remote Sensing 2020 (DBDA)",
        code="lironui/Double-Branch-Dual-Attention-Mechanism-Network global_module/network.py "
             "(DBDA_network_MISH, as DBDA/main.py builds it)",
        settings={"in_bands": 200, "patch_size": 9, "num_classes": 16},
        params=382_328,
        counted="DBDA_network_MISH(200, 16) instantiated (torch 2.13): 382,347 parameters, 382,328 "
                "reached by forward (backward leaves its unused conv25, a 3x3x2 Conv3d of 19, "
                "without a gradient)",
    )

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, channels: int = 24,
                 growth: int = 12, layers: int = 3, features: int = 60, dropout: float = 0.5) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        spectral_block = DenseBlock3D(channels, growth, layers, (STEM_KERNEL, 1, 1))
        spatial_block = DenseBlock3D(channels, growth, layers, (1, 3, 3))
        self.spectral = nn.Sequential(
            nn.Conv3d(1, channels, (STEM_KERNEL, 1, 1), stride=(STEM_STRIDE, 1, 1)), spectral_block,
            norm_mish(spectral_block.out_channels),
            nn.Conv3d(spectral_block.out_channels, features, (stem_depth(in_bands), 1, 1)))
        self.spatial = nn.Sequential(nn.Conv3d(1, channels, (in_bands, 1, 1)), spatial_block)
        self.channel_attention = ChannelAttention()
        self.position_attention = PositionAttention(spatial_block.out_channels)
        self.spectral_out = nn.Sequential(norm_mish(features), nn.Dropout(dropout))
        self.spatial_out = nn.Sequential(norm_mish(spatial_block.out_channels), nn.Dropout(dropout))
        self.classifier = nn.Linear(features + spatial_block.out_channels, num_classes)

    @classmethod
    def input_limits(cls, **net_kwargs: Any) -> tuple[int, int]:
        return STEM_KERNEL, 1

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, features + spatial maps): both branches, attended, averaged."""
        spectral = self.spectral(x)
        spectral = self.spectral_out(self.channel_attention(spectral) * spectral)
        spatial = self.spatial(x)
        spatial = self.spatial_out(self.position_attention(spatial) * spatial)
        return torch.cat([global_average(spectral), global_average(spatial)], dim=1)
