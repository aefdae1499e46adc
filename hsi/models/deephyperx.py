"""The reference networks of DeepHyperX (nshaud/DeepHyperX `models.py`): the 3-D CNNs of Ben
Hamida, Li, He, Lee and Chen, and Mou's recurrent network over the spectrum.

Written for hsi from the papers and from DeepHyperX's classes: the layer sizes, activations,
dropout and weight initialisations are theirs, so that each network has DeepHyperX's parameter
count at DeepHyperX's settings (`reference`, checked in tests/models/test_deephyperx.py). The
sizes DeepHyperX hard-codes for one input (its flatten width, found by a dummy forward) follow
here from the data's band count, window and class count. Hu's 1-D CNN is `hsi.models.spectral.CNN1D`.

The input is hsi's (N, 1, bands, patch, patch) window. Networks whose trunk is unpadded and
spatially unstrided declare `dense` (an exact dense form: hsi.models.dense); spectral strides and
paddings do not matter for that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hsi.models.blocks import min_input_size
from hsi.models.contract import Network, Reference

# (taps, stride, padding) of one convolution along the bands
Stage = tuple[int, int, int]
CODE = "nshaud/DeepHyperX models.py"
UNDEFINED = ("num_classes=17: DeepHyperX counts Indian Pines' 'undefined' label as a 17th output; "
             "measured by instantiating")


def spectral_length(bands: int, stages: Iterable[Stage]) -> int:
    """Bands left after convolutions along the spectrum (0 once a stage has nothing left)."""
    for taps, stride, padding in stages:
        bands = (bands + 2 * padding - taps) // stride + 1
        if bands < 1:
            return 0
    return bands


def fewest_bands(stages: Sequence[Stage]) -> int:
    """The smallest band count that leaves at least one band after `stages`."""
    bands = 1
    while spectral_length(bands, stages) < 1:
        bands += 1
    return bands


def odd_window(size: int) -> int:
    """The smallest odd window of at least `size` pixels (hsi's windows are odd)."""
    return size + 1 - size % 2


def initialise(net: nn.Module, init: Callable[[torch.Tensor], object],
               types: tuple[type[nn.Module], ...] = (nn.Conv3d, nn.Linear)) -> None:
    """`init` on the weights of every module of `types`, zero biases (DeepHyperX's weight_init)."""
    for module in net.modules():
        if isinstance(module, types):
            init(module.weight)
            nn.init.zeros_(module.bias)


def flat_features(trunk: Callable[[torch.Tensor], torch.Tensor], bands: int, patch_size: int) -> int:
    """Features per window after `trunk` (one forward of a zero window)."""
    with torch.no_grad():
        return trunk(torch.zeros(1, 1, bands, patch_size, patch_size)).flatten(1).shape[1]


class HamidaEtAl(Network):
    """Ben Hamida et al. (IEEE TGRS 2018, "3-D deep learning approach for remote sensing image
    classification"): a 3x3x3 convolution (20 kernels, ReLU), a spectral "pooling" convolution
    (3 taps, stride 2), the pair again with 35 kernels, two spectral convolutions (3 taps; 2 taps
    stride 2) and a linear layer to the classes. The spatial convolutions are unpadded, so the
    window shrinks 5 -> 1 and the trunk runs densely.

    DeepHyperX pads the first convolution for 3x3 windows only; this network needs 5x5 (the
    paper's and DeepHyperX's window) and refuses less.
    """

    dense = True
    SPECTRAL: ClassVar[list[Stage]] = [(3, 1, 0), (3, 2, 1), (3, 1, 1), (3, 2, 1), (3, 1, 1), (2, 2, 1)]
    reference = Reference(
        paper="Ben Hamida et al., IEEE TGRS 2018", code=f"{CODE} (HamidaEtAl)",
        settings={"in_bands": 200, "patch_size": 5, "num_classes": 17}, params=46_107,
        counted=f"DeepHyperX HamidaEtAl(200, 17, patch_size=5); {UNDEFINED}")

    @classmethod
    def input_limits(cls, **net_kwargs) -> tuple[int, int]:
        return fewest_bands(cls.SPECTRAL), odd_window(min_input_size([3, 3]))

    def __init__(self, in_bands: int, patch_size: int, num_classes: int) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        spectral = dict(stride=(2, 1, 1), padding=(1, 0, 0))
        self.features = nn.Sequential(
            nn.Conv3d(1, 20, 3), nn.ReLU(),
            nn.Conv3d(20, 20, (3, 1, 1), **spectral),
            nn.Conv3d(20, 35, 3, padding=(1, 0, 0)), nn.ReLU(),
            nn.Conv3d(35, 35, (3, 1, 1), **spectral),
            nn.Conv3d(35, 35, (3, 1, 1), padding=(1, 0, 0)), nn.ReLU(),
            nn.Conv3d(35, 35, (2, 1, 1), **spectral), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat_features(self.features, in_bands, patch_size), num_classes))
        initialise(self, nn.init.kaiming_normal_)


