"""MLP: fully connected layers over the centre pixel's spectrum, with an exact dense form.

DeepHS's MLP (cogsys-tuebingen/hsi_benchmark, classification/models/mlp.py) is the default: one
hidden layer of int(2/3 x bands) units, ReLU, a linear layer to the classes. `hidden` sets other
widths, e.g. DeepHyperX's `nn` baseline: [2048, 4096, 2048] with dropout 0.5.

The trunk crops the window's centre (patch_size // 2 pixels from every side) and applies the
hidden layers at every pixel left, so on a padded tile of a scene it is every pixel's hidden
features in place and dense inference applies (`hsi.models.dense`), as for `CNN1D`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.models.blocks import crop_to, head_activation
from hsi.models.contract import Network, Reference


def deephs_hidden(bands: int) -> int:
    """DeepHS's hidden width: int(2/3 x bands) (133 for 200 bands, 20 for 30)."""
    return max(1, int(2 / 3 * bands))


class PixelLayers(nn.Module):
    """Linear layers along the bands of every pixel: (N, 1, B, H, W) -> (N, C, H, W)."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1, 2).movedim(1, -1)).movedim(-1, 1)


class MLP(Network):
    """(Linear, activation, dropout) per entry of `hidden` on the centre pixel's spectrum, then a
    Linear to the classes. `hidden: null` is DeepHS's [int(2/3 x bands)].

    `trunk`: centre crop by patch_size // 2, then the hidden layers at every pixel left:
    (N, 1, B, H, W) -> (N, C, H - p + 1, W - p + 1); `head` (`classifier`): flatten and the
    last Linear.
    """

    takes = "spectrum"
    dense = True
    reference = Reference(
        paper="Frank, Varga and Zell, arXiv 2309.11122 (2023), the DeepHS benchmark's MLP (after "
              "Paoletti et al., ISPRS J. 2019)",
        code="cogsys-tuebingen/hsi_benchmark classification/models/mlp.py (MLP)",
        settings={"in_bands": 200, "patch_size": 1, "num_classes": 17},
        params=29_011,
        counted="MLP(200, 17) instantiated in torch (Indian Pines' 200 bands; 17 classes: DeepHS "
                "counts 'background' as a class), sum of p.numel() over parameters()")

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 hidden: Sequence[int] | None = None, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if patch_size < 1 or patch_size % 2 == 0:
            raise ConfigError(f"MLP reads the window's centre pixel, so data.patch_size must be odd; "
                              f"got {patch_size}.")
        self.check_input(in_bands, patch_size)
        widths = [deephs_hidden(in_bands)] if hidden is None else list(hidden)
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ConfigError(f"model.net.hidden={hidden!r}: give positive layer widths (or null: DeepHS's "
                              f"int(2/3 x bands)).")
        layers: list[nn.Module] = []
        width = in_bands
        for w in widths:
            layers += [nn.Linear(width, w), head_activation(act), nn.Dropout(dropout)]
            width = w
        self.margin = patch_size // 2
        self.features = PixelLayers(nn.Sequential(*layers))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, H, W) -> (N, C, H - 2m, W - 2m) with m = patch_size // 2."""
        m = self.margin
        return self.features(crop_to(x, (x.shape[-2] - 2 * m, x.shape[-1] - 2 * m)) if m else x)
