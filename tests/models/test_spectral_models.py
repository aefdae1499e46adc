"""CNN1D (`model=hu`, alias `model=cnn1d`) and SSFTT (`model=ssftt`): shapes, gradients, dense ==
window inference for CNN1D, SSFTT's tokenizer and cost, and training through
`hsi.run.training.train` (the smallest window of every network: tests/models/test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from hsi.data.sampling.patches import pad_cube
from hsi.data.scenes.synthetic import make_synthetic_scene
from hsi.errors import ConfigError
from hsi.models import CNN1D, SSFTT
from hsi.models.cost import count_macs, count_parameters, window_shape
from hsi.models.dense import supports_dense
from hsi.run.config import CONFIG_DIR
from hsi.run.inference import scene_logits
from tests.models.zoo_walk import randomise_batchnorm

PAPER = (30, 13, 16)  # SSFTT's setting: 30 PCA bands, 13x13 windows, Indian Pines' 16 classes


def build(name: str, bands: int, patch: int, classes: int, **overrides: object) -> nn.Module:
    """The network of conf/model/<name>.yaml for these shapes, built without Hydra's
    instantiate (which would wrap a refusal in its own exception)."""
    net_cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net)
    cls = get_class(net_cfg.pop("_target_"))
    return cls(bands, patch, classes, **{**net_cfg, **overrides})


def _backward_and_check(net: nn.Module, bands: int, patch: int, classes: int) -> None:
    x = torch.randn(3, 1, bands, patch, patch)
    logits = net(x)
    assert logits.shape == (3, classes)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1]) % classes).backward()
    bad = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad


# -- CNN1D ------------------------------------------------------------------------------------
DEEPER = {"channels": [16, 32], "kernel_size": 3, "pool_size": 2, "batch_norm": True, "act": "relu",
          "dropout": 0.2}  # needs 10 bands or more


@pytest.mark.parametrize(("bands", "patch", "classes", "overrides"), [
    *[(*shape, overrides) for shape in [(30, 25, 16), (30, 1, 16), (15, 9, 4), (200, 5, 9)]
      for overrides in [{}, DEEPER, {"hidden": []}]],
    (4, 3, 2, {}), (4, 3, 2, {"hidden": []}),
])
def test_cnn1d_logits_and_gradients_reach_every_parameter(bands: int, patch: int, classes: int,
                                                          overrides: dict) -> None:
    torch.manual_seed(0)
    net = build("hu", bands, patch, classes, **overrides)
    _backward_and_check(net, bands, patch, classes)
    assert all(p.grad.abs().sum() > 0 for p in net.parameters())


def test_cnn1d_is_hu_et_al_network_by_default() -> None:
    # Indian Pines' 220 bands: 20 kernels of 24 taps (197 left), max pool 5 (39 left), 100 units
    net = build("hu", 220, 1, 16)
    assert isinstance(net, CNN1D) and net.dense
    conv, pool = net.features.layers[0], net.features.layers[2]
    assert isinstance(conv, nn.Conv1d) and (conv.out_channels, conv.kernel_size) == (20, (24,))
    assert isinstance(pool, nn.MaxPool1d) and pool.kernel_size == 5
    assert net.feature_shape == (20, 39)
    assert [m.out_features for m in net.classifier if isinstance(m, nn.Linear)] == [100, 16]
    assert isinstance(net.features.layers[1], nn.Tanh)
    assert build("hu", 103, 1, 9).features.layers[0].kernel_size == (11,)  # Pavia University
    # 30 PCA bands: 3 taps, no pool
    small = build("hu", 30, 25, 16)
    assert small.features.layers[0].kernel_size == (3,) and small.feature_shape == (20, 28)
    assert not any(isinstance(m, nn.MaxPool1d) for m in small.modules())
    assert count_parameters(small) == 20 * 3 + 20 + 560 * 100 + 100 + 100 * 16 + 16


def test_cnn1d_reads_only_the_centre_pixel() -> None:
    torch.manual_seed(0)
    net = build("hu", 12, 7, 3).eval()
    x = torch.randn(2, 1, 12, 7, 7)
    y = torch.randn(2, 1, 12, 7, 7)
    y[..., 3, 3] = x[..., 3, 3]
    torch.testing.assert_close(net(x), net(y))
    one = build("hu", 12, 1, 3).eval()  # the weights do not depend on the window
    one.load_state_dict(net.state_dict())
    torch.testing.assert_close(one(x[..., 3:4, 3:4]), net(x))


@pytest.mark.parametrize(("patch", "overrides"), [
    (1, {}), (5, {}), (9, {}), (13, {"batch_norm": True}),
    (7, {"channels": [8, 8], "kernel_size": 3, "pool_size": 2, "batch_norm": True, "act": "hswish"}),
    (3, {"hidden": [32, 16], "act": "relu"}),
])
def test_cnn1d_dense_equals_window_on_synthetic(patch: int, overrides: dict) -> None:
    scene = make_synthetic_scene(height=21, width=17, bands=16)  # borders: every pixel is near one
    torch.manual_seed(0)
    net = build("hu", 16, patch, 6, **overrides)
    assert net.dense and supports_dense(net)
    randomise_batchnorm(net)
    net.eval()
    padded = pad_cube(scene.cube, patch)
    dense, used = scene_logits(net, padded, patch, "dense", tile_rows=7)
    window, _ = scene_logits(net, padded, patch, "window", batch_size=97)
    assert used == "dense" and dense.shape == window.shape == (6, *scene.cube.shape[:2])
    torch.testing.assert_close(dense, window, rtol=1e-4, atol=1e-4)
    assert torch.equal(dense.argmax(0), window.argmax(0))


def test_cnn1d_trunk_slides_over_a_larger_scene() -> None:
    torch.manual_seed(0)
    net = build("hu", 15, 9, 4).eval()
    scene = torch.randn(1, 1, 15, 14, 13)
    with torch.no_grad():
        dense = net.trunk(scene)
        assert dense.shape == (1, *net.feature_shape, 14 - 8, 13 - 8)
        for row, col in [(0, 0), (3, 2), (5, 4)]:
            window = scene[..., row:row + 9, col:col + 9]
            torch.testing.assert_close(net.trunk(window), dense[..., row:row + 1, col:col + 1])


@pytest.mark.parametrize(("bands", "patch", "overrides", "message", "key"), [
    (30, 4, {}, "must be odd", "data.patch_size"),
    (5, 5, {"kernel_size": 7, "pool_size": 1}, "at least 7 bands", "data.pca.components"),
    (7, 5, {"kernel_size": 7}, "at least 8 bands", "data.pca.components"),  # 7 taps, a pool of 2
    (9, 5, {"channels": [8, 8], "kernel_size": 3, "pool_size": 2}, "at least 10 bands",
     "data.pca.components"),
    (30, 5, {"channels": []}, "at least one convolution", "model.net.channels"),
    (30, 5, {"kernel_size": 0}, "positive integer", "model.net.kernel_size"),
    (30, 5, {"pool_size": 1.5}, "positive integer", "model.net.pool_size"),
    (30, 5, {"act": "swish"}, "unknown activation", "model.net.act"),
])
def test_cnn1d_bad_settings_are_refused(bands: int, patch: int, overrides: dict, message: str,
                                        key: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build("hu", bands, patch, 4, **overrides)
    assert key in str(error.value)


# -- SSFTT ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("bands", "patch", "classes"), [(30, 13, 16), (30, 7, 16), (15, 9, 4),
                                                         (20, 15, 7), (3, 11, 2)])
def test_ssftt_logits_and_gradients_reach_every_parameter(bands: int, patch: int, classes: int) -> None:
    torch.manual_seed(0)
    net = build("ssftt", bands, patch, classes)
    assert not net.dense and not supports_dense(net)
    _backward_and_check(net, bands, patch, classes)
    assert all(p.grad.abs().sum() > 0 for p in net.parameters())


def test_ssftt_at_5x5_has_one_position_and_still_trains() -> None:
    """Two unpadded 3x3 convolutions leave one position: each token is that position's projection
    (the softmax over one position is 1), so the token weights get no gradient; all else does."""
    torch.manual_seed(0)
    net = build("ssftt", 30, 5, 16)
    assert net.positions == 1
    _backward_and_check(net, 30, 5, 16)
    zero = [n for n, p in net.named_parameters() if p.grad.abs().sum() == 0]
    assert zero == ["tokenizer.weight"]


@pytest.mark.parametrize("patch", [5, 9, 13])
def test_ssftt_tokenizer_makes_l_tokens_and_a_class_token(patch: int) -> None:
    torch.manual_seed(0)
    net = build("ssftt", 30, patch, 16, num_tokens=6, dim=32, heads=4).eval()
    x = torch.randn(2, 1, 30, patch, patch)
    with torch.no_grad():
        features = net.features(x)
        assert features.shape == (2, (patch - 4) ** 2, 64)
        weights = net.tokenizer.attention(features)
        assert weights.shape == (2, 6, (patch - 4) ** 2)  # one softmax over positions per token
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 6))
        tokens = net.tokens(x)
    assert tokens.shape == (2, 6 + 1, 32)
    # the first token is the learnable class token (plus its position embedding), the same for
    # every window; the others are the tokenizer's
    torch.testing.assert_close(tokens[:, 0], (net.cls_token[0, 0] + net.pos_embedding[0, 0]).expand(2, -1))
    torch.testing.assert_close(tokens[:, 1:], net.tokenizer(features) + net.pos_embedding[:, 1:])


def test_ssftt_at_the_papers_setting_has_the_released_models_size_and_counted_macs() -> None:
    net = build("ssftt", *PAPER)
    assert isinstance(net, SSFTT) and not net.dense
    # the authors' released Indian Pines state dict holds these 153,224 parameters; 4,736 of them
    # (tokenizer 4 x 64 + 64 x 64, class token 64, position embeddings 5 x 64) are bare
    # nn.Parameters that per-layer summaries do not list, which leaves 148,488
    assert count_parameters(net) == 153_224
    bare = net.tokenizer.weight.numel() + net.tokenizer.value.numel() + net.cls_token.numel() + \
        net.pos_embedding.numel()
    assert bare == 4_736
    conv3d = 8 * 28 * 11 * 11 * 27
    conv2d = 64 * 9 * 9 * 224 * 9
    tokenizer = 81 * 64 * 4 + 81 * 64 * 64 + 4 * 81 * 64
    encoder = 5 * 64 * 192 + 2 * 5 * 5 * 64 + 5 * 64 * 64 + 2 * 5 * 64 * 8  # qkv, QK^T and AV, proj, MLP
    assert count_macs(net, window_shape(30, 13)) == conv3d + conv2d + tokenizer + encoder + 64 * 16


def test_ssftt_attention_matmuls_are_counted() -> None:
    """count_macs (FlopCounterMode) counts the attention's matrix products; it would count
    nothing for torch's fused scaled_dot_product_attention on the CPU."""
    one, two = build("ssftt", *PAPER), build("ssftt", *PAPER, num_tokens=8)
    d_macs = count_macs(two, window_shape(30, 13)) - count_macs(one, window_shape(30, 13))
    # four more tokens: tokenizer scores and sums, and every encoder product over 9 tokens, not 5
    tokenizer = 81 * 64 * 4 * 2
    encoder = 4 * (64 * 192 + 64 * 64 + 2 * 64 * 8) + 2 * (9 * 9 - 5 * 5) * 64
    assert d_macs == tokenizer + encoder


