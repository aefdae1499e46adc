"""The reference residual and attention 3-D networks: SSRN, DBDA, A2S2K-ResNet.

Each is built from its conf/model/<name>.yaml at the smallest input it declares and at its
reference's settings (200 bands, the window of its Indian Pines runs, 16 classes), trains a step,
exports to ONNX and has the parameter count of the reference code (measured by instantiating the
reference code in a scratch folder, see `reference.counted` and docs/models.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from hsi.errors import ConfigError
from hsi.models.a2s2k import A2S2KResNet, SelectiveKernel
from hsi.models.pretext import classifier_input
from hsi.run.config import CONFIG_DIR, PROJECT_ROOT

NAMES = ["ssrn", "dbda", "a2s2k"]


def net_class(name: str) -> type:
    return get_class(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net._target_)


def build(name: str, bands: int, patch: int, classes: int, **overrides: object) -> nn.Module:
    """The network of conf/model/<name>.yaml for these shapes, built without Hydra's instantiate
    (which would wrap a refusal in its own exception)."""
    net_cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net)
    return get_class(net_cfg.pop("_target_"))(bands, patch, classes, **{**net_cfg, **overrides})


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_equals_the_reference_code(name: str) -> None:
    reference = net_class(name).reference
    assert reference is not None and reference.params > 0 and reference.counted
    settings = dict(reference.settings)
    net = build(name, settings.pop("in_bands"), settings.pop("patch_size"), settings.pop("num_classes"),
                **settings)
    assert count(net) == reference.params


@pytest.mark.parametrize("name", NAMES)
def test_logits_at_the_smallest_input_and_at_the_reference_settings(name: str) -> None:
    cls = net_class(name)
    min_bands, min_patch = cls.input_limits()
    settings = cls.reference.settings
    for bands, patch, classes in [(min_bands, min_patch, 3),
                                  (settings["in_bands"], settings["patch_size"], settings["num_classes"])]:
        torch.manual_seed(0)
        net = build(name, bands, patch, classes).eval()
        with torch.no_grad():
            assert net(torch.randn(2, 1, bands, patch, patch)).shape == (2, classes)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_below_the_limits_are_refused_naming_the_key(name: str) -> None:
    min_bands, min_patch = net_class(name).input_limits()
    with pytest.raises(ConfigError, match=f"at least {min_bands} bands") as error:
        build(name, min_bands - 1, max(min_patch, 5), 3)
    assert "data.pca.components" in str(error.value)
    if min_patch > 1:
        with pytest.raises(ConfigError, match=f"at least {min_patch}x{min_patch} pixels") as error:
            build(name, 30, min_patch - 1, 3)
        assert "data.patch_size" in str(error.value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("bands", "patch", "classes"), [(30, 9, 5), (15, 11, 2), (31, 7, 4)])
def test_a_training_step_has_finite_gradients_everywhere(name: str, bands: int, patch: int,
                                                         classes: int) -> None:
    torch.manual_seed(0)
    net = build(name, bands, patch, classes)
    x, y = torch.randn(4, 1, bands, patch, patch), torch.tensor([0, 1, 1, 0])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    before = [p.detach().clone() for p in net.parameters()]
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert torch.isfinite(net(x)).all()


@pytest.mark.parametrize("name", NAMES)
def test_trunk_and_head_split_the_forward(name: str) -> None:
    torch.manual_seed(0)
    net = build(name, 20, 7, 4).eval()
    assert not net.dense and net.takes == "window"
    assert net.head is net.classifier
    x = torch.randn(3, 1, 20, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(net.head(net.trunk(x)), net(x))
        assert classifier_input(net, x).shape == net.trunk(x).shape  # what pretrain=masked decodes from


def test_the_code_s_shared_excitation_weighs_both_kernels_one_half() -> None:
    """The reference applies one excitation to both kernels: the selection is a constant 1/2.
    The paper's two excitations (the default) make it depend on the window."""
    torch.manual_seed(0)
    x = torch.randn(3, 1, 20, 7, 7)
    shared = SelectiveKernel(8, 10, shared_excitation=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(shared(x), (shared.spatial(x) + shared.spectral(x)) / 2)
        paper = SelectiveKernel(8, 10).eval()
        assert not torch.allclose(paper(x), (paper.spatial(x) + paper.spectral(x)) / 2)
    # the second excitation: a biased 1x1x1 conv from in_bands // 2 = 10 units to 24 channels
    assert count(A2S2KResNet(20, 7, 4)) - count(A2S2KResNet(20, 7, 4, shared_excitation=True)) == 10 * 24 + 24


@pytest.mark.parametrize("name", NAMES)
def test_docs_reference_table_gives_our_count(name: str) -> None:
    """docs/models.md's reference-table row of `model=<name>` shows the reference's count twice
    (ours, the reference code's) and the recipe."""
    text = (PROJECT_ROOT / "docs" / "models.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    count = f"{net_class(name).reference.params:,}"
    assert cells[4].startswith(count) and cells[5].startswith(count)
    assert re.search(rf"experiment=paper/{name}\b", row)
    assert (CONFIG_DIR / "experiment" / "paper" / f"{name}.yaml").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_onnx_window_graph_matches_pytorch(name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime

    from hsi.deploy.graphs import export_graph

    torch.manual_seed(0)
    net = build(name, 20, 7, 5).eval()
    path = tmp_path / "model.onnx"
    export_graph(net, torch.zeros(3, 1, 20, 7, 7), {0: torch.export.Dim("batch", min=1)}, path, "windows",
                 "logits", 18)
    x = torch.randn(6, 1, 20, 7, 7)
    got = onnxruntime.InferenceSession(str(path)).run(None, {"windows": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), net(x), atol=1e-5, rtol=1e-4)


# name -> (window, PCA components, batch, lr, optimizer, test_ratio, val_ratio) of the authors' runs
RECIPES = {
    "ssrn": (7, None, 16, 3e-4, "torch.optim.RMSprop", 0.8, 0.1),
    "dbda": (9, None, 16, 5e-4, "torch.optim.Adam", 0.97, 0.03),
    "a2s2k": (7, 200, 16, 1e-3, "torch.optim.Adam", 0.9, 0.1),
}


@pytest.mark.parametrize("name", NAMES)
def test_paper_recipe_composes_with_the_authors_settings(name: str, tmp_path: Path) -> None:
    from tests.conftest import compose_train

    cfg = compose_train([f"experiment=paper/{name}"], tmp_path)
    window, components, batch, lr, optimizer, test_ratio, val_ratio = RECIPES[name]
    assert get_class(cfg.model.net._target_) is net_class(name)
    assert net_class(name).reference.settings["patch_size"] == cfg.data.patch_size == window
    assert (cfg.data.pca.components, cfg.data.batch_size, cfg.trainer.max_epochs) == (components, batch, 200)
    assert (cfg.model.optimizer._target_, cfg.model.optimizer.lr) == (optimizer, lr)
    assert (cfg.data.split.test_ratio, cfg.data.split.val_ratio) == (test_ratio, val_ratio)
    assert cfg.callbacks.model_checkpoint.monitor == "val/loss"
    if name != "ssrn":  # SSRN's Keras EarlyStopping has patience 200 = its epochs: never stops
        stopping = cfg.callbacks.early_stopping
        assert (stopping.monitor, stopping.mode, stopping.patience) == ("val/loss", "min", 20)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_int8_quantization_of_the_window_graph(name: str, tmp_path: Path) -> None:
    """onnxruntime's int8 pre-processing reads every node's shape (DBDA's channel attention once
    exported a ReduceMax it cannot read, and hsi.export quantize=int8 failed)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import numpy as np
    import onnxruntime

    from hsi.deploy.graphs import export_graph
    from hsi.deploy.quantize import Int8Settings, quantize_int8

    torch.manual_seed(0)
    net = build(name, 15, 9, 4).eval()
    fp32, int8 = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    export_graph(net, torch.zeros(5, 1, 15, 9, 9), {0: torch.export.Dim("batch", min=1)}, fp32, "windows",
                 "logits", 18)
    rng = np.random.default_rng(0)
    batches = iter([rng.standard_normal((8, 1, 15, 9, 9)).astype(np.float32) for _ in range(2)])
    done = quantize_int8(fp32, int8, batches, Int8Settings(), dense=False)
    assert done["calibration_inputs"] == 16
    x = rng.standard_normal((3, 1, 15, 9, 9)).astype(np.float32)
    logits = onnxruntime.InferenceSession(str(int8)).run(None, {"windows": x})[0]
    assert logits.shape == (3, 4) and np.isfinite(logits).all()