class LiEtAl(Network):
    """Li, Zhang and Shen (Remote Sensing 2017, "Spectral-spatial classification of hyperspectral
    imagery with 3D convolutional neural network"): two 3-D convolutions, 7x3x3 with `n_planes`
    kernels and 3x3x3 with twice as many (ReLU; padded by one band, unpadded in space), then a
    linear layer. DeepHyperX trains it with n_planes=16 (its class default is 2).
    """

    dense = True
    SPECTRAL: ClassVar[list[Stage]] = [(7, 1, 1), (3, 1, 1)]
    reference = Reference(
        paper="Li, Zhang and Shen, Remote Sensing 2017", code=f"{CODE} (LiEtAl)",
        settings={"in_bands": 200, "patch_size": 5, "num_classes": 17, "n_planes": 16}, params=121_521,
        counted=f"DeepHyperX LiEtAl(200, 17, n_planes=16, patch_size=5) as its get_model builds it; "
                f"{UNDEFINED}")

    @classmethod
    def input_limits(cls, **net_kwargs) -> tuple[int, int]:
        return fewest_bands(cls.SPECTRAL), odd_window(min_input_size([3, 3]))

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, n_planes: int = 16) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        self.features = nn.Sequential(
            nn.Conv3d(1, n_planes, (7, 3, 3), padding=(1, 0, 0)), nn.ReLU(),
            nn.Conv3d(n_planes, 2 * n_planes, 3, padding=(1, 0, 0)), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat_features(self.features, in_bands, patch_size), num_classes))
        initialise(self, nn.init.xavier_uniform_)