@pytest.mark.parametrize(("bands", "patch", "overrides", "message", "key"), [
    (30, 3, {}, "at least 5x5", "data.patch_size"),
    (2, 13, {}, "at least 3 bands", "data.pca.components"),
    (6, 13, {"spectral_kernel": 7}, "at least 7 bands", "data.pca.components"),
    (30, 13, {"heads": 5}, "must divide", "model.net.heads"),
    (30, 13, {"num_tokens": 0}, "positive integer", "model.net.num_tokens"),
    (30, 13, {"depth": 1.5}, "positive integer", "model.net.depth"),
])
def test_ssftt_bad_settings_are_refused(bands: int, patch: int, overrides: dict, message: str,
                                        key: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build("ssftt", bands, patch, 4, **overrides)
    assert key in str(error.value)


def test_ssftt_depth_stacks_encoder_blocks() -> None:
    one, three = build("ssftt", *PAPER), build("ssftt", *PAPER, depth=3)
    block = sum(p.numel() for p in one.encoder[0].parameters())
    assert count_parameters(three) == count_parameters(one) + 2 * block


# -- training through hsi.run.training.train ------------------------------------------------------
@pytest.mark.parametrize(("model", "path"), [("hu", "dense"), ("ssftt", "window")])
def test_trains_one_epoch_on_the_synthetic_scene(model: str, path: str, synthetic_cfg,
                                                 tmp_path: Path) -> None:
    from hsi.run.training import train

    metrics = train(synthetic_cfg(f"model={model}", "trainer.max_epochs=1", "logger=none"))
    assert 0.0 <= metrics["oa"] <= 1.0 and metrics["n_test"] > 0
    assert metrics["params"] > 0 and metrics["macs"] > 0
    assert metrics["map_eval_path"] == path
    assert (tmp_path / "prediction.npy").is_file()
