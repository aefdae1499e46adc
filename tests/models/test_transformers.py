"""Transformers and state-space networks (issue 32): shapes at the smallest input and at the
reference's settings, the reference's parameter count, a training step, the dense refusal, ONNX
export, and each network's own pieces (band groups, fusion, the selective scan)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from hsi.errors import ConfigError
from hsi.models.dense import check_network_eval_path, supports_dense
from hsi.models.gaht import GAHT
from hsi.models.hit import DynamicConv3d, HiT
from hsi.models.mambahsi import CentreLogits, MambaHSI
from hsi.models.spectralformer import SpectralFormer, band_groups
from hsi.models.ssm import _cuda_scan, selective_scan, selective_scan_torch
from hsi.run.config import CONFIG_DIR
from tests.conftest import compose_train

NETWORKS = ["spectralformer", "mambahsi", "hit", "gaht"]
# smaller than the yaml's where the authors' size is slow to build and export (HiT: 53 M parameters)
SMALL = {"hit": {"layers": [1, 1, 1, 1], "widths": [16, 32, 32]}, "gaht": {"groups": [2, 2, 2]}}


def net_config(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net)


def network_class(name: str) -> type:
    module, _, cls = net_config(name)["_target_"].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def build(name: str, bands: int, patch: int, classes: int, **overrides: object) -> nn.Module:
    """The network of conf/model/<name>.yaml (made `SMALL`) for these shapes, built directly
    (Hydra would wrap a ConfigError)."""
    kwargs = {k: v for k, v in net_config(name).items() if k != "_target_"}
    return network_class(name)(bands, patch, classes, **{**kwargs, **SMALL.get(name, {}), **overrides})


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
def test_paper_recipe_composes_with_all_bands_and_the_network(name: str, tmp_path) -> None:
    cfg = compose_train([f"experiment=paper/{name}"], tmp_path)
    OmegaConf.to_container(cfg.model, resolve=True)
    assert cfg.model.net._target_ == net_config(name)["_target_"]
    assert cfg.data.pca.components is None


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
        check_network_eval_path(net, "dense")


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


# -- MambaHSI and the selective scan ---------------------------------------------------------
def naive_scan(u, delta, A, B, C, D, z, delta_bias):
    """The S6 recurrence written out one scalar at a time (batch b, channel d, state n, step t)."""
    batch, channels, length = u.shape
    out = torch.zeros(batch, channels, length, dtype=torch.float64)
    for b in range(batch):
        for d in range(channels):
            h = [0.0] * A.shape[1]
            for t in range(length):
                step = float(torch.nn.functional.softplus(delta[b, d, t] + delta_bias[d]))
                y = 0.0
                for n in range(A.shape[1]):
                    drive = step * float(B[b, n, t]) * float(u[b, d, t])
                    h[n] = math.exp(step * float(A[d, n])) * h[n] + drive
                    y += float(C[b, n, t]) * h[n]
                y += float(D[d]) * float(u[b, d, t])
                out[b, d, t] = y * float(torch.nn.functional.silu(z[b, d, t]))
    return out


def scan_inputs(batch=2, channels=3, states=4, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, delta, z = (torch.randn(batch, channels, length, generator=g) for _ in range(3))
    A = -torch.rand(channels, states, generator=g) * 3
    B, C = (torch.randn(batch, states, length, generator=g) for _ in range(2))
    return u, delta, A, B, C, torch.randn(channels, generator=g), z, torch.randn(channels, generator=g)


def test_selective_scan_matches_the_recurrence_step_by_step() -> None:
    inputs = scan_inputs()
    torch.testing.assert_close(selective_scan_torch(*inputs).double(), naive_scan(*inputs),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(selective_scan(*inputs, kernel="torch"), selective_scan_torch(*inputs))
    with pytest.raises(ConfigError, match="mamba-ssm"):
        selective_scan(*inputs, kernel="cuda")  # the inputs are on the CPU
    with pytest.raises(ConfigError, match="model.net.scan"):
        MambaHSI(10, 5, 3, scan="triton")


@pytest.mark.skipif(_cuda_scan() is None or not torch.cuda.is_available(),
                    reason="mamba-ssm's CUDA selective scan is not installed (optional fast path)")
def test_cuda_selective_scan_matches_the_pytorch_scan() -> None:
    inputs = [t.cuda() for t in scan_inputs(batch=3, channels=64, states=16, length=50)]
    torch.testing.assert_close(selective_scan(*inputs, kernel="cuda"), selective_scan_torch(*inputs),
                               atol=1e-4, rtol=1e-4)
    torch.manual_seed(0)
    net = MambaHSI(12, 9, 4).cuda().eval()
    x = torch.randn(2, 1, 12, 9, 9, device="cuda")
    with torch.no_grad():
        fast = net(x)
        for module in net.modules():
            if hasattr(module, "scan"):
                module.scan = "torch"
        torch.testing.assert_close(fast, net(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_centre_logits_read_the_upsampled_map_at_the_windows_centre(size: int) -> None:
    """The authors upsample the per-pixel map bilinearly with aligned corners; at the window's centre
    pixel that is the map's own centre, for any window whose pooled map has this size."""
    logits = torch.randn(2, 5, size, size)
    for window in {4 * size + 1, 4 * size + 3}:
        up = torch.nn.functional.interpolate(logits, size=(window, window), mode="bilinear",
                                             align_corners=True)
        torch.testing.assert_close(CentreLogits()(logits), up[:, :, window // 2, window // 2])


def test_mambahsi_scans_each_window_on_its_own() -> None:
    """A window's logits do not depend on the other windows of its batch (the authors' code chains a
    batch into one sequence; with a scene per batch that is the same, with windows it would not be)."""
    torch.manual_seed(0)
    net = MambaHSI(8, 5, 3).eval()
    x = torch.randn(3, 1, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[1:2], net(x[1:2]))


# -- HiT ----------------------------------------------------------------------------------------
def test_dynamic_convolution_is_a_per_sample_mixture_of_its_kernels() -> None:
    """The authors convolve each sample with its own attention-mixed kernel (grouped by sample);
    the candidates' outputs mixed by the same weights are the same map."""
    torch.manual_seed(0)
    conv = DynamicConv3d(4, 8, (2, 1, 1)).eval()
    with torch.no_grad():
        nn.init.normal_(conv.band_gate[4].weight)  # a gate that is not 1/2 everywhere
        x = torch.randn(3, 4, 9, 5, 5)
        mix = (conv.attention(x) / conv.temperature).softmax(dim=1)
        gated = x * conv.band_gate(x)
        expected = torch.cat([
            torch.nn.functional.conv3d(gated[n:n + 1], (mix[n] @ conv.weight.flatten(1)).view(8, 4, 3, 3, 3),
                                       stride=(2, 1, 1), padding=1) for n in range(3)])
        torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)


def test_hit_reference_unused_layers_are_what_its_code_builds_and_never_uses() -> None:
    kwargs = {"layers": [1, 2, 1, 1], "widths": [16, 32, 32]}
    plain, counted = HiT(20, 7, 5, **kwargs), HiT(20, 7, 5, reference_unused=True, **kwargs)
    first = 8 * 5  # 20 bands -> 10 -> 5 after the two stride-2 embeddings
    mixers = [first, 16, 16, 32, 32]  # one 1x1 convolution per block, at its stage's width
    assert count(counted) - count(plain) == sum(d * d for d in mixers) + 368 * 5 + 5
    x = torch.randn(2, 1, 20, 7, 7)
    assert counted(x).shape == plain(x).shape == (2, 5)


# -- GAHT ---------------------------------------------------------------------------------------
def test_gaht_pads_bands_by_replication_and_keeps_the_window() -> None:
    """10 bands in 4 groups are padded to 12 by repeating the last band: the network on them is the
    12-band network (same weights) on the padded window; every pixel of the window is a token."""
    torch.manual_seed(0)
    net = GAHT(10, 5, 3, groups=[4, 2, 2]).eval()
    twelve = GAHT(12, 5, 3, groups=[4, 2, 2]).eval()
    twelve.load_state_dict(net.state_dict())
    x = torch.randn(2, 1, 10, 5, 5)
    padded = torch.cat([x, x[:, :, -1:], x[:, :, -1:]], dim=2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), twelve(padded))
        assert net.stages[0](padded.squeeze(1)).shape == (2, 25, 256)
    with pytest.raises(ConfigError, match="divisible"):
        GAHT(10, 5, 3, groups=[3, 2, 2])


def test_gaht_attention_is_unscaled_as_in_the_authors_code() -> None:
    attention = GAHT(8, 3, 2, groups=[2, 2, 2]).stages[0].blocks[0].attention
    assert attention.scale == 1.0 and attention.heads == 8


@pytest.mark.slow
def test_a_trained_transformer_exports_through_hsi_export(tmp_path) -> None:
    """The whole path: train one epoch on the synthetic scene, `hsi.export` checks the window graph
    against PyTorch on every pixel."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from hsi.deploy.export import export
    from hsi.train import train
    from tests.conftest import FAST_SYNTHETIC, compose_config

    overrides = [*FAST_SYNTHETIC, "model=gaht", "model.net.groups=[2,2,2]", "trainer.max_epochs=1",
                 "logger=none", "map=false", "data.pca.cache=false"]
    metrics = train(compose_train(overrides, tmp_path / "run"))
    meta = export(compose_config("export", [f"ckpt_path={metrics['checkpoint']}", "inference.batch_size=100"],
                                 tmp_path / "export"))
    assert meta["network"] == "GAHT" and meta["eval_path"] == "window"
    assert meta["verification"]["fp32"]["max_abs_logit_diff"] < 1e-3
