"""The model zoo: every network's shapes and gradients over several windows, the HybridSN
variants' parts and costs (the contract itself, walked over conf/model: tests/models/test_contract.py)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from hsi.models import HybridSN, HybridSNLite, HybridSNSE
from hsi.models.blocks import pool_window
from hsi.models.cost import model_cost
from hsi.models.zoo import network_configs, smallest_input
from hsi.run.config import CONFIG_DIR

NETWORKS = network_configs(CONFIG_DIR / "model")
SHAPES = [(30, 25, 16), (15, 9, 4), (20, 13, 7), (40, 11, 2)]  # bands, patch, classes
RECIPE = (30, 25, 16)  # bands, patch, classes
HYBRIDSN_PARAMS = 5_122_416


def build(name: str, bands: int, patch: int, classes: int, **overrides: object) -> nn.Module:
    """The network of conf/model/<name>.yaml for these shapes."""
    net_cfg = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net
    return instantiate(net_cfg, in_bands=bands, patch_size=patch, num_classes=classes, **overrides)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize(("bands", "patch", "classes"), SHAPES)
def test_logits_and_gradients_reach_every_parameter(name: str, bands: int, patch: int, classes: int) -> None:
    smallest = smallest_input(NETWORKS[name])
    if bands < smallest[0] or patch < smallest[1]:
        pytest.skip(f"{name} needs at least {smallest} (bands, window)")
    torch.manual_seed(0)
    net = build(name, bands, patch, classes)
    x = torch.randn(3, 1, bands, patch, patch)
    logits = net(x)
    assert logits.shape == (3, classes)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1])).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("pool", ["pooled", "flatten", "gdc", "avg"])
def test_lite_pools(pool: str) -> None:
    net = HybridSNLite(13, 9, 3, pool=pool)
    assert net(torch.randn(2, 1, 13, 9, 9)).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown pool"):
        HybridSNLite(13, 9, 3, pool="max")


def test_pooled_head_averages_3x3_neighbourhoods_at_half_resolution() -> None:
    pool, features = pool_window("pooled", 5, 17, flatten_channels=6)
    assert features == 6 * 9 * 9
    pool.eval()
    x = torch.randn(2, 5, 17, 17)
    reduced = pool[0](x)  # the 1x1 convolution, batch norm and activation
    out = pool(x)
    assert out.shape == (2, 6, 9, 9)
    torch.testing.assert_close(out[:, :, 4, 4], reduced[:, :, 7:10, 7:10].mean(dim=(2, 3)))
    # at the border the padding is not counted
    torch.testing.assert_close(out[:, :, 0, 0], reduced[:, :, :2, :2].mean(dim=(2, 3)))


def test_se_variant_is_hybridsn_plus_its_excitations() -> None:
    se = HybridSNSE(*RECIPE)
    # FC pairs c -> max(4, c // 4) -> c, with biases, over 8, 16, 32 (3-D) and 64 (2-D) channels
    extra = sum(2 * c * max(4, c // 4) + max(4, c // 4) + c for c in (8, 16, 32, 64))
    assert _count(se) == HYBRIDSN_PARAMS + extra
    assert sum(isinstance(m, nn.Linear) for m in se.features_3d.modules()) == 6
    only_2d = HybridSNSE(*RECIPE, se_after=["2d"], se_reduction=8)
    assert _count(only_2d) == HYBRIDSN_PARAMS + 2 * 64 * 8 + 8 + 64
    assert not HybridSNSE.dense
    with pytest.raises(ValueError, match="se_after"):
        HybridSNSE(*RECIPE, se_after=["3d_4"])


def test_se_variant_with_zeroed_excitation_matches_hybridsn_scaled() -> None:
    """With every excitation a constant 1/2 (zero weights and bias), SE only halves activations
    channel-wise; the 3-D and 2-D convolutions are HybridSN's own."""
    torch.manual_seed(0)
    base, se = HybridSN(15, 9, 3).eval(), HybridSNSE(15, 9, 3, se_after=["2d"]).eval()
    se.load_state_dict({**base.state_dict(), **{k: v for k, v in se.state_dict().items()
                                                if k.startswith("features_2d.3")}})
    with torch.no_grad():
        for p in se.features_2d[3].parameters():
            p.zero_()
        base.classifier[1].weight /= 2  # the same halving, folded into the first dense layer
    x = torch.randn(2, 1, 15, 9, 9)
    torch.testing.assert_close(se(x), base(x))


def _pointwise_parameters(net: nn.Module) -> int:
    return sum(m.weight.numel() for m in net.modules()
               if isinstance(m, nn.modules.conv._ConvNd) and all(k == 1 for k in m.kernel_size))


def test_width_multiplier_scales_channels() -> None:
    full, half = HybridSNLite(*RECIPE), HybridSNLite(*RECIPE, width=0.5)
    ratio = _pointwise_parameters(half) / _pointwise_parameters(full)
    assert 0.2 <= ratio <= 0.3
    assert half.features_3d[0][0].out_channels == 4 and full.features_3d[0][0].out_channels == 8
    assert model_cost(half, 30, 25)["macs"] < model_cost(full, 30, 25)["macs"] / 2


def test_lite_is_a_tenth_of_hybridsn() -> None:
    base = model_cost(HybridSN(*RECIPE), 30, 25)
    lite = model_cost(build("hybridsn_lite", *RECIPE), 30, 25)
    assert base["params"] == HYBRIDSN_PARAMS
    assert lite["params"] <= 0.1 * base["params"]
    assert lite["macs"] <= 0.1 * base["macs"]
