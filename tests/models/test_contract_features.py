"""Everything hsi does with a network, walked over every network of conf/model (issue 31, item 4):
int8 export with labels that agree with fp32, `pretrain=masked` on the trunk, a `semi=fixmatch`
step, a streamed GeoTIFF map equal to the in-memory one; the pixel estimators refuse the
Lightning-only paths in one line; a sweep over networks composes; two-process DDP trains a 3-D
reference network. Each network at its smallest input (`tests.models.zoo_walk`), so a network
added as a module and a yaml is walked here too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hsi.errors import ConfigError, ExportError
from hsi.models.classifier import HSIClassifier
from hsi.models.pretext import MaskedReconstruction
from hsi.models.zoo import build_network, network_class
from hsi.run.config import PROJECT_ROOT
from tests.conftest import FAST_SYNTHETIC, compose_config, compose_train
from tests.models.zoo_walk import CLASSES, ESTIMATORS, NETWORKS, randomise_batchnorm, window_for

# the share of pixels whose int8 label may differ from fp32's on random weights and inputs (near
# ties of three random logits flip under quantization noise)
INT8_LABEL_CHANGE = 0.2


def _network(net_cfg: DictConfig) -> tuple[nn.Module, int, int]:
    bands, patch = window_for(net_cfg)
    torch.manual_seed(0)
    return build_network(net_cfg, bands, patch, CLASSES), bands, patch


# -- int8 export ----------------------------------------------------------------------------------
def check_int8(net_cfg: DictConfig, folder: Path) -> float | None:
    """The graph `hsi.export` writes, quantized by the function `quantize=int8` calls and loaded as
    `hsi.deploy.runtime` loads it (its window checks included), labels a small cube as fp32 does
    (up to INT8_LABEL_CHANGE of the pixels), or the network is refused in one line. Returns the
    share of pixels whose label changed."""
    from hsi.deploy.graphs import FILES, network_graphs
    from hsi.deploy.quantize import Int8Settings, quantize_int8
    from hsi.deploy.runtime import OnnxClassifier

    net, bands, patch = _network(net_cfg)
    net.eval()
    randomise_batchnorm(net)
    cls = network_class(net_cfg)
    if cls.cannot_export:
        with pytest.raises(ExportError, match="cannot be exported to ONNX") as error:
            network_graphs(net, bands, patch, None, CLASSES, folder)
        assert "\n" not in str(error.value)
        return 0.0
    files = network_graphs(net, bands, patch, None, CLASSES, folder)
    rng = np.random.default_rng(0)
    shape = (1, bands, patch, patch) if cls.dense else (16, 1, bands, patch, patch)
    calibration = (rng.standard_normal(shape).astype(np.float32) for _ in range(8))
    try:
        quantize_int8(folder / files["fp32"], folder / FILES["int8"], calibration, Int8Settings(), cls.dense)
    except ExportError as error:  # refused in one line, naming the fix
        assert "\n" not in str(error) and "without quantize=int8" in str(error)
        assert not (folder / FILES["int8"]).exists()
        return None
    meta = {"files": files | {"int8": FILES["int8"]}, "eval_path": "dense" if cls.dense else "window",
            "takes": cls.takes, "bands": bands, "patch_size": patch, "pca": None,
            "class_names": [f"c{k}" for k in range(CLASSES)], "default_precision": "int8"}
    (folder / "model.json").write_text(json.dumps(meta))
    cube = rng.standard_normal((9, 8, bands)).astype(np.float32)
    labels = {p: OnnxClassifier(folder, p, threads=1, meta=meta).predict(cube, tile_rows=4, batch_size=32)
              for p in ("fp32", "int8")}
    with torch.no_grad():  # the fp32 graph is the network (the contract test checks the logits)
        from hsi.run.inference import predict_labels

        expected, _ = predict_labels(net, cube, patch, "window", batch_size=32)
    assert np.array_equal(labels["fp32"], expected)
    changed = float(np.mean(labels["int8"] != labels["fp32"]))
    assert changed <= INT8_LABEL_CHANGE, f"{cls.__name__}: int8 changes {changed:.0%} of the labels"
    return changed


# known bug (open): LeeEtAl's int8 dense graph reads pixels beyond its 5x5 window, so the
# runtime's window check refuses it ("the graph reads another window")
INT8_KNOWN = {"lee": "LeeEtAl's int8 dense graph reads beyond its window (runtime check refuses it)"}
# the networks whose int8 export is refused (in one line): onnxruntime cannot load MambaHSI's
# quantized graph (docs/models.md); every other network must quantize and agree
INT8_REFUSED = {"mambahsi"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=INT8_KNOWN[n], strict=True))
                                  if n in INT8_KNOWN else n for n in sorted(NETWORKS)])
def test_int8_export_agrees_with_fp32_or_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    changed = check_int8(NETWORKS[name], tmp_path)
    assert (changed is None) == (name in INT8_REFUSED), f"{name}: int8 refused={changed is None}"


# -- pretrain=masked and semi=fixmatch --------------------------------------------------------------
def check_masked_pretext(net_cfg: DictConfig) -> None:
    """`pretrain=masked`'s pretext on the network's trunk: a step moves the trunk, never the head."""
    net, bands, patch = _network(net_cfg)
    pretext = MaskedReconstruction(net, bands, patch)
    optimizer = pretext.configure_optimizers()
    head = {k: v.clone() for k, v in net.head.state_dict().items()}
    trunk = {n: p.detach().clone() for n, p in net.named_parameters() if not n.startswith("classifier.")}
    torch.manual_seed(1)
    loss = pretext.training_step((torch.randn(4, 1, bands, patch, patch),), 0)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert all(torch.equal(v, net.head.state_dict()[k]) for k, v in head.items())
    moved = [n for n, p in net.named_parameters() if n in trunk and not torch.equal(trunk[n], p)]
    assert moved, f"{type(net).__name__}: the pretext step moved no trunk parameter"


def check_fixmatch_step(net_cfg: DictConfig) -> None:
    """A `semi=fixmatch` training step (conf/semi/fixmatch.yaml's strong change, every unlabelled
    window counted): finite, and the unlabelled windows send a gradient of their own."""
    from hsi.run.config import CONFIG_DIR

    semi = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "semi" / "fixmatch.yaml"))
    bands, patch = window_for(net_cfg)
    torch.manual_seed(0)
    model = HSIClassifier(dict(OmegaConf.to_container(net_cfg)), bands, patch, CLASSES,
                          consistency={"weight": 1.0, "threshold": 0.0, "strong": semi["strong"], "seed": 0})
    x, u = torch.randn(4, 1, bands, patch, patch), torch.randn(8, 1, bands, patch, patch)
    batch = {"labelled": (x, torch.tensor([0, 1, 2, 0])), "unlabelled": (u, torch.full((8,), -1))}
    loss = model.training_step(batch, 0)
    supervised = model.criterion(model(x), batch["labelled"][1])
    assert torch.isfinite(loss) and loss > supervised
    extra, counted = model.consistency(model, u)  # the unlabelled windows' term alone
    assert torch.isfinite(extra) and extra > 0 and float(counted) == 1.0
    extra.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_masked_pretraining_and_a_fixmatch_step(name: str) -> None:
    check_masked_pretext(NETWORKS[name])
    check_fixmatch_step(NETWORKS[name])


# -- a streamed GeoTIFF map --------------------------------------------------------------------------
def _tiny_geotiff(path: Path, bands: int, height: int = 11, width: int = 7) -> np.ndarray:
    import rasterio
    from rasterio.transform import Affine

    cube = np.random.default_rng(0).standard_normal((bands, height, width)).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=bands, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000000)) as ds:
        ds.write(cube)
    return cube.transpose(1, 2, 0)


def check_streamed_raster(net_cfg: DictConfig, folder: Path) -> None:
    """A GeoTIFF classified block by block (prediction.tif) gives the labels of the in-memory path."""
    import rasterio

    from hsi.run.checkpoint_raster import NetworkBackend
    from hsi.run.raster_driver import RasterSettings, predict_raster

    net, bands, patch = _network(net_cfg)
    net.eval()
    randomise_batchnorm(net)
    raster = folder / "tiny.tif"
    _tiny_geotiff(raster, bands)
    state = {"patch_size": patch, "raw_bands": bands, "pca": None, "scene": "tiny",
             "class_names": [f"c{k}" for k in range(CLASSES)], "label_values": None}
    backend = NetworkBackend(net, state)
    options = {"batch_size": 16, "tile_rows": 3, "progress": False}
    memory = predict_raster(backend, raster, folder / "memory", False, RasterSettings(**options))
    streamed = predict_raster(backend, raster, folder / "out", True, RasterSettings(block_rows=3, **options))
    assert streamed.streamed and streamed.path == memory.path
    with rasterio.open(folder / "out" / "prediction.tif") as ds:
        labels = ds.read(1)
    assert labels.shape == (11, 7) and np.array_equal(labels, memory.labels)
    assert set(np.unique(labels)) <= set(range(1, CLASSES + 1))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_a_streamed_geotiff_map_equals_the_in_memory_one(name: str, tmp_path: Path) -> None:
    pytest.importorskip("rasterio")
    check_streamed_raster(NETWORKS[name], tmp_path)


# -- the pixel estimators refuse what only Lightning honours -------------------------------------------
TINY = [o for o in FAST_SYNTHETIC if not o.startswith("trainer=")] + [
    "trainer=cpu", "trainer.max_epochs=1", "logger=none", "map=false"]
LIGHTNING_ONLY = {
    "pretrain=masked": "pretrain=masked pretrains a network's trunk",
    "semi=fixmatch": "semi=fixmatch trains a network on unlabelled windows",
    "trainer=ddp_cpu": "trainer.strategy (trainer=ddp, ddp_cpu): use trainer=default",
    "trainer.precision=bf16-mixed": "trainer.precision=bf16-mixed: drop it",
}


@pytest.mark.parametrize("override", list(LIGHTNING_ONLY))
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_an_estimator_refuses_a_lightning_only_path_in_one_line(name: str, override: str,
                                                                tmp_path: Path) -> None:
    from hsi.run.training import train

    with pytest.raises(ConfigError) as error:
        train(compose_train([*TINY, f"model={name}", override], tmp_path))
    assert "\n" not in str(error.value) and LIGHTNING_ONLY[override] in str(error.value)
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_an_estimator_is_not_profiled_but_named(name: str, tmp_path: Path) -> None:
    from hsi.studies.profiling import profile

    with pytest.raises(ConfigError, match=f"model {name} has no network"):
        profile(compose_config("profile", [f"model={name}"], tmp_path))


# -- sweeps and several processes ------------------------------------------------------------------
def test_a_sweep_over_networks_composes_each_network(tmp_path: Path) -> None:
    """`python -m hsi.train -m model=li,mlp`: each job's config names its network."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_overrides(["model=li,mlp"])[0]
    jobs = [compose_train([*TINY, f"model={name}"], tmp_path) for name in override.sweep_string_iterator()]
    assert [network_class(job.model.net).__name__ for job in jobs] == ["LiEtAl", "MLP"]


@pytest.mark.slow
def test_two_process_ddp_trains_a_3d_reference_network(tmp_path: Path) -> None:
    """`trainer=ddp_cpu` (two processes, gloo) with `model=li`: trained, tested once by rank zero."""
    run = tmp_path / "run"
    overrides = [o for o in FAST_SYNTHETIC if not o.startswith("trainer=")]
    cmd = [sys.executable, "-m", "hsi.train", *overrides, "model=li", "data.patch_size=5", "trainer=ddp_cpu",
           "trainer.max_epochs=2", "map=false", "logger=none", f"hydra.run.dir={run}"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and 0 < metrics["oa"] <= 1
    assert (run / "train.log").read_text().count("Test OA") == 1