class MultiScaleSpectral(nn.Module):
    """He et al.'s multi-scale block: spectral convolutions of several tap counts (padded to
    keep the length) over the same input, summed, then ReLU."""

    def __init__(self, channels: int, taps: Sequence[int] = (1, 3, 5, 11)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv3d(channels, channels, (t, 1, 1), padding=(t // 2, 0, 0))
                                      for t in taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return F.relu(out)


class HeEtAl(Network):
    """He, Li and Chen (ICIP 2017, "Multi-scale 3D deep convolutional neural network for
    hyperspectral image classification"): an 11x3x3 convolution (16 kernels, spectral stride 3),
    two multi-scale blocks (1, 3, 5 and 11 taps summed), a 3x2x2 convolution, dropout 0.6 and a
    linear layer. Unpadded in space (7 -> 5 -> 4 pixels at DeepHyperX's 7x7), so dense.
    """

    dense = True
    SPECTRAL: ClassVar[list[Stage]] = [(11, 3, 0), (3, 1, 0)]
    reference = Reference(
        paper="He, Li and Chen, ICIP 2017", code=f"{CODE} (HeEtAl)",
        settings={"in_bands": 200, "patch_size": 7, "num_classes": 17}, params=284_897,
        counted=f"DeepHyperX HeEtAl(200, 17, patch_size=7); {UNDEFINED}")

    @classmethod
    def input_limits(cls, **net_kwargs) -> tuple[int, int]:
        return fewest_bands(cls.SPECTRAL), odd_window(min_input_size([3, 2]))

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, dropout: float = 0.6) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        self.features = nn.Sequential(
            nn.Conv3d(1, 16, (11, 3, 3), stride=(3, 1, 1)), nn.ReLU(),
            MultiScaleSpectral(16), MultiScaleSpectral(16),
            nn.Conv3d(16, 16, (3, 2, 2)), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(flat_features(self.features, in_bands, patch_size), num_classes))
        initialise(self, nn.init.kaiming_uniform_)


class ResidualPair(nn.Module):
    """Two 1x1 convolutions (ReLU between) added to their input, then ReLU (Lee and Kwon)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(channels, channels, 1)
        self.second = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.second(F.relu(self.first(x))))


class LeeEtAl(Network):
    """Lee and Kwon (IGARSS 2016, "Contextual deep CNN based hyperspectral classification"): an
    inception module (3x3 x all bands and 1x1 x all bands, 128 kernels each), local response
    normalisation, a 1x1 convolution to 128, two residual pairs of 1x1 convolutions, and three
    1x1 layers as the head (128, 128 with dropout 0.5, the classes).

    DeepHyperX pads the 3x3 convolution and classifies every pixel of the window (its loss
    covers the whole 5x5 patch); the centre pixel's logits read only its 3x3 neighbourhood, which
    no padding reaches for windows of 3x3 or more. This network computes exactly those: its
    trunk crops the window to that neighbourhood (patch_size // 2 - 1 pixels from every side)
    and runs unpadded, so on a scene tile it gives every pixel's features in place (dense), and
    training uses hsi's centre-pixel labels.
    """

    dense = True
    reference = Reference(
        paper="Lee and Kwon, IGARSS 2016", code=f"{CODE} (LeeEtAl)",
        settings={"in_bands": 200, "patch_size": 5, "num_classes": 17}, params=390_417,
        counted=f"DeepHyperX LeeEtAl(200, 17) (patch_size 5 in its get_model; the count does not "
                f"depend on it); {UNDEFINED}")

    @classmethod
    def input_limits(cls, **net_kwargs) -> tuple[int, int]:
        return 1, 3

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, width: int = 128,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        self.margin = patch_size // 2 - 1
        self.context = nn.Conv3d(1, width, (in_bands, 3, 3))
        self.spectral = nn.Conv3d(1, width, (in_bands, 1, 1))
        self.norm_inception = nn.LocalResponseNorm(2 * width)
        self.reduce = nn.Conv2d(2 * width, width, 1)
        self.norm_reduced = nn.LocalResponseNorm(width)
        self.residual = nn.Sequential(ResidualPair(width), ResidualPair(width))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, num_classes))
        initialise(self, nn.init.kaiming_uniform_, (nn.Conv3d,))  # DeepHyperX: its Conv3d only

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, H, W) -> (N, width, H - 2m - 2, W - 2m - 2), m = patch_size // 2 - 1."""
        m = self.margin
        if m:
            x = x[..., m:x.shape[-2] - m, m:x.shape[-1] - m]
        centre = x[..., 1:x.shape[-2] - 1, 1:x.shape[-1] - 1]
        x = torch.cat([self.context(x), self.spectral(centre)], dim=1).squeeze(2)
        x = self.reduce(F.relu(self.norm_inception(x)))
        return self.residual(F.relu(self.norm_reduced(x)))


class ChenEtAl(Network):
    """Chen et al. (IEEE TGRS 2016, "Deep feature extraction and classification of hyperspectral
    images based on convolutional neural networks"): three 32x4x4 3-D convolutions (`n_planes`
    kernels, ReLU, dropout 0.5), the first two followed by a 1x2x2 max pool, then a linear layer.
    The pools are strided in space, so there is no dense form. DeepHyperX's window is 27x27.
    """

    SPECTRAL: ClassVar[list[Stage]] = [(32, 1, 0)] * 3
    reference = Reference(
        paper="Chen et al., IEEE TGRS 2016", code=f"{CODE} (ChenEtAl)",
        settings={"in_bands": 200, "patch_size": 27, "num_classes": 17, "n_planes": 32}, params=1_123_281,
        counted=f"DeepHyperX ChenEtAl(200, 17, patch_size=27, n_planes=32); {UNDEFINED}")

    @classmethod
    def input_limits(cls, **net_kwargs) -> tuple[int, int]:
        return fewest_bands(cls.SPECTRAL), odd_window(min_input_size([4, 2, 4, 2, 4], [1, 2, 1, 2, 1]))

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, n_planes: int = 32,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        layers: list[nn.Module] = []
        for stage in range(3):
            layers += [nn.Conv3d(1 if stage == 0 else n_planes, n_planes, (32, 4, 4)), nn.ReLU()]
            layers += [nn.MaxPool3d((1, 2, 2))] if stage < 2 else []
            layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat_features(self.features, in_bands, patch_size), num_classes))
        initialise(self, lambda weight: nn.init.normal_(weight, std=0.001))


class MouEtAl(Network):
    """Mou, Ghamisi and Zhu (IEEE TGRS 2017, "Deep recurrent neural networks for hyperspectral
    image classification"): a GRU of `hidden` units reads the centre pixel's spectrum one band
    at a time; its outputs at every band, flattened, go through batch norm, tanh and a linear
    layer. DeepHyperX uses torch's GRU (not the paper's PRetanh variant) with torch's default
    initialisation (its weight_init is never applied), as here.

    Any window works (the centre pixel is read). No dense form is declared: a GRU state of
    hidden x bands values per pixel would make a scene tile's trunk map as large as its windows.
    """

    takes = "spectrum"
    reference = Reference(
        paper="Mou, Ghamisi and Zhu, IEEE TGRS 2017", code=f"{CODE} (MouEtAl)",
        settings={"in_bands": 200, "patch_size": 1, "num_classes": 17}, params=256_081,
        counted=f"DeepHyperX MouEtAl(200, 17); {UNDEFINED}")

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size)
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.BatchNorm1d(hidden * in_bands), nn.Tanh(),
            nn.Linear(hidden * in_bands, num_classes))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, B, H, W) -> (N, hidden, B): the GRU's output at every band of the centre pixel,
        hidden-major as DeepHyperX flattens it."""
        spectra = x[:, 0, :, x.shape[-2] // 2, x.shape[-1] // 2]
        out, _ = self.gru(spectra.unsqueeze(-1))
        return out.transpose(1, 2)
