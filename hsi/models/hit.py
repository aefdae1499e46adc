"""HiT (Yang et al., IEEE TGRS 2022, "Hyperspectral image transformer classification networks"):
a spectral-adaptive 3-D convolution embedding, then four stages of Conv-Permutator blocks (a
Vision-Permutator-style transformer whose token mixer is depthwise 1x3 / 3x1 and pointwise
convolutions, reweighted per channel).

Written from the paper and its authors' code (xiachangxue/DeepHyperX vit_pytorch/hit.py and
models.py's "hit" entry, the source cogsys-tuebingen/hsi_benchmark names). The defaults are the
authors' size (stages of 4, 3, 14 and 3 blocks, widths 8 x spectral depth, 480, 512, 512, MLP
ratio 3, 15x15 windows): 59,286,357 parameters at Indian Pines' 200 bands and 16 classes in
their code, 53,492,805 here without the two layers their code builds and never uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError
from hsi.models.contract import Network, Reference
from hsi.models.ssftt import _check_positive


class DropPath(nn.Module):
    """Stochastic depth: in training, a residual branch is dropped for a whole sample with
    probability `p` (kept ones scaled by 1 / (1 - p))."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.p
        return x * keep / (1 - self.p)


class MeanOver(nn.Module):
    """The mean over `dims`, kept as size-1 axes (adaptive average pooling to 1, which the ONNX
    exporter translates for 3-D maps only this way)."""

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dims, keepdim=True)


