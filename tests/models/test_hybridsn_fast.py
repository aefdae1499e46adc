"""HybridSNFast (`model=hybridsn_fast`): shapes, gradients, dense == window inference, the width
multiplier, its blocks (per-pixel gate, fused block, grid-reading head) and its input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from hsi.data.sampling.patches import pad_cube
from hsi.data.scenes.synthetic import make_synthetic_scene
from hsi.models import HybridSN, HybridSNFast
from hsi.models.blocks import FusedBlock, GridLinear, PixelGate, crop_to
from hsi.models.cost import model_cost
from hsi.models.dense import DenseHead, supports_dense
from hsi.run.config import CONFIG_DIR
from hsi.run.inference import scene_logits
from tests.models.zoo_walk import randomise_batchnorm

RECIPE = (30, 25, 16)  # bands, patch, classes


def build(bands: int, patch: int, classes: int, **overrides: object) -> nn.Module:
    """The network of conf/model/hybridsn_fast.yaml for these shapes."""
    net_cfg = OmegaConf.load(CONFIG_DIR / "model" / "hybridsn_fast.yaml").net
    return instantiate(net_cfg, in_bands=bands, patch_size=patch, num_classes=classes, **overrides)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("bands", "patch", "classes"), [(30, 25, 16), (15, 5, 4), (20, 13, 7), (40, 11, 2)])
@pytest.mark.parametrize("overrides", [{}, {"pool": "flatten"}, {"pool": "avg"},
                                       {"stem": 16, "groups": 4, "expansion": 2.0}])
def test_logits_and_gradients_reach_every_parameter(bands: int, patch: int, classes: int,
                                                    overrides: dict) -> None:
    torch.manual_seed(0)
    net = build(bands, patch, classes, **overrides)
    x = torch.randn(3, 1, bands, patch, patch)
    logits = net(x)
    assert logits.shape == (3, classes)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1])).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize(("patch", "overrides"), [
    (5, {}), (9, {}), (25, {}),
    (7, {"pool": "flatten"}), (11, {"pool": "avg"}),
    (13, {"stem": 16, "groups": 4, "channels": [32, 32, 32]}),
    (7, {"channels_last": False, "width": 0.5}),
])
def test_dense_equals_window_on_synthetic(patch: int, overrides: dict) -> None:
    scene = make_synthetic_scene(height=21, width=17, bands=16)  # borders: every pixel is near one
    torch.manual_seed(0)
    net = build(16, patch, 6, **overrides)
    assert net.dense and supports_dense(net)
    randomise_batchnorm(net)
    net.eval()
    padded = pad_cube(scene.cube, patch)
    dense, used = scene_logits(net, padded, patch, "dense", tile_rows=7)
    window, _ = scene_logits(net, padded, patch, "window", batch_size=97)
    assert used == "dense" and dense.shape == window.shape == (6, *scene.cube.shape[:2])
    torch.testing.assert_close(dense, window, rtol=1e-4, atol=1e-4)
    assert torch.equal(dense.argmax(0), window.argmax(0))


def test_width_multiplier_scales_parameters() -> None:
    full, half = build(*RECIPE), build(*RECIPE, width=0.5)
    convs = [m for m in full.features.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 64
    assert next(m for m in half.features.modules() if isinstance(m, nn.Conv2d)).out_channels == 32

    def conv_params(net: nn.Module) -> int:
        return sum(_count(m) for m in net.features.modules() if isinstance(m, nn.Conv2d))

    # 3x3 convolutions from the bands scale by ~1/2, the 64 -> 64 ones by ~1/4
    assert 0.2 <= conv_params(half) / conv_params(full) <= 0.4
    assert _count(half) < 0.6 * _count(full)
    assert model_cost(half, 30, 25)["macs"] < model_cost(full, 30, 25)["macs"] / 2.5
    assert _count(build(*RECIPE, width=2.0)) > 1.5 * _count(full)


def test_cost_is_a_fraction_of_hybridsn() -> None:
    base = model_cost(HybridSN(*RECIPE), 30, 25)
    fast = model_cost(build(*RECIPE), 30, 25)
    assert fast["params"] <= 0.1 * base["params"]
    assert fast["macs"] <= 0.15 * base["macs"]


@pytest.mark.parametrize(("bands", "patch", "overrides", "message", "key"), [
    (30, 3, {}, "at least 5x5", "data.patch_size"),
    (30, 5, {"channels": [64, 64, 64]}, "at least 7x7", "data.patch_size"),
    (30, 7, {"kernel_size": 5}, "at least 9x9", "data.patch_size"),
])
def test_too_small_windows_are_refused(bands: int, patch: int, overrides: dict, message: str,
                                       key: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        HybridSNFast(bands, patch, 4, **overrides)
    assert key in str(error.value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"pool": "pooled_max"}, "unknown pool"),
    ({"groups": 5}, "groups=5"),
    ({"channels": []}, "at least one block"),
    ({"kernel_size": 4}, "must be odd"),
])
def test_bad_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HybridSNFast(30, 25, 16, **overrides)


def test_pixel_gate_is_local() -> None:
    """Changing one pixel changes the gate of that pixel only (squeeze-excitation would change all)."""
    torch.manual_seed(0)
    gate = PixelGate(8, reduction=2)
    x = torch.randn(1, 8, 5, 5)
    y = x.clone()
    y[..., 1, 3] += 5
    changed = (gate(x) - gate(y)).abs().sum(1)[0] > 0
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[1, 3] = True
    assert torch.equal(changed, expected)
    with torch.no_grad():  # zero weights, bias 3: hard-sigmoid(3) = 1, the identity
        gate.excite.weight.zero_()
        gate.excite.bias.fill_(3.0)
    torch.testing.assert_close(gate(x), x)


def test_fused_block_adds_the_centre_crop_of_its_input() -> None:
    block = FusedBlock(8, 8, 3, gate_reduction=None).eval()
    with torch.no_grad():  # the projection's batch norm outputs 0: only the shortcut remains
        block.project[1].weight.zero_()
        block.project[1].bias.zero_()
    x = torch.randn(2, 8, 7, 9)
    torch.testing.assert_close(block(x), x[..., 1:-1, 1:-1])
    assert not FusedBlock(8, 16, 3).residual
    assert crop_to(x, (3, 5)).shape == (2, 8, 3, 5)
    with pytest.raises(ValueError, match="centre-crop"):
        crop_to(x, (4, 5))


@pytest.mark.parametrize(("size", "stride"), [(7, 2), (6, 2), (9, 3), (1, 2)])
def test_grid_linear_is_a_linear_reading_every_stride_th_position(size: int, stride: int) -> None:
    torch.manual_seed(0)
    layer = GridLinear(3, size, stride, 5)
    assert isinstance(layer, nn.Linear) and layer.weight.shape == (5, 3 * size * size)
    grid = len(range(0, size, stride))
    assert _count(layer) == 5 * 3 * grid * grid + 5
    x = torch.randn(4, 3 * size * size)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
    off_grid = np.ones((size, size), dtype=bool)
    off_grid[::stride, ::stride] = False
    assert (layer.weight.view(5, 3, size, size)[:, :, torch.from_numpy(off_grid)] == 0).all()
    # dense inference turns it into a (size x size) convolution with the same logits
    head = DenseHead(nn.Sequential(nn.Flatten(), layer), (3, size, size))
    torch.testing.assert_close(head(x.view(4, 3, size, size)).flatten(1), layer(x))


def test_pooled_head_reads_a_3x3_average_at_every_second_position() -> None:
    net = build(*RECIPE).eval()
    pool, first = net.features[-1], net.classifier[1]
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 3 and pool.stride == 1
    # 25 - 2 x 2 (blocks) - 2 (pool) = 19 pixels a side, rows and columns 0, 2, ..., 18: 10 x 10
    assert isinstance(first, GridLinear) and (first.size, first.grid, first.channels) == (19, 10, 24)
    assert build(30, 5, 16).features[-1].kernel_size == 1  # a 1x1 map: nothing to average
