"""GAHT (Mei et al., IEEE TGRS 2022, "Hyperspectral image classification using group-aware
hierarchical transformer"): three stages, each a grouped 3x3 convolution over the window (the
group-aware pixel embedding) then transformer blocks over its pixels, the widths falling from
stage to stage; the mean over pixels, a Linear.

Written from the paper and its authors' code (MeiShaohui/Group-Aware-Hierarchical-Transformer,
models/proposed.py); the defaults are its Salinas model (widths 256, 128, 64, heads 8, 4, 2,
16 groups, depths 2, 1, 1, MLP ratio 1): 972,624 parameters at Salinas' 204 bands, 7x7 windows
and 16 classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError
from hsi.models.contract import Network, Reference
from hsi.models.ssftt import EncoderBlock, _check_positive


class GroupedPixelEmbedding(nn.Sequential):
    """A 3x3 convolution (padding 1, so every pixel of the window stays) in `groups` groups, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=1, groups=groups),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class GAHTStage(nn.Module):
    """(N, C, p, p) -> (N, p * p, width): the grouped embedding, `depth` pre-norm encoder blocks
    over the pixels (`heads` heads, unscaled dot products as in the authors' code, GELU MLP of
    `mlp_ratio` x width, no dropout), LayerNorm."""

    def __init__(self, in_channels: int, width: int, groups: int, heads: int, depth: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.embedding = GroupedPixelEmbedding(in_channels, width, groups)
        self.blocks = nn.Sequential(*[EncoderBlock(width, heads, int(width * mlp_ratio), 0.0, scaled=False)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.embedding(x).flatten(2).transpose(1, 2)))


class GAHT(Network):
    """GAHT over windows (N, 1, bands, patch, patch) of all bands:

    - the bands padded (replicating the last) to a multiple of `groups[0]`;
    - stages of widths `widths`, `groups` groups in their embeddings, `heads` heads and `depths`
      blocks (`GAHTStage`); each stage's pixels are the next one's (p x p) map;
    - the mean over the last stage's pixels, a Linear to the classes.

    Any window works (the embeddings keep its size); attention spans the window, so maps run
    window by window. Each width must be divisible by its stage's heads and groups, the bands'
    groups by the first stage's.
    """

    takes = "window"
    dense = False
    reference = Reference(
        paper="Mei et al., IEEE TGRS 2022 (GAHT)",
        code="MeiShaohui/Group-Aware-Hierarchical-Transformer models/proposed.py (proposed('sa', 7))",
        settings={"in_bands": 204, "patch_size": 7, "num_classes": 16},
        params=972_624,
        counted="MyTransformer(img_size=7, in_chans=204, num_classes=16, n_groups=[16, 16, 16], "
                "depths=[2, 1, 1]), the Salinas model main.py trains (--patch_size 7); the count does "
                "not depend on the window")

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 widths: Sequence[int] = (256, 128, 64), groups: Sequence[int] = (16, 16, 16),
                 heads: Sequence[int] = (8, 4, 2), depths: Sequence[int] = (2, 1, 1),
                 mlp_ratios: Sequence[float] = (1, 1, 1)) -> None:
        super().__init__()
        widths, groups, heads, depths = list(widths), list(groups), list(heads), list(depths)
        if not len(widths) == len(groups) == len(heads) == len(depths) == len(mlp_ratios):
            raise ConfigError("model.net: widths, groups, heads, depths and mlp_ratios need one entry "
                              "per stage")
        for key, values in {"widths": widths, "groups": groups, "heads": heads, "depths": depths}.items():
            _check_positive(**{f"{key}[{i}]": v for i, v in enumerate(values)})
        for i, (width, group, head) in enumerate(zip(widths, groups, heads)):
            if width % group or width % head or (i and widths[i - 1] % group):
                raise ConfigError(f"model.net: stage {i + 1}'s width {width} (and its input's channels) must "
                                  f"be divisible by its groups ({group}) and heads ({head})")
        self.check_input(in_bands, patch_size)
        self.padded_bands = math.ceil(in_bands / groups[0]) * groups[0]
        inputs = [self.padded_bands, *widths[:-1]]
        settings = zip(inputs, widths, groups, heads, depths, mlp_ratios)
        self.stages = nn.ModuleList(GAHTStage(*stage) for stage in settings)
        self.classifier = nn.Linear(widths[-1], num_classes)

    @classmethod
    def input_limits(cls, **net_kwargs: Any) -> tuple[int, int]:
        return 1, 1

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, width): the mean of the last stage's pixels."""
        n, _, bands, h, w = x.shape
        x = F.pad(x, (0, 0, 0, 0, 0, self.padded_bands - bands), mode="replicate").squeeze(1)
        for stage in self.stages[:-1]:
            x = stage(x).transpose(1, 2).reshape(n, -1, h, w)
        return self.stages[-1](x).mean(dim=1)
