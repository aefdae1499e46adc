"""The DeepHyperX reference networks (`model=hamida, li, he, lee, chen, mou, hu`): each builds at
its declared smallest input and is refused one band or one window step below it, has DeepHyperX's
parameter count at DeepHyperX's settings (`reference`, measured by instantiating nshaud/DeepHyperX
models.py), trains, runs densely where it declares a dense form (== the window path), exports to
ONNX, and its paper recipe (`experiment=paper/<name>`) composes and trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from hsi.data.sampling.patches import pad_cube
from hsi.data.scenes.synthetic import make_synthetic_scene
from hsi.errors import ConfigError, DataError
from hsi.models.cost import count_parameters
from hsi.models.deephyperx import LeeEtAl, MouEtAl, fewest_bands, spectral_length
from hsi.models.dense import check_network_eval_path, supports_dense
from hsi.run.config import CONFIG_DIR
from hsi.run.inference import scene_logits
from tests.conftest import compose_train

NETWORKS = ["hamida", "li", "he", "lee", "chen", "mou", "hu"]
DENSE = ["hamida", "li", "he", "lee", "hu"]


def net_config(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net)


def net_class(name: str) -> type[nn.Module]:
    return get_class(net_config(name)["_target_"])


def build(name: str, bands: int, patch: int, classes: int, **overrides: object) -> nn.Module:
    """conf/model/<name>.yaml's network for these shapes (without Hydra, whose instantiate would
    wrap a refusal in its own exception)."""
    cfg = net_config(name)
    return get_class(cfg.pop("_target_"))(bands, patch, classes, **{**cfg, **overrides})


def limits(name: str) -> tuple[int, int]:
    """The declared (smallest bands, smallest window); `hu` (CNN1D) reads one pixel's spectrum
    and its kernel rule floor(bands / 9) keeps one band from one band up."""
    cls = net_class(name)
    return cls.input_limits() if hasattr(cls, "input_limits") else (1, 1)


def test_spectral_lengths_follow_torch() -> None:
    conv = nn.Conv1d(1, 1, 3, stride=2, padding=1)
    for bands in (1, 2, 7, 200):
        assert spectral_length(bands, [(3, 2, 1)]) == conv(torch.zeros(1, 1, bands)).shape[-1]
    assert fewest_bands([(32, 1, 0)] * 3) == 94 and spectral_length(93, [(32, 1, 0)] * 3) == 0


@pytest.mark.parametrize("name", NETWORKS)
def test_builds_and_trains_a_step_at_its_smallest_input(name: str) -> None:
    bands, window = limits(name)
    bands = max(bands, 2)  # one band: a recurrent layer never multiplies a state (mou's weight_hh)
    torch.manual_seed(0)
    net = build(name, bands, window, 3)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    logits = net(torch.randn(4, 1, bands, window, window))
    assert logits.shape == (4, 3)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 1])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("name", [n for n in NETWORKS if n != "hu"])
def test_one_below_the_smallest_input_is_refused_naming_the_key(name: str) -> None:
    bands, window = limits(name)
    if bands > 1:
        with pytest.raises(ConfigError, match=f"at least {bands} bands") as error:
            build(name, bands - 1, window, 3)
        assert "data.pca.components" in str(error.value)
    if window > 1:
        with pytest.raises(ConfigError, match=f"at least {window}x{window} pixels") as error:
            build(name, bands, window - 2, 3)
        assert "data.patch_size" in str(error.value)


@pytest.mark.parametrize("name", NETWORKS)
def test_reference_count_is_deephyperx_at_its_settings(name: str) -> None:
    """DeepHyperX's count (`reference.params`, measured by instantiating its class) equals ours,
    computed at the same settings: 200 bands, its window, 17 outputs (its 'undefined' class)."""
    cls = net_class(name)
    ref = cls.reference
    assert ref.code.startswith("nshaud/DeepHyperX models.py") and ref.settings["num_classes"] == 17
    assert ref.settings["in_bands"] == 200 and "17th output" in ref.counted
    net = cls(**ref.settings)
    assert count_parameters(net) == ref.params
    patch = ref.settings["patch_size"]
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 1, 200, patch, patch)).shape == (2, 17)


def test_the_defaults_are_deephyperx_networks() -> None:
    """conf/model/*.yaml's defaults are the reference's networks (li: n_planes=16 as DeepHyperX's
    get_model passes); hu's default kernel rule is the paper's floor(bands / 9), one tap (20
    weights) fewer than DeepHyperX's ceil at 200 bands."""
    for name in ("hamida", "li", "he", "lee", "chen", "mou"):
        ref = net_class(name).reference
        assert count_parameters(build(name, 200, ref.settings["patch_size"], 17)) == ref.params, name
    assert count_parameters(build("hu", 200, 1, 17)) == net_class("hu").reference.params - 20


def test_cnn1d_is_an_alias_of_hu() -> None:
    for bands, patch in ((200, 1), (30, 9)):
        hu, cnn1d = build("hu", bands, patch, 16), build("cnn1d", bands, patch, 16)
        assert type(hu) is type(cnn1d)
        assert {k: v.shape for k, v in hu.state_dict().items()} == \
            {k: v.shape for k, v in cnn1d.state_dict().items()}
        assert repr(hu) == repr(cnn1d)


@pytest.mark.parametrize(("name", "patch"), [(n, p) for n in DENSE for p in (0, 4)])
def test_dense_equals_window_where_declared(name: str, patch: int) -> None:
    bands, window = limits(name)
    bands, patch = max(bands, 20), window + patch  # its smallest window, and 4 px more
    scene = make_synthetic_scene(height=13, width=11, bands=bands)  # every pixel is near a border
    torch.manual_seed(0)
    net = build(name, bands, patch, 5).eval()
    assert supports_dense(net)
    padded = pad_cube(scene.cube, patch)
    dense, used = scene_logits(net, padded, patch, "dense", tile_rows=5)
    window_path, _ = scene_logits(net, padded, patch, "window", batch_size=37)
    assert used == "dense" and dense.shape == (5, 13, 11)
    torch.testing.assert_close(dense, window_path, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["chen", "mou"])
def test_no_dense_form_is_refused_in_one_line(name: str) -> None:
    bands, window = limits(name)
    net = build(name, bands, window, 3)
    assert not supports_dense(net)
    with pytest.raises(ConfigError, match="eval_path=window"):
        check_network_eval_path(net, "dense", "data.eval_path")


def test_lee_reads_the_centre_3x3_and_mou_the_centre_pixel() -> None:
    torch.manual_seed(0)
    lee, mou = LeeEtAl(12, 7, 3).eval(), MouEtAl(12, 7, 3).eval()
    x, y = torch.randn(2, 1, 12, 7, 7), torch.randn(2, 1, 12, 7, 7)
    y[..., 2:5, 2:5] = x[..., 2:5, 2:5]
    with torch.no_grad():
        torch.testing.assert_close(lee(x), lee(y))
        assert not torch.allclose(lee(x), lee(torch.randn(2, 1, 12, 7, 7)))
        y[..., 2:5, 2:5] = torch.randn(2, 1, 12, 3, 3)
        y[..., 3, 3] = x[..., 3, 3]
        torch.testing.assert_close(mou(x), mou(y))


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_exports_to_onnx_matching_torch(name: str, tmp_path: Path) -> None:
    """The graph hsi.export writes for the network (DenseScene where dense, else the windows)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from hsi.deploy.graphs import DenseScene, export_graph

    bands, window = limits(name)
    bands = max(bands, 12)
    torch.manual_seed(0)
    net = build(name, bands, window, 4).eval()
    path = tmp_path / "model.onnx"
    if supports_dense(net):
        module, example = DenseScene(net, None, window, bands), torch.rand(1, bands, 9, 8)
        dynamic = {2: torch.export.Dim("height", min=1), 3: torch.export.Dim("width", min=1)}
        check = torch.rand(1, bands, 6, 7)
    else:
        module, example = net, torch.rand(3, 1, bands, window, window)
        dynamic = {0: torch.export.Dim("batch", min=1)}
        check = torch.rand(5, 1, bands, window, window)
    export_graph(module, example, dynamic, path, "x", "logits", 18)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": check.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, module(check).numpy(), rtol=1e-4, atol=1e-4)


# -- the paper recipes ---------------------------------------------------------------------------
RECIPES = {  # DeepHyperX's get_model: optimizer, lr, batch, epochs, window
    "hamida": ("torch.optim.SGD", 0.01, 100, 100, 5), "li": ("torch.optim.SGD", 0.01, 100, 200, 5),
    "he": ("torch.optim.Adagrad", 0.01, 40, 100, 7), "lee": ("torch.optim.Adam", 0.001, 100, 200, 5),
    "chen": ("torch.optim.SGD", 0.003, 100, 400, 27), "mou": ("torch.optim.Adadelta", 1.0, 100, 100, 1),
    "hu": ("torch.optim.SGD", 0.01, 100, 100, 1),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_paper_recipe_is_one_override(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"experiment=paper/{name}"], tmp_path)
    optimizer, lr, batch, epochs, window = RECIPES[name]
    assert cfg.model.net._target_ == net_config(name)["_target_"]
    assert (cfg.model.optimizer._target_, cfg.model.optimizer.lr) == (optimizer, lr)
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.patch_size) == (batch, epochs, window)
    assert cfg.data.pca.components is None and cfg.data.pca.rescale == "minmax"
    assert cfg.model.scheduler.patience == epochs // 4 and cfg.model.scheduler_monitor == "val/oa"
    assert cfg.callbacks.model_checkpoint.monitor is None  # the last epoch's weights are tested


def test_paper_recipe_trains_on_the_synthetic_scene(tmp_path: Path) -> None:
    """experiment=paper/li trains on min-max scaled bands; the checkpoint carries the scaling
    (prediction reduces a cube as training did) and rebuilds its datamodule."""
    from hsi.run.checkpoint import load_checkpoint
    from hsi.run.training import train

    metrics = train(compose_train([
        "experiment=paper/li", "data=synthetic", "data.height=24", "data.width=24", "data.bands=30",
        "data.classes=4", "trainer=cpu", "trainer.max_epochs=2", "logger=none", "map=false",
        "callbacks.progress_bar.refresh_rate=0"], tmp_path))
    assert metrics["oa"] > 0.5 and metrics["params"] == count_parameters(build("li", 30, 5, 4))
    checkpoint = load_checkpoint(metrics["checkpoint"])
    cube = make_synthetic_scene(height=24, width=24, bands=30, classes=4).cube
    expected = (cube - cube.min()) / (cube.max() - cube.min())
    np.testing.assert_allclose(checkpoint.reduce(cube), expected, rtol=1e-5, atol=1e-6)
    datamodule = checkpoint.datamodule()
    datamodule.setup()
    assert datamodule.in_bands == 30


def test_minmax_rescale_is_refused_with_pca_and_on_a_constant_cube() -> None:
    from hsi.data.preprocessing import PCASettings, fit_minmax

    with pytest.raises(ConfigError, match="data.pca.components=null"):
        PCASettings(components=30, rescale="minmax")
    with pytest.raises(ConfigError, match="choose minmax, minmax_band or null"):
        PCASettings(components=None, rescale="standard")
    with pytest.raises(DataError, match="data.cube_path"):
        fit_minmax(np.full((4, 4, 3), 7.0))


# -- what hsi does around a network ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("name", "method"), [("lee", "pretrain=masked"), ("mou", "pretrain=masked"),
                                              ("hamida", "semi=fixmatch")])
def test_pretraining_and_semi_supervision_run(name: str, method: str, tmp_path: Path) -> None:
    """The trunk/head split serves masked pretraining and FixMatch (the head is `classifier`)."""
    from hsi.run.training import train

    quick = {"pretrain=masked": ["pretrain.pool=all", "pretrain.epochs=1", "pretrain.samples_per_epoch=128",
                                 "pretrain.batch_size=64"], "semi=fixmatch": ["semi.pool=all"]}[method]
    metrics = train(compose_train([
        "data=synthetic", "data.height=24", "data.width=24", "data.bands=20", "data.classes=4",
        "data.pca.components=null", "data.patch_size=5", f"model={name}", method,
        *quick, "trainer=cpu", "trainer.max_epochs=1", "logger=none", "map=false",
        "callbacks.progress_bar.refresh_rate=0"], tmp_path))
    assert np.isfinite(metrics["oa"]) and ("pretrain" in metrics or "semi" in metrics)


def test_minmax_band_scales_each_band_by_its_own_range() -> None:
    """data.pca.rescale=minmax_band (SpectralFormer's scaling): every band to [0, 1] by its own
    min and max, a constant band to 0; the transform is the one checkpoints and exports carry."""
    from hsi.data.preprocessing import fit_minmax

    cube = make_synthetic_scene(height=12, width=10, bands=6, classes=3).cube.astype(np.float64)
    cube[..., 2] = cube[..., 2] * 40 + 900  # a band on another scale
    cube[..., 4] = 3.0  # a constant band
    scaled = fit_minmax(cube, "minmax_band")(cube)
    flat = scaled.reshape(-1, 6)
    for band in (0, 1, 2, 3, 5):
        assert flat[:, band].min() == pytest.approx(0.0, abs=1e-6)
        assert flat[:, band].max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(flat[:, 4], 0.0)
    low, high = cube[..., 2].min(), cube[..., 2].max()
    np.testing.assert_allclose(scaled[..., 2], (cube[..., 2] - low) / (high - low), rtol=1e-5, atol=1e-6)
    globally = fit_minmax(cube, "minmax")(cube)  # one range for the cube: band 2 dominates it
    assert globally[..., 0].max() < 0.1
