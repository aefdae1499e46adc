"""Blocks shared by the 3-D residual networks SSRN (hsi.models.ssrn) and A2S2K-ResNet
(hsi.models.a2s2k), over windows laid out (N, channels, bands, H, W):

- `spectral_stem`: a (7, 1, 1) convolution with stride 2 along the bands, batch norm, ReLU;
- `ResidualUnit`: two size-preserving convolutions of one kernel around an identity shortcut,
  post-activation (SSRN; A2S2K's starting block) or pre-activation (A2S2K's middle and ending blocks);
- `SpectralToSpatial`: a convolution as deep as the bands left collapses them into `width` maps,
  which become the band axis of a single channel for an unpadded (width, 3, 3) convolution;
- `global_average`: the mean over bands and positions, (N, C, D, H, W) -> (N, C).

The batch norms' epsilons are the reference code's (1e-3 where it says so, torch's 1e-5 inside
the residual units), so trained statistics carry the same meaning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError

STEM_KERNEL, STEM_STRIDE = 7, 2
REFERENCE_EPS = 1e-3  # the references' BatchNorm3d(..., eps=0.001) outside the residual units
POST = ("relu", "bn_relu", None)


def stem_depth(bands: int) -> int:
    """Bands left after `spectral_stem`: (bands - 7) // 2 + 1."""
    return (bands - STEM_KERNEL) // STEM_STRIDE + 1


def spectral_stem(channels: int, kernel: tuple[int, int, int] = (STEM_KERNEL, 1, 1),
                  padding: tuple[int, int, int] = (0, 0, 0)) -> nn.Sequential:
    """Conv3d(1 -> channels, `kernel`, stride 2 along the bands), batch norm, ReLU."""
    return nn.Sequential(nn.Conv3d(1, channels, kernel, stride=(STEM_STRIDE, 1, 1), padding=padding),
                         nn.BatchNorm3d(channels, eps=REFERENCE_EPS), nn.ReLU(inplace=True))


class ResidualUnit(nn.Module):
    """x + body(x), then `post` (ReLU, batch norm and ReLU, or nothing). The body: [batch norm,
    ReLU if `pre_activation`], conv, ReLU, batch norm, ReLU, conv, [batch norm unless
    `pre_activation`], `attention`. Both convolutions keep the shape (`kernel` // 2 padding).

    The ReLU straight after the first convolution (before its batch norm) is the reference
    code's: both PyTorch references wrap that convolution with a ReLU and apply batch norm and
    another ReLU after it.
    """

    def __init__(self, channels: int, kernel: tuple[int, int, int], pre_activation: bool = False,
                 attention: nn.Module | None = None, post: str | None = "relu") -> None:
        super().__init__()
        if post not in POST:
            raise ConfigError(f"ResidualUnit post={post!r}: choose one of {POST}")
        padding = tuple(k // 2 for k in kernel)
        self.pre = (nn.Sequential(nn.BatchNorm3d(channels), nn.ReLU(inplace=True)) if pre_activation
                    else nn.Identity())
        self.conv1 = nn.Sequential(nn.Conv3d(channels, channels, kernel, padding=padding),
                                   nn.ReLU(inplace=True))
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, kernel, padding=padding)
        self.bn2 = nn.Identity() if pre_activation else nn.BatchNorm3d(channels)
        self.attention = attention if attention is not None else nn.Identity()
        self.post = {"relu": nn.ReLU(inplace=True), None: nn.Identity(),
                     "bn_relu": nn.Sequential(nn.BatchNorm3d(channels), nn.ReLU(inplace=True))}[post]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.pre(x))
        out = self.conv2(F.relu(self.bn1(out)))
        return self.post(self.attention(self.bn2(out)) + x)


class SpectralToSpatial(nn.Module):
    """(N, C, depth, H, W) -> (N, out_channels, 1, H - 2, W - 2): Conv3d(C -> width, (depth, 1, 1)),
    batch norm, ReLU; the `width` maps become the band axis of one channel; Conv3d(1 ->
    out_channels, (width, 3, 3)), unpadded, batch norm, ReLU."""

    def __init__(self, channels: int, depth: int, out_channels: int, width: int = 128) -> None:
        super().__init__()
        self.collapse = nn.Sequential(nn.Conv3d(channels, width, (depth, 1, 1)),
                                      nn.BatchNorm3d(width, eps=REFERENCE_EPS), nn.ReLU(inplace=True))
        self.spatial = nn.Sequential(nn.Conv3d(1, out_channels, (width, 3, 3)),
                                     nn.BatchNorm3d(out_channels, eps=REFERENCE_EPS), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.collapse(x).transpose(1, 2))


def global_average(x: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) -> (N, C): the mean over every axis after the channels."""
    return x.flatten(2).mean(-1)
