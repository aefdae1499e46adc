"""MambaHSI (Li et al., IEEE TGRS 2024, "MambaHSI: Spatial-spectral Mamba for hyperspectral image
classification"): a 1x1 embedding, three spatial-spectral Mamba blocks with 2x2 average pools
between them, a 1x1 classifier giving per-pixel logits.

Written from the paper and its authors' code (li-yapeng/MambaHSI, model/MambaHSI.py,
train_MambaHSI.py); the Mamba blocks are hsi.models.ssm's (mamba-ssm's parameterisation). The
defaults are the authors' (hidden 128, 4 spectral tokens, 4 norm groups, learned fusion): at
Pavia University's 103 bands and 9 classes it has 412,239 parameters.

The authors classify the whole scene in one forward pass and compute the loss on its training
pixels. Here it is a window classifier: each window is the image, and its logit is the per-pixel
map's value at the window's centre (the map upsampled bilinearly with aligned corners, as the
authors' loss upsamples it, sampled at the centre).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsi.models.contract import Network, Reference
from hsi.models.ssftt import _check_positive
from hsi.models.ssm import Mamba


def _norm_act(groups: int, channels: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU())


class SpatialMamba(nn.Module):
    """A Mamba over the pixels of each window in row-major order (one sequence per window; the
    authors' code, made for one image per batch, chains a batch's images into one sequence),
    group norm and SiLU, plus the input."""

    def __init__(self, channels: int, groups: int, scan: str) -> None:
        super().__init__()
        self.mamba = Mamba(channels, scan=scan)
        self.proj = _norm_act(groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        seq = self.mamba(x.flatten(2).transpose(1, 2))                   # (N, H * W, C)
        return x + self.proj(seq.transpose(1, 2).reshape(n, c, h, w))


class SpectralMamba(nn.Module):
    """Each pixel's features (zero-padded to `tokens` x ceil(C / tokens)) cut into `tokens`
    groups, a Mamba over the groups, group norm and SiLU, plus the input."""

    def __init__(self, channels: int, tokens: int, groups: int, scan: str) -> None:
        super().__init__()
        self.tokens, self.width = tokens, math.ceil(channels / tokens)
        self.mamba = Mamba(self.width, scan=scan)
        self.proj = _norm_act(groups, tokens * self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        padded = F.pad(x, (0, 0, 0, 0, 0, self.tokens * self.width - c))
        seq = padded.permute(0, 2, 3, 1).reshape(n * h * w, self.tokens, self.width)
        out = self.mamba(seq).reshape(n, h, w, -1).permute(0, 3, 1, 2)
        return x + self.proj(out)


class SpatialSpectralMamba(nn.Module):
    """The spatial and the spectral Mamba side by side, fused by softmax-normalised learned
    weights (equal at the start), plus the input."""

    def __init__(self, channels: int, tokens: int, groups: int, scan: str) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(2) / 2)
        self.spatial = SpatialMamba(channels, groups, scan)
        self.spectral = SpectralMamba(channels, tokens, groups, scan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.weights.softmax(dim=0)
        return x + weights[0] * self.spatial(x) + weights[1] * self.spectral(x)


class CentreLogits(nn.Module):
    """(N, K, h, w) per-pixel logits -> (N, K): the bilinear, corner-aligned upsampling of the map
    to the window's size read at its centre pixel, i.e. the map's value at its own centre (the
    mean of the middle two rows / columns where h or w is even)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return x[..., (h - 1) // 2:h // 2 + 1, (w - 1) // 2:w // 2 + 1].mean(dim=(-2, -1))


class MambaHSI(Network):
    """MambaHSI over windows (N, 1, bands, patch, patch):

    - embedding: a 1x1 convolution to `hidden` channels, group norm (`groups`), SiLU;
    - three spatial-spectral Mamba blocks (`SpatialSpectralMamba`, `tokens` spectral tokens),
      a 2x2 average pool (stride 2) after the first two;
    - head: a 1x1 convolution to 128 channels, group norm, SiLU, a 1x1 convolution to the classes,
      the centre of the (patch // 4)-sized map (`CentreLogits`).

    Every Mamba scans its whole window and group norm pools over it, so maps run window by window.
    `scan`: auto (mamba-ssm's CUDA kernel where installed and on a CUDA device, else PyTorch) |
    torch | cuda.
    """

    takes = "window"
    dense = False
    reference = Reference(
        paper="Li et al., IEEE TGRS 2024 (MambaHSI)",
        code="li-yapeng/MambaHSI model/MambaHSI.py (MambaHSI), with state-spaces/mamba's Mamba",
        settings={"in_bands": 103, "patch_size": 5, "num_classes": 9, "hidden": 128, "tokens": 4,
                  "groups": 4},
        params=412_239,
        counted="MambaHSI(in_channels=103, num_classes=9, hidden_dim=128), train_MambaHSI.py's Pavia "
                "University model (mamba_type='both', token_num=4, group_num=4, use_att=True); the count "
                "does not depend on the image size")

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, hidden: int = 128, tokens: int = 4,
                 groups: int = 4, head_hidden: int = 128, scan: str = "auto") -> None:
        super().__init__()
        _check_positive(hidden=hidden, tokens=tokens, groups=groups, head_hidden=head_hidden)
        self.check_input(in_bands, patch_size)
        self.embedding = nn.Sequential(nn.Conv2d(in_bands, hidden, 1), *_norm_act(groups, hidden))
        self.blocks = nn.Sequential(SpatialSpectralMamba(hidden, tokens, groups, scan), nn.AvgPool2d(2),
                                    SpatialSpectralMamba(hidden, tokens, groups, scan), nn.AvgPool2d(2),
                                    SpatialSpectralMamba(hidden, tokens, groups, scan))
        self.classifier = nn.Sequential(nn.Conv2d(hidden, head_hidden, 1), *_norm_act(groups, head_hidden),
                                        nn.Conv2d(head_hidden, num_classes, 1), CentreLogits())

    @classmethod
    def input_limits(cls, **net_kwargs: Any) -> tuple[int, int]:
        return 1, 5  # two 2x2 pools leave one pixel of an odd window from 5x5 on

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, hidden, p // 4, p // 4): the map after the Mamba blocks."""
        return self.blocks(self.embedding(x.squeeze(1)))
