"""Transformers and state-space networks (issue 32): shapes at the smallest input and at the
reference's settings, the reference's parameter count, a training step, the dense refusal, ONNX
export, and each network's own pieces (band groups, fusion, the selective scan)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from hsi.errors import ConfigError
from hsi.models.dense import check_eval_path, supports_dense
from hsi.models.spectralformer import SpectralFormer, band_groups
from hsi.run.config import CONFIG_DIR

NETWORKS = ["spectralformer"]


def net_config(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net)


def network_class(name: str) -> type:
    module, _, cls = net_config(name)["_target_"].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def build(name: str, bands: int, patch: int, classes: int, **overrides: object) -> nn.Module:
    """The network of conf/model/<name>.yaml for these shapes."""
    return instantiate({**net_config(name), **overrides}, in_bands=bands, patch_size=patch,
                       num_classes=classes)


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def smallest(name: str) -> tuple[int, int]:
    """The smallest (bands, window) the network takes with its yaml's kwargs, at least 2 bands."""
    kwargs = {k: v for k, v in net_config(name).items() if k != "_target_"}
    bands, patch = network_class(name).input_limits(**kwargs)
    return max(bands, 2), patch


@pytest.mark.parametrize("name", NETWORKS)
def test_reference_parameter_count_is_the_reference_codes(name: str) -> None:
    reference = network_class(name).reference
    settings = dict(reference.settings)
    shapes = settings.pop("in_bands"), settings.pop("patch_size"), settings.pop("num_classes")
    net = instantiate({"_target_": net_config(name)["_target_"], **settings}, in_bands=shapes[0],
                      patch_size=shapes[1], num_classes=shapes[2])
    assert count(net) == reference.params


@pytest.mark.parametrize("name", NETWORKS)
def test_logits_at_the_smallest_input_and_a_training_step(name: str) -> None:
    torch.manual_seed(0)
    bands, patch = smallest(name)
    net = build(name, bands, patch, 3)
    x = torch.randn(4, 1, bands, patch, patch)
    logits = net(x)
    assert logits.shape == (4, 3)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 1])).backward()
    bad = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad


@pytest.mark.parametrize("name", NETWORKS)
def test_below_the_smallest_input_is_refused_naming_the_key(name: str) -> None:
    bands, patch = smallest(name)
    if patch > 1:
        with pytest.raises(ConfigError, match="data.patch_size"):
            build(name, bands, patch - 2, 3)


@pytest.mark.parametrize("name", NETWORKS)
def test_declared_not_dense_and_dense_evaluation_is_refused(name: str) -> None:
    bands, patch = smallest(name)
    net = build(name, bands, patch, 3)
    assert network_class(name).dense is False and not supports_dense(net)
    with pytest.raises(ConfigError, match="eval_path=window"):
        check_eval_path(net, "dense")


@pytest.mark.parametrize("name", NETWORKS)
def test_window_graph_exports_to_onnx_and_matches_pytorch(name: str, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from hsi.deploy.graphs import OPSET, export_graph

    torch.manual_seed(0)
    bands, patch = max(smallest(name)[0], 12), max(smallest(name)[1], 5)
    net = build(name, bands, patch, 4).eval()
    x = torch.randn(6, 1, bands, patch, patch)
    path = tmp_path / "model.onnx"
    export_graph(net, x[:5], {0: torch.export.Dim("batch", min=1)}, path, "windows", "logits", OPSET)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"windows": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), net(x), atol=1e-4, rtol=1e-4)


# -- SpectralFormer ---------------------------------------------------------------------------
def test_band_groups_put_each_bands_neighbours_beside_it_wrapping_round() -> None:
    bands = torch.arange(5.0)
    x = bands.view(1, 1, 5, 1, 1)
    assert band_groups(x, 3)[0].tolist() == [[4, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 0]]
    assert band_groups(x, 5)[0, 0].tolist() == [3, 4, 0, 1, 2]
    # windows: the authors' order, b - 1 before b - 2; each slot a whole window
    window = bands.view(1, 1, 5, 1, 1).expand(1, 1, 5, 3, 3)
    groups = band_groups(window, 5)
    assert groups.shape == (1, 5, 45)
    assert groups[0, 0].view(5, 9)[:, 0].tolist() == [4, 3, 0, 1, 2]


def test_spectralformer_pixelwise_and_plain_vit_counts() -> None:
    # the authors' pixel-wise model (image_size=1); the fusion: 3 convolutions of tokens x tokens x 2 + tokens
    pixelwise = SpectralFormer(200, 1, 16)
    assert count(pixelwise) == 346_361
    tokens = 201
    plain = SpectralFormer(200, 1, 16, fusion="none")
    assert count(pixelwise) - count(plain) == 3 * (2 * tokens ** 2 + tokens)
    with pytest.raises(ConfigError, match="band_patch"):
        SpectralFormer(200, 1, 16, band_patch=2)


def test_spectralformer_fusion_mixes_the_input_of_two_blocks_before() -> None:
    """With the fusion's convolution set to pick the earlier input only, the third block's input is
    the first block's input: zeroing blocks 0 and 1 changes nothing after the fusion."""
    torch.manual_seed(0)
    net = SpectralFormer(6, 1, 3, depth=3, dropout=0.0, emb_dropout=0.0).eval()
    with torch.no_grad():
        conv = net.skips[0]
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[:, :, 0, 1] = torch.eye(7)  # output token t = earlier input's token t
        x = torch.randn(2, 1, 6, 1, 1)
        before = net(x)
        for block in net.blocks[:2]:
            for p in block.parameters():
                p.add_(torch.randn_like(p))
        torch.testing.assert_close(net(x), before)
