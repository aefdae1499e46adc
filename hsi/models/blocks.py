"""Building blocks shared by the networks, each in 2-D or 3-D (`dims`): activations,
conv-BN-activation, squeeze-excitation, depthwise-separable and inverted-residual blocks, dense
heads and the smallest input of a stack of unpadded convolutions (`min_input_size`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError

Size = int | Sequence[int]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def conv_class(dims: int) -> type[nn.Module]:
    """nn.Conv2d or nn.Conv3d."""
    if dims not in _CONV:
        raise ConfigError(f"dims must be 2 or 3, got {dims}")
    return _CONV[dims]


def batch_norm_class(dims: int) -> type[nn.Module]:
    """nn.BatchNorm2d or nn.BatchNorm3d."""
    conv_class(dims)
    return _BATCH_NORM[dims]


def as_tuple(value: Size, dims: int) -> tuple[int, ...]:
    """An int repeated `dims` times, or a sequence of `dims` ints."""
    values = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(values) != dims:
        raise ConfigError(f"expected {dims} sizes, got {values}")
    return values


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never more than 10% below `value`
    (the rounding MobileNet applies after its width multiplier)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class HSigmoid(nn.Module):
    """Hard sigmoid: ReLU6(x + 3) / 6 (torch's fused kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x)


class HSwish(nn.Module):
    """Hard swish: x * ReLU6(x + 3) / 6 (torch's fused kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "hswish": HSwish, "hsigmoid": HSigmoid, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
}


def activation(name: str | None, table: dict[str, type[nn.Module]] | None = None) -> nn.Module:
    """An activation by name: relu, hswish, hsigmoid, sigmoid, identity (or None)."""
    table = _ACTIVATIONS if table is None else table
    if name is None:
        return nn.Identity()
    if name not in table:
        raise ConfigError(f"unknown activation {name!r}; choose one of {sorted(table)}")
    return table[name]()


class ConvBNAct(nn.Sequential):
    """Convolution (no bias), batch norm, activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size = 1, stride: Size = 1,
                 padding: Size = 0, groups: int = 1, dims: int = 2, act: str | None = "relu") -> None:
        super().__init__(
            conv_class(dims)(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                             groups=groups, bias=False),
            batch_norm_class(dims)(out_channels),
            activation(act),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-excitation (Hu et al., 2018) over (N, C, ...) maps of any dimension: global
    average pool, FC (C -> C / reduction), ReLU, FC (-> C), gate, channel-wise rescale.

    `gate_scale` multiplies the gate: 2 makes a sigmoid gate start near 1 instead of 0.5, so the
    block preserves the signal at initialisation, as NFNets (Brock et al., 2021) do in networks
    without batch norm.
    """

    def __init__(self, channels: int, reduction: int = 4, gate: str = "sigmoid", min_hidden: int = 4,
                 gate_scale: float = 1.0) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)
        self.gate = activation(gate)
        self.gate_scale = gate_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(2).mean(-1)
        w = self.gate(self.excite(F.relu(self.squeeze(s)))) * self.gate_scale
        return x * w.view(*w.shape, *([1] * (x.dim() - 2)))


POOLS = ("flatten", "pooled", "gdc", "avg")


def pool_window(kind: str, channels: int, size: int, flatten_channels: int = 8,
                act: str = "hswish") -> tuple[nn.Module, int]:
    """(module, features per window) turning a (N, channels, size, size) map into a dense head's input:

    - `flatten`: a 1x1 convolution to `flatten_channels` (BN, `act`) whose map the head flattens,
      keeping where in the window each feature is, as HybridSN's 18,496-wide flatten does;
    - `pooled`: the same 1x1 convolution, then a 3x3 average pool with stride 2 before the
      flatten: position kept at half resolution, and a window shifted by a pixel or two looks
      alike to the head (the neighbours of training pixels are what a random split tests);
    - `gdc`: global depthwise convolution (MobileFaceNet): a learned size x size weighting per
      channel, then batch norm;
    - `avg`: global average pooling.
    """
    if kind == "flatten":
        return ConvBNAct(channels, flatten_channels, 1, act=act), flatten_channels * size * size
    if kind == "pooled":
        return (nn.Sequential(ConvBNAct(channels, flatten_channels, 1, act=act),
                              nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)),
                flatten_channels * ((size + 1) // 2) ** 2)
    if kind == "gdc":
        return ConvBNAct(channels, channels, size, groups=channels, act=None), channels
    if kind == "avg":
        return nn.AdaptiveAvgPool2d(1), channels
    raise ConfigError(f"unknown pool {kind!r}; choose one of {POOLS}")


class DepthwiseSeparable(nn.Sequential):
    """Depthwise k x k (x k) convolution per channel, then a pointwise 1 x 1 convolution, each
    followed by batch norm and the activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size = 3, stride: Size = 1,
                 padding: Size = 0, dims: int = 2, act: str = "relu") -> None:
        super().__init__(
            ConvBNAct(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels,
                      dims=dims, act=act),
            ConvBNAct(in_channels, out_channels, 1, dims=dims, act=act),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: pointwise expansion by `expansion`, depthwise convolution, optional
    squeeze-excitation, linear pointwise projection; adds its input when the shapes match
    (stride 1, size-preserving padding, as many output channels as input channels)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size = 3, stride: Size = 1,
                 padding: Size | None = None, expansion: float = 2.0, se_reduction: int | None = 4,
                 dims: int = 2, act: str = "hswish", divisor: int = 4) -> None:
        super().__init__()
        kernel = as_tuple(kernel_size, dims)
        padding = tuple(k // 2 for k in kernel) if padding is None else as_tuple(padding, dims)
        stride = as_tuple(stride, dims)
        hidden = make_divisible(in_channels * expansion, divisor) if expansion != 1 else in_channels
        self.expand = (ConvBNAct(in_channels, hidden, 1, dims=dims, act=act)
                       if hidden != in_channels else nn.Identity())
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride, padding, groups=hidden, dims=dims, act=act)
        self.se = SqueezeExcite(hidden, se_reduction, gate="hsigmoid") if se_reduction else nn.Identity()
        self.project = ConvBNAct(hidden, out_channels, 1, dims=dims, act=None)
        self.residual = (in_channels == out_channels and all(s == 1 for s in stride)
                         and all(2 * p == k - 1 for p, k in zip(padding, kernel)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.residual else out


def linear_head(in_features: int, hidden: Sequence[int], num_classes: int, dropout: float = 0.0,
               act: str = "relu") -> nn.Sequential:
    """Flatten, then (Linear, Dropout, activation) per hidden width, then Linear to the classes."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.Dropout(dropout), activation(act)]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


def min_input_size(kernels: Sequence[int], strides: Sequence[int] | None = None) -> int:
    """Smallest input length that leaves at least one output through unpadded convolutions."""
    size = 1
    for k, s in reversed(list(zip(kernels, strides or [1] * len(kernels)))):
        size = (size - 1) * s + k
    return size


# -- blocks of the dense lite network (HybridSNFast) ---------------------------------
class PixelGate(nn.Module):
    """Channel attention computed at each position: a 1x1 convolution (C -> C / reduction), ReLU,
    a 1x1 convolution (-> C) and a hard-sigmoid gate rescale the channels of every pixel from
    that pixel's own features. Unlike squeeze-excitation nothing is pooled over the window, so a
    trunk holding it stays translation-equivariant (dense)."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 8,
                 gate: str = "hsigmoid") -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.excite = nn.Conv2d(hidden, channels, 1)
        self.gate = activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.excite(F.relu(self.squeeze(x))))