class DynamicConv3d(nn.Module):
    """Spectral-adaptive 3-D convolution (the authors' `Dynamic_conv3d`): `kernels` candidate
    3x3x3 kernels mixed per sample by a softmax (temperature `temperature`) over a pooled MLP of
    the input, applied to the input rescaled per band by a sigmoid gate (a 3x1x1 convolution of
    the spatially pooled input, BN, ReLU, 1x1x1 convolution started at zero). No bias, so the
    mixed kernel's output is the attention-weighted sum of the candidates' outputs, which is how
    it is computed here (one convolution with every candidate, no per-sample groups)."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], kernels: int = 4,
                 temperature: float = 4.0) -> None:
        super().__init__()
        self.out_channels, self.kernels = out_channels, kernels
        self.stride, self.temperature = stride, temperature
        hidden = 4 * in_channels + 1 if in_channels != 3 else kernels
        self.attention = nn.Sequential(MeanOver(2, 3, 4), nn.Conv3d(in_channels, hidden, 1, bias=False),
                                       nn.ReLU(), nn.Conv3d(hidden, kernels, 1, bias=False), nn.Flatten())
        self.band_gate = nn.Sequential(MeanOver(3, 4),
                                       nn.Conv3d(in_channels, 4 * in_channels, (3, 1, 1), padding=(1, 0, 0)),
                                       nn.BatchNorm3d(4 * in_channels), nn.ReLU(),
                                       nn.Conv3d(4 * in_channels, in_channels, 1, bias=False), nn.Sigmoid())
        nn.init.zeros_(self.band_gate[4].weight)
        self.weight = nn.Parameter(torch.randn(kernels, out_channels, in_channels, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mix = (self.attention(x) / self.temperature).softmax(dim=1)                     # (N, K)
        gated = x * self.band_gate(x)
        out = F.conv3d(gated, self.weight.flatten(0, 1), stride=self.stride, padding=1)  # (N, K * out, ...)
        out = out.unflatten(1, (self.kernels, self.out_channels))
        return (out * mix[:, :, None, None, None, None]).sum(dim=1)


class ConvPermuteMixer(nn.Module):
    """The authors' `ConvPermuteMLP` over (N, H, W, C) tokens: a depthwise 1x3, a depthwise 3x1
    and a pointwise convolution of the map, weighted per channel by a softmax over the three of
    an MLP (C -> C / 4 -> 3C) of their pooled sum, a Linear. As in the authors' code the weighted
    (N, C, H, W) map is reshaped, not permuted, to (N, H, W, C) before that Linear."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.along_width = nn.Conv2d(dim, dim, (1, 3), padding=(0, 1), groups=dim, bias=False)
        self.along_height = nn.Conv2d(dim, dim, (3, 1), padding=(1, 0), groups=dim, bias=False)
        self.pointwise = nn.Conv2d(dim, dim, 1, bias=False)
        self.reweight = nn.Sequential(nn.Linear(dim, dim // 4), nn.GELU(), nn.Linear(dim // 4, 3 * dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        maps = x.permute(0, 3, 1, 2)
        branches = torch.stack([self.along_width(maps), self.along_height(maps), self.pointwise(maps)])
        weights = self.reweight(branches.sum(0).flatten(2).mean(2)).reshape(n, c, 3).permute(2, 0, 1)
        mixed = (branches * weights.softmax(dim=0)[..., None, None]).sum(0)
        return self.proj(mixed.reshape(n, h, w, c))


class PermutatorBlock(nn.Module):
    """x + DropPath(mixer(LN(x))), then x + DropPath(MLP(LN(x))) with a GELU MLP of `mlp_ratio` x dim."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.mixer = nn.LayerNorm(dim), ConvPermuteMixer(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Downsample(nn.Module):
    """A `stride` x `stride` convolution of stride `stride` between stages, over (N, H, W, C) tokens."""

    def __init__(self, in_dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _strided(size: int) -> int:
    """Output length of a 3-tap convolution, stride 2, padding 1."""
    return (size + 1) // 2


class HiT(Network):
    """HiT over windows (N, 1, bands, patch, patch) of all bands:

    - embedding: `DynamicConv3d` 1 -> 4 channels, stride 2 in bands and space, then 4 -> 8,
      stride 2 in bands; the 8 channels x ceil(ceil(bands / 2) / 2) bands become the first
      stage's token width on a ceil(patch / 2)-sided grid;
    - four stages of `layers[i]` `PermutatorBlock`s of widths (first, *widths), MLP ratios
      `mlp_ratios`, stochastic depth rising linearly to `drop_path`; between stages a 1x1
      convolution where the width changes, a 2x2 stride-2 one where `transitions[i]`;
    - LayerNorm, the mean over tokens, a Linear to the classes.

    `reference_unused=True` adds the two layers the authors' code builds but never uses (a 1x1
    convolution in every mixer and a Linear(368, classes)), so the count equals theirs. The
    mixers and the dynamic kernels see the whole window, so maps run window by window.
    """

    takes = "window"
    dense = False
    reference = Reference(
        paper="Yang et al., IEEE TGRS 2022 (HiT)",
        code="xiachangxue/DeepHyperX vit_pytorch/hit.py (HiT, mlp_fn=ConvPermuteMLP), models.py 'hit'",
        settings={"in_bands": 200, "patch_size": 15, "num_classes": 16, "reference_unused": True},
        params=59_286_357,
        counted="HiT([4, 3, 14, 3], img_size=15, in_chans=200, num_classes=16, embed_dims=[400, 480, 512, "
                "512], patch_size=3, transitions=[False, True, False, False], segment_dim=[8, 8, 4, 4], "
                "mlp_ratios=[3, 3, 3, 3]); 400 = 8 x 50 bands after the embedding (their comment's 480 is "
                "for another scene); timm stubbed (DropPath, trunc_normal_ hold no parameters)")

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 layers: Sequence[int] = (4, 3, 14, 3), widths: Sequence[int] = (480, 512, 512),
                 transitions: Sequence[bool] = (False, True, False, False),
                 mlp_ratios: Sequence[float] = (3, 3, 3, 3), drop_path: float = 0.1, kernels: int = 4,
                 temperature: float = 4.0, reference_unused: bool = False) -> None:
        super().__init__()
        layers, transitions, mlp_ratios = list(layers), list(transitions), list(mlp_ratios)
        _check_positive(kernels=kernels, **{f"layers[{i}]": v for i, v in enumerate(layers)},
                        **{f"widths[{i}]": v for i, v in enumerate(widths)})
        if not len(layers) == len(transitions) == len(mlp_ratios) == len(widths) + 1:
            raise ConfigError(f"model.net: layers, transitions and mlp_ratios need one entry per stage and "
                              f"widths one per stage after the first; got {len(layers)}, {len(transitions)}, "
                              f"{len(mlp_ratios)} and {len(widths)}")
        self.check_input(in_bands, patch_size, transitions=transitions)
        self.embedding = nn.ModuleList([DynamicConv3d(1, 4, (2, 2, 2), kernels, temperature),
                                        DynamicConv3d(4, 8, (2, 1, 1), kernels, temperature)])
        dims = [8 * _strided(_strided(in_bands)), *widths]
        total, stages = sum(layers), []
        for i, (depth, dim) in enumerate(zip(layers, dims)):
            start = sum(layers[:i])
            stages += [PermutatorBlock(dim, mlp_ratios[i], drop_path * (start + j) / max(total - 1, 1))
                       for j in range(depth)]
            if i < len(layers) - 1 and (transitions[i] or dim != dims[i + 1]):
                stages.append(Downsample(dim, dims[i + 1], 2 if transitions[i] else 1))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1])
        self.classifier = nn.Linear(dims[-1], num_classes)
        self.apply(_init_weights)
        if reference_unused:
            for module in self.modules():
                if isinstance(module, ConvPermuteMixer):
                    dim = module.proj.in_features
                    module.unused_conv = nn.Conv2d(dim, dim, 1, bias=False)
            self.unused_head = nn.Linear(368, num_classes)

    @classmethod
    def input_limits(cls, transitions: Sequence[bool] = (False, True, False, False),
                     **net_kwargs: Any) -> tuple[int, int]:
        """Each 2x2 transition halves the ceil(patch / 2)-sided grid, which must keep a pixel."""
        grid = 2 ** sum(bool(t) for t in transitions[:-1])
        return 1, 2 * grid - 1

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, p, p) -> (N, width): the tokens' mean after the last stage and LayerNorm."""
        for conv in self.embedding:
            x = conv(x)
        x = x.flatten(1, 2).permute(0, 2, 3, 1)                    # (N, h, w, 8 x bands')
        return self.norm(self.stages(x)).flatten(1, 2).mean(1)


def _init_weights(module: nn.Module) -> None:
    """The authors' initialisation: Linear weights truncated normal (std 0.02), biases zero."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
