"""Building blocks: activations, squeeze-excitation, depthwise-separable and inverted-residual blocks,
and the smallest input of unpadded convolutions (the contract itself: tests/models/test_contract.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hsi.models.blocks import (
    DepthwiseSeparable,
    HSigmoid,
    HSwish,
    InvertedResidual,
    SqueezeExcite,
    activation,
    make_divisible,
    min_input_size,
)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_hard_activations_match_their_formulas() -> None:
    x = torch.linspace(-6, 6, 121)
    relu6 = torch.clamp(x + 3, 0, 6)
    torch.testing.assert_close(HSigmoid()(x), relu6 / 6)
    torch.testing.assert_close(HSwish()(x), x * relu6 / 6)
    assert HSigmoid()(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="unknown activation"):
        activation("gelu2")


@pytest.mark.parametrize("shape", [(2, 6, 5, 5), (2, 6, 4, 5, 5)])
@pytest.mark.parametrize("gate", ["sigmoid", "hsigmoid"])
def test_squeeze_excite_rescales_channels(shape: tuple[int, ...], gate: str) -> None:
    se = SqueezeExcite(6, reduction=2, gate=gate)
    bias = torch.linspace(-2, 2, 6)
    with torch.no_grad():
        se.excite.weight.zero_()
        se.excite.bias.copy_(bias)
    x = torch.randn(shape)
    scale = torch.sigmoid(bias) if gate == "sigmoid" else torch.clamp(bias + 3, 0, 6) / 6
    expected = x * scale.view(1, 6, *([1] * (len(shape) - 2)))
    torch.testing.assert_close(se(x), expected)


def test_squeeze_excite_gate_scale_two_starts_as_identity() -> None:
    se = SqueezeExcite(6, gate_scale=2.0)
    with torch.no_grad():  # excitation logits 0: sigmoid 0.5, scaled to exactly 1
        se.excite.weight.zero_()
        se.excite.bias.zero_()
    x = torch.randn(2, 6, 4, 5, 5)
    torch.testing.assert_close(se(x), x)
    assert SqueezeExcite(6)(x).abs().sum() < x.abs().sum()  # a plain sigmoid gate only shrinks


def test_squeeze_excite_depends_on_the_whole_map() -> None:
    torch.manual_seed(0)
    se = SqueezeExcite(4, reduction=2)
    x = torch.randn(1, 4, 3, 3)
    y = x.clone()
    y[..., 0, 0] += 5  # changing one pixel changes the scale of every pixel
    assert not torch.allclose(se(x)[..., 2, 2], se(y)[..., 2, 2])
    assert se.squeeze.out_features == 4  # max(min_hidden=4, 4 // 2)


@pytest.mark.parametrize(("dims", "kernel", "shape", "out_shape"), [
    (2, 3, (2, 6, 9, 9), (2, 10, 7, 7)),
    (3, (5, 3, 3), (2, 6, 9, 9, 9), (2, 10, 5, 7, 7)),
])
def test_depthwise_separable_parameters_and_shape(dims: int, kernel, shape, out_shape) -> None:
    block = DepthwiseSeparable(6, 10, kernel, dims=dims)
    k = 9 if dims == 2 else 5 * 3 * 3
    # depthwise: one k-kernel per channel, no bias; pointwise 6 -> 10; two BN affine pairs
    assert _count(block) == 6 * k + 2 * 6 + 6 * 10 + 2 * 10
    assert block(torch.randn(shape)).shape == out_shape
    assert block[0][0].groups == 6


@pytest.mark.parametrize(("dims", "shape"), [(2, (2, 8, 7, 7)), (3, (2, 8, 5, 7, 7))])
def test_inverted_residual_adds_its_input(dims: int, shape: tuple[int, ...]) -> None:
    block = InvertedResidual(8, 8, 3, expansion=2, dims=dims).eval()
    assert block.residual
    assert block.expand[0].out_channels == 16
    with torch.no_grad():
        block.project[1].weight.zero_()  # the projection's BN outputs its bias, zero
    x = torch.randn(shape)
    torch.testing.assert_close(block(x), x)


def test_inverted_residual_without_matching_shapes_has_no_shortcut() -> None:
    x = torch.randn(2, 8, 9, 9)
    strided = InvertedResidual(8, 8, 3, stride=2)
    wider = InvertedResidual(8, 12, 3)
    unpadded = InvertedResidual(8, 8, (5, 3, 3), padding=(0, 1, 1), dims=3)
    assert not (strided.residual or wider.residual or unpadded.residual)
    assert strided(x).shape == (2, 8, 5, 5) and wider(x).shape == (2, 12, 9, 9)
    assert unpadded(torch.randn(2, 8, 7, 9, 9)).shape == (2, 8, 3, 9, 9)
    assert isinstance(InvertedResidual(8, 8, expansion=1).expand, nn.Identity)
    assert isinstance(InvertedResidual(8, 8, se_reduction=None).se, nn.Identity)


def test_make_divisible_rounds_near_the_value() -> None:
    assert make_divisible(32 * 0.5, 8) == 16
    assert make_divisible(8 * 0.5, 8) == 8  # never below the divisor
    assert make_divisible(8 * 0.5, 4) == 4
    assert make_divisible(20, 8) == 24  # nearest multiple, rounding half up
    assert make_divisible(11, 8) == 16  # 8 would be more than 10% below
    assert make_divisible(100 * 0.75, 8) == 72


def test_min_input_size() -> None:
    assert min_input_size([7, 5, 3]) == 13
    assert min_input_size([3, 3, 3], [2, 2, 1]) == 15
    assert min_input_size([3] * 4) == 9