def crop_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The centre of `x`'s last len(size) axes, cropped to `size` (what an unpadded convolution
    keeps of its input: a shortcut around it adds this crop)."""
    index = [slice(None)] * (x.dim() - len(size))
    for have, want in zip(x.shape[-len(size):], size):
        if (have - want) % 2 or have < want:
            raise ValueError(f"cannot centre-crop {tuple(x.shape)} to {tuple(size)}")
        margin = (have - want) // 2
        index.append(slice(margin, have - margin))
    return x[tuple(index)]


class FusedBlock(nn.Module):
    """Unpadded fused inverted residual (EfficientNetV2's Fused-MBConv), 2-D: a full (or grouped)
    k x k convolution to `expansion` x the output channels (BN, activation), an optional per-pixel
    gate, a linear 1x1 projection (BN) and, when the channels match, the input's centre crop
    added as a shortcut. Full convolutions replace the depthwise + pointwise pair because they
    run near the CPU's peak where depthwise convolutions and their many small layers do not."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, expansion: float = 1.0,
                 groups: int = 1, gate_reduction: int | None = 4, act: str = "hswish",
                 divisor: int = 8) -> None:
        super().__init__()
        hidden = make_divisible(out_channels * expansion, divisor)
        self.conv = ConvBNAct(in_channels, hidden, kernel_size, groups=groups, act=act)
        self.gate = PixelGate(hidden, gate_reduction) if gate_reduction else nn.Identity()
        self.project = ConvBNAct(hidden, out_channels, 1, act=None)
        self.residual = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.gate(self.conv(x)))
        return out + crop_to(x, out.shape[-2:]) if self.residual else out


class GridLinear(nn.Linear):
    """A Linear over a flattened (channels, size, size) map that reads only every `stride`-th row
    and column (rows and columns 0, stride, 2 * stride, ...): the head of an average-pooled map
    subsampled at `stride`, without a strided step in the trunk.

    `weight` is the equivalent full (out, channels * size * size) weight, zero off the grid, so
    dense inference (hsi.models.dense) turns it into a (size x size) convolution like any Linear
    after a flatten; training multiplies only the grid's features (`grid_weight`).
    """

    def __init__(self, channels: int, size: int, stride: int, out_features: int, bias: bool = True) -> None:
        nn.Module.__init__(self)
        self.channels, self.size, self.stride = channels, size, stride
        self.grid = len(range(0, size, stride))
        self.in_features, self.out_features = channels * size * size, out_features
        self.grid_weight = nn.Parameter(torch.empty(out_features, channels * self.grid * self.grid))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation, with the grid's features as the fan-in."""
        bound = 1 / self.grid_weight.shape[1] ** 0.5
        nn.init.uniform_(self.grid_weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        s, g = self.stride, self.grid
        full = self.grid_weight.new_zeros(self.out_features, self.channels, self.size, self.size)
        full[:, :, ::s, ::s] = self.grid_weight.view(self.out_features, self.channels, g, g)
        return full.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, self.channels, self.size, self.size)[:, :, ::self.stride, ::self.stride]
        return F.linear(x.flatten(1), self.grid_weight, self.bias)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, size={self.size}, stride={self.stride}, "
                f"in_features={self.channels * self.grid ** 2} (of {self.in_features}), "
                f"out_features={self.out_features}, bias={self.bias is not None}")


_TORCH_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def head_activation(name: str | None) -> nn.Module:
    """`activation(name)` as torch's own module (nn.Hardswish, not HSwish: the same function),
    which dense inference accepts between the head's dense layers."""
    return activation(name, _TORCH_ACTIVATIONS)
