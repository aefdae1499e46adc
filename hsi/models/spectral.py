"""CNN1D: a 1-D CNN over the centre pixel's spectrum (Hu et al., 2015), dense-capable.

The network reads nothing of the window but its centre pixel, so it works for any odd window,
1x1 included. Its trunk crops the window's centre (patch_size // 2 pixels from every side) and
then runs the spectral convolutions at every pixel left: on a window that is the centre pixel
alone; on a padded tile of a scene (rows + p - 1, cols + p - 1) it is every pixel whose window
lies in the tile, in place, so the trunk slides over a scene like an unpadded convolution and
dense inference applies (see hsi.models.dense).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.models.contract import Network, Reference

# activations dense inference accepts between the head's layers (torch's own modules)
CNN1D_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "hswish": nn.Hardswish, "sigmoid": nn.Sigmoid,
}


def hu_kernel_size(bands: int) -> int:
    """Hu et al.'s spectral kernel: about bands / 9, rounded down as their table has it (24 taps
    for Indian Pines' 220 bands, 11 for Pavia University's 103; 3 for 30 PCA bands). DeepHyperX's
    HuEtAl rounds up (23 taps at 200 bands, where this gives 22): `CNN1D.reference`."""
    return max(1, bands // 9)


def hu_pool_size(kernel_size: int) -> int:
    """Hu et al.'s max-pool size: ceil(kernel / 5) (5 for a kernel of 24, 1 (none) for 3)."""
    return max(1, math.ceil(kernel_size / 5))


def _activation(name: str) -> nn.Module:
    if name not in CNN1D_ACTIVATIONS:
        raise ConfigError(f"model.net.act: unknown activation {name!r}; choose one of "
                          f"{sorted(CNN1D_ACTIVATIONS)}")
    return CNN1D_ACTIVATIONS[name]()


def _positive(key: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"model.net.{key} must be a positive integer or null, got {value!r}")


class SpectralStack(nn.Module):
    """1-D convolutions over the spectrum of every pixel of (N, 1, bands, H, W): per stage a
    convolution along the bands (k taps, no padding), optional batch norm, the activation and a
    max pool along the bands. (N, 1, B, H, W) -> (N, C, D, H, W)."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, bands, h, w = x.shape
        spectra = x.permute(0, 3, 4, 1, 2).reshape(n * h * w, 1, bands)
        out = self.layers(spectra)  # (N * H * W, C, D)
        c, d = out.shape[1:]
        return out.reshape(n, h, w, c, d).permute(0, 3, 4, 1, 2)


def bands_needed(bands: int, stages: int, kernel_size: int | None, pool_size: int | None) -> int:
    """The fewest bands that leave at least one after `stages` convolutions (d - k + 1) and max
    pools (floor(d / pool)), with the kernel and pool Hu et al.'s rule gives for `bands` where null."""
    kernel = hu_kernel_size(bands) if kernel_size is None else kernel_size
    pool = hu_pool_size(kernel) if pool_size is None else pool_size
    need = 1
    for _ in range(stages):
        need = need * pool + kernel - 1
    return need


class CNN1D(Network):
    """1-D CNN over the centre pixel's spectrum (Hu et al., 2015, "Deep convolutional neural
    networks for hyperspectral image classification"): per entry of `channels` a convolution
    along the bands, the activation and a max pool; flatten; dense layers of `hidden` widths
    with the activation; a linear layer to the classes.

    Hu et al.'s network is the default: one convolution of 20 kernels of floor(bands / 9) taps
    (`kernel_size: null`), a max pool of ceil(kernel / 5) (`pool_size: null`), 100 hidden
    units, tanh, no batch norm, no dropout. With 30 PCA bands the kernel has 3 taps and the
    pool is 1 (none).

    `trunk`: centre crop by patch_size // 2, then the spectral stack at every pixel left:
    (N, 1, B, H, W) -> (N, C, D, H - p + 1, W - p + 1); `head` (`classifier`): flatten and the
    dense layers.

    `model=hu` (alias `model=cnn1d`). DeepHyperX's HuEtAl is this network with kernel_size =
    ceil(bands / 9) and its weights drawn from U(-0.05, 0.05) (here torch's default).
    """

    takes = "spectrum"
    dense = True
    reference = Reference(
        paper="Hu et al., Journal of Sensors 2015", code="nshaud/DeepHyperX models.py (HuEtAl)",
        settings={"in_bands": 200, "patch_size": 1, "num_classes": 17, "kernel_size": 23}, params=72_297,
        counted="DeepHyperX HuEtAl(200, 17): kernel ceil(200 / 9) = 23, pool ceil(23 / 5) = 5 (hsi's "
                "default floor(bands / 9) = 22 taps gives 72,277); num_classes=17: DeepHyperX counts "
                "Indian Pines' 'undefined' label as a 17th output; measured by instantiating")

    @classmethod
    def input_limits(cls, channels: Sequence[int] = (20,), kernel_size: int | None = None,
                     pool_size: int | None = None, **net_kwargs: object) -> tuple[int, int]:
        """The fewest bands the spectral stages leave one band of (with a null kernel_size, the
        fewest for which Hu et al.'s kernel rule does); any window."""
        bands = 1
        while bands_needed(bands, len(channels), kernel_size, pool_size) > bands:
            bands += 1
        return bands, 1

    def __init__(self, in_bands: int, patch_size: int, num_classes: int,
                 channels: Sequence[int] = (20,), kernel_size: int | None = None,
                 pool_size: int | None = None, hidden: Sequence[int] = (100,), act: str = "tanh",
                 batch_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if patch_size < 1 or patch_size % 2 == 0:
            raise ConfigError(f"CNN1D reads the window's centre pixel, so data.patch_size must be odd; "
                              f"got {patch_size}.")
        if not channels:
            raise ConfigError("model.net.channels: at least one convolution")
        _positive("kernel_size", kernel_size)
        _positive("pool_size", pool_size)
        self.check_input(in_bands, patch_size, channels=channels, kernel_size=kernel_size,
                         pool_size=pool_size)
        kernel = hu_kernel_size(in_bands) if kernel_size is None else kernel_size
        pool = hu_pool_size(kernel) if pool_size is None else pool_size
        if bands_needed(in_bands, len(channels), kernel_size, pool_size) > in_bands:
            raise ConfigError(f"CNN1D's {len(channels)} spectral stages of {kernel} taps (pool {pool}) leave "
                              f"no band of {in_bands}: lower model.net.kernel_size or give fewer "
                              f"model.net.channels.")
        self.margin = patch_size // 2
        layers: list[nn.Module] = []
        c_in, depth = 1, in_bands
        for c_out in channels:
            layers.append(nn.Conv1d(c_in, c_out, kernel, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(c_out))
            layers.append(_activation(act))
            depth = depth - kernel + 1
            if pool > 1:
                layers.append(nn.MaxPool1d(pool))
                depth = depth // pool
            c_in = c_out
        self.features = SpectralStack(nn.Sequential(*layers))
        self.feature_shape = (c_in, depth)
        head: list[nn.Module] = [nn.Flatten()]
        width = c_in * depth
        for h in hidden:
            head += [nn.Linear(width, h), nn.Dropout(dropout), _activation(act)]
            width = h
        self.classifier = nn.Sequential(*head, nn.Linear(width, num_classes))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, H, W) -> (N, C, D, H - 2m, W - 2m) with m = patch_size // 2: the spectral
        features of every pixel at least m pixels inside the input."""
        m = self.margin
        if m:
            x = x[..., m:x.shape[-2] - m, m:x.shape[-1] - m]
        return self.features(x)
