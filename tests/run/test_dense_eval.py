"""Dense validation and test (`data.eval_path`): row tiles of the padded scene give the same
predictions and metrics as windows, for every dense-capable network in conf/model/."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

import hsi.run.training
from hsi.data.datamodule import HSIDataModule
from hsi.data.sampling.patches import PatchDataset, TileDataset, pad_cube, plan_tiles
from hsi.errors import ConfigError
from hsi.run.config import CONFIG_DIR
from hsi.run.training import build_datamodule, build_model
from tests.conftest import FAST_SYNTHETIC, compose_train, sized_for


def dense_capable_models() -> list[str]:
    """Every conf/model/*.yaml whose network class declares `dense = True` (hsi.models.contract)."""
    names = []
    for path in sorted((CONFIG_DIR / "model").glob("[!_]*.yaml")):
        target = OmegaConf.select(OmegaConf.load(path), "net._target_")
        if target is not None and getattr(get_class(target), "dense", False):
            names.append(path.stem)
    return names


DENSE_MODELS = dense_capable_models()
# every pixel within patch_size // 2 of a border on one side or the other; several tiles
SMALL = ["data.height=21", "data.width=17", "data.split.test_ratio=0.6", "data.split.val_ratio=0.2",
         "data.eval_tile_rows=5", "trainer.max_epochs=1", "logger=none", "map=false"]
REPORT_KEYS = ("oa", "aa", "kappa", "per_class_accuracy", "untested", "confusion_matrix")


def test_the_zoo_has_dense_capable_models() -> None:
    assert {"hybridsn", "cnn2d", "cnn3d"} <= set(DENSE_MODELS)
    assert "hybridsn_se" not in DENSE_MODELS


# -- tiles ------------------------------------------------------------------------------------
def test_tiles_cover_each_pixel_once_and_only_needed_rows() -> None:
    rng = np.random.default_rng(0)
    height, width, p = 40, 11, 5
    rows = np.concatenate([rng.integers(0, 3, 20), rng.integers(12, 30, 30), [39]])
    coords = np.stack([rows, rng.integers(0, width, len(rows))], 1)
    coords = coords[rng.permutation(len(coords))]  # a subset's order is not row-major
    cube = rng.standard_normal((height, width, 3)).astype(np.float32)
    padded = pad_cube(cube, p)
    tiles = TileDataset(padded, coords, np.arange(len(coords)), p, tile_rows=7)
    index = torch.cat([tiles[i]["index"] for i in range(len(tiles))])
    assert sorted(index.tolist()) == list(range(len(coords)))
    needed = set(rows.tolist())
    m = p // 2
    for i in range(len(tiles)):
        start, stop, _ = tiles.tiles[i]
        item = tiles[i]
        assert stop - start <= 7 and start in needed and stop - 1 in needed
        assert item["tile"].shape == (1, 3, stop - start + p - 1, width + p - 1)
        r, c = item["pos"].numpy().T
        assert np.array_equal(r + start, coords[item["index"].numpy(), 0])
        assert np.array_equal(c, coords[item["index"].numpy(), 1])
        assert torch.equal(item["target"], item["index"])
        # the window centre of each pixel, read from the tile, is the pixel itself
        assert np.array_equal(item["tile"][0, :, r + m, c + m].numpy(), cube[r + start, c].T)
    # rows 3..11 and 31..38 hold no pixel and more than p - 1 of them in a row: never computed
    covered = {r for start, stop, _ in tiles.tiles for r in range(start, stop)}
    assert not covered & (set(range(4, 12)) | set(range(31, 39)))


def test_tile_plan_edge_cases() -> None:
    assert plan_tiles(np.zeros((0, 2), dtype=np.int64), 5, 8) == []
    one = plan_tiles(np.array([[3, 4]]), 5, 8)
    assert [(a, b) for a, b, _ in one] == [(3, 4)]
    # a gap of exactly p - 1 empty rows is bridged; p empty rows are not
    assert [(a, b) for a, b, _ in plan_tiles(np.array([[0, 0], [5, 0]]), 5, 8)] == [(0, 6)]
    assert [(a, b) for a, b, _ in plan_tiles(np.array([[0, 0], [6, 0]]), 5, 8)] == [(0, 1), (6, 7)]


# -- the datamodule's choice ------------------------------------------------------------------
def test_eval_path_choice(synthetic_cfg) -> None:
    datamodule = build_datamodule(synthetic_cfg(*SMALL))
    assert datamodule.hparams.eval_path == "auto"
    assert not datamodule.dense_evaluation  # auto, not told about the network: windows
    assert isinstance(next(iter(datamodule.test_dataloader())), list)
    assert datamodule.use_dense_evaluation(True)
    batch = next(iter(datamodule.test_dataloader()))
    assert isinstance(batch, dict) and batch["tile"].dim() == 4
    assert isinstance(next(iter(datamodule.val_dataloader())), dict)
    assert isinstance(next(iter(datamodule.train_dataloader())), list)  # training: windows always
    assert not datamodule.use_dense_evaluation(False)
    assert isinstance(next(iter(datamodule.test_dataloader())), list)

    window = build_datamodule(synthetic_cfg(*SMALL, "data.eval_path=window"))
    assert not window.use_dense_evaluation(True)
    dense = build_datamodule(synthetic_cfg(*SMALL, "data.eval_path=dense"))
    assert dense.dense_evaluation and dense.use_dense_evaluation(True)
    with pytest.raises(ConfigError, match="data.eval_path=dense"):
        dense.use_dense_evaluation(False, "HybridSNSE")


def test_unknown_eval_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.eval_path='fast'"):
        HSIDataModule("synthetic", eval_path="fast")
    with pytest.raises(ConfigError, match="data.eval_tile_rows=0"):
        HSIDataModule("synthetic", eval_tile_rows=0)


def test_dense_with_a_network_that_cannot_is_refused(synthetic_cfg) -> None:
    """Even when nobody told the datamodule about the network, the classifier refuses."""
    cfg = synthetic_cfg(*SMALL, "model=hybridsn_se", "data.eval_path=dense")
    with pytest.raises(ConfigError, match="data.eval_path=dense"):
        hsi.run.training.train(cfg)


# -- dense == window --------------------------------------------------------------------------
def assert_same_report(dense: dict, window: dict) -> None:
    assert torch.equal(dense["preds"], window["preds"])
    assert torch.equal(dense["targets"], window["targets"])
    for key in REPORT_KEYS:
        assert dense[key] == window[key], key


def trained_report(cfg, monkeypatch: pytest.MonkeyPatch) -> dict:
    """`hsi.run.training.train(cfg)`'s test report (what metrics.json is written from)."""
    seen = {}
    record = hsi.run.training.record_run

    def spy(cfg, datamodule, report, *args, **kwargs):
        seen["report"] = report
        return record(cfg, datamodule, report, *args, **kwargs)

    monkeypatch.setattr(hsi.run.training, "record_run", spy)
    metrics = hsi.run.training.train(cfg)
    assert metrics["oa"] == pytest.approx(seen["report"]["oa"])
    return seen["report"]


@pytest.mark.parametrize("model", DENSE_MODELS)
def test_training_run_dense_equals_window(model: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    reports = {}
    for path in ("window", "dense"):
        cfg = compose_train([*FAST_SYNTHETIC, *SMALL, *sized_for(model), f"model={model}",
                             f"data.eval_path={path}"],
                            tmp_path / path)
        reports[path] = trained_report(cfg, monkeypatch)
    assert len(reports["dense"]["preds"]) > 0
    assert_same_report(reports["dense"], reports["window"])


def fixed_model(synthetic_cfg, model: str, *extra: str):
    cfg = synthetic_cfg(*SMALL, *sized_for(model), f"model={model}", *extra)
    datamodule = build_datamodule(cfg)
    L.seed_everything(0)
    classifier = build_model(cfg, datamodule)
    # a few steps of training, so that the predictions are not one class everywhere
    optimizer = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    for x, y in datamodule.train_dataloader():
        optimizer.zero_grad()
        classifier.criterion(classifier(x), y).backward()
        optimizer.step()
    return datamodule, classifier


def run_test(classifier, datamodule, dense: bool, precision: str = "32-true") -> dict:
    datamodule._dense_evaluation = dense
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, precision=precision,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    trainer.test(classifier, datamodule=datamodule, verbose=False)
    return {**classifier.test_report, "logged": dict(trainer.callback_metrics)}


@pytest.mark.parametrize("model", DENSE_MODELS)
def test_trainer_test_dense_equals_window_on_the_same_weights(model: str, synthetic_cfg) -> None:
    datamodule, classifier = fixed_model(synthetic_cfg, model)
    state = {k: v.clone() for k, v in classifier.state_dict().items()}
    window = run_test(classifier, datamodule, dense=False)
    dense = run_test(classifier, datamodule, dense=True)
    assert len(datamodule.tile_dataset("test")) > 1
    assert_same_report(dense, window)
    for key in ("test/oa", "test/aa", "test/kappa"):
        assert float(dense["logged"][key]) == pytest.approx(float(window["logged"][key]), abs=1e-6)
    assert float(dense["logged"]["test/loss"]) == pytest.approx(float(window["logged"]["test/loss"]),
                                                                rel=1e-4)
    # the evaluation changed nothing, and left no dense head in the checkpoint's state
    assert classifier.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in classifier.state_dict().items())


@pytest.mark.parametrize("model", DENSE_MODELS)
def test_dense_logits_equal_window_logits(model: str, synthetic_cfg) -> None:
    datamodule, classifier = fixed_model(synthetic_cfg, model)
    classifier.eval()
    tiles = datamodule.tile_dataset("test")
    windows = PatchDataset(tiles.padded, tiles.coords.numpy(), tiles.targets.numpy(), tiles.patch_size)
    with torch.inference_mode():
        for i in range(len(tiles)):
            item = tiles[i]
            dense = classifier.dense_logits_at(item)
            x = torch.stack([windows[j][0] for j in item["index"].tolist()])
            assert torch.allclose(dense, classifier(x), atol=1e-4, rtol=1e-4)


def test_bf16_dense_evaluation_runs(synthetic_cfg) -> None:
    datamodule, classifier = fixed_model(synthetic_cfg, "hybridsn")
    window = run_test(classifier, datamodule, dense=False, precision="bf16-mixed")
    dense = run_test(classifier, datamodule, dense=True, precision="bf16-mixed")
    assert torch.equal(dense["targets"], window["targets"])
    assert dense["preds"].dtype == torch.long and len(dense["preds"]) == len(window["preds"])
    # bf16 rounds differently in a 17x17 convolution than in a Linear: near-ties may flip
    agreement = (dense["preds"] == window["preds"]).float().mean()
    assert agreement >= 0.9
    assert np.isfinite(float(dense["logged"]["test/loss"]))


def test_validation_loop_runs_densely(synthetic_cfg) -> None:
    logged = {}
    for dense in (False, True):
        datamodule = build_datamodule(synthetic_cfg(*SMALL))
        assert len(datamodule.datasets["val"]) > 0
        L.seed_everything(0)
        classifier = build_model(synthetic_cfg(*SMALL), datamodule)
        datamodule.use_dense_evaluation(dense)
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, max_epochs=2,
                            enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False)
        trainer.fit(classifier, datamodule=datamodule)
        logged[dense] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert "val/oa" in logged[True] and "val/loss" in logged[True]
    for key in ("val/oa", "val/aa", "val/kappa", "train/loss"):
        assert logged[True][key] == pytest.approx(logged[False][key], abs=1e-6), key
    assert logged[True]["val/loss"] == pytest.approx(logged[False]["val/loss"], rel=1e-4)
