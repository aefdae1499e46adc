"""The honest protocol (`experiment=honest`): a spatially disjoint split with validation blocks,
every class in every subset where the scene allows it, and the split figure."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from hsi.data import HSIDataModule
from hsi.data.readers.io import read_array
from hsi.data.splits.disjoint import DisjointSplit, disjoint_split
from hsi.data.splits.leakage import window_mask
from hsi.errors import ConfigError
from hsi.run.outputs import write_run_start
from hsi.train import train
from tests.conftest import compose_train

HONEST = ["experiment=honest"]
SEEDS = (0, 1, 2)


def _check_honest(cfg) -> None:
    assert cfg.data.split._target_ == "hsi.data.splits.disjoint.DisjointSplit"
    assert cfg.data.split.every_class is True and cfg.data.split.val_ratio > 0
    assert cfg.data.patch_size == 9 and cfg.data.split.block_size == 8
    assert cfg.data.pca.fit == "train"
    assert cfg.callbacks.model_checkpoint.monitor == "val/oa" and cfg.callbacks.model_checkpoint.mode == "max"
    assert cfg.callbacks.early_stopping.monitor == "val/oa" and cfg.callbacks.early_stopping.mode == "max"
    assert cfg.model.scheduler._target_.endswith("CosineAnnealingLR")
    assert cfg.model.scheduler.T_max == cfg.trainer.max_epochs
    assert get_class(cfg.callbacks.early_stopping._target_).__name__ == "EarlyStopping"


@pytest.mark.parametrize("scene", ["indian_pines", "salinas_a", "pavia_university", "synthetic", "custom"])
def test_the_honest_experiment_composes_on_any_scene(scene: str, tmp_path: Path) -> None:
    extra = ["data.cube_path=cube.mat"] if scene == "custom" else []
    cfg = compose_train([*HONEST, f"data={scene}", *extra], tmp_path)
    for node in ("data", "model", "callbacks", "trainer"):  # every value resolves
        OmegaConf.to_container(cfg[node], resolve=True)
    _check_honest(cfg)
    assert cfg.data.scene == scene  # the experiment leaves the scene to the user
    other = compose_train([*HONEST, "data=salinas_a", "model=hybridsn_lite", "augment=flips"], tmp_path)
    assert other.data.augment.flip is True and other.model.net._target_.endswith("HybridSNLite")


def test_honest_run_on_a_synthetic_scene(tmp_path: Path) -> None:
    cfg = compose_train([*HONEST, "data=synthetic", "data.height=48", "data.width=48", "data.bands=30",
                         "data.classes=5", "data.pca.components=12", "model=hybridsn_fast",
                         "trainer=cpu", "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=0",
                         "map=false"], tmp_path)
    metrics = train(cfg)

    split = np.load(tmp_path / "split.npz")
    labels, patch = split["labels"], cfg.data.patch_size
    assert metrics["leakage"] == 0.0
    near_train = window_mask(labels.shape, split["train"], patch)
    for subset in ("val", "test"):  # neither validation nor test pixels inside a training window
        coords = split[subset]
        assert len(coords) and not near_train[coords[:, 0], coords[:, 1]].any(), subset
    report = metrics["split"]
    assert report["method"] == "disjoint" and report["every_class"] and report["margin"] == patch // 2
    for row in report["classes"]:  # a 48x48 Voronoi scene allows every class everywhere
        assert row["train"] > 0 and row["val"] > 0 and row["test"] > 0, row
    assert metrics["untested_classes"] == []
    assert (tmp_path / "split.png").stat().st_size > 0
    # tested on the best-validation checkpoint, not on the last epoch's weights
    assert Path(metrics["checkpoint"]).name.startswith("epoch_")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["split"]["classes"] == report["classes"]


def _split_shares(labels: np.ndarray, strategy: DisjointSplit, patch_size: int, seed: int):
    rows, cols = np.nonzero(labels)
    coords = np.stack([rows, cols], axis=1)
    indices, report = strategy(labels, coords, patch_size, seed, None)
    split = {k: coords[v] for k, v in indices.items()}
    near_train = window_mask(labels.shape, split["train"], patch_size)
    for subset in ("val", "test"):
        assert not near_train[split[subset][:, 0], split[subset][:, 1]].any()
    return split, report


def test_the_honest_defaults_keep_every_indian_pines_class_in_every_subset(shared_data: Path,
                                                                             tmp_path: Path) -> None:
    """The chosen block size, window and ratios, on the real Indian Pines ground truth."""
    cfg = compose_train([*HONEST, "data=indian_pines"], tmp_path)
    strategy = instantiate(cfg.data.split)
    labels = read_array(shared_data / "indian_pines" / "Indian_pines_gt.mat", None, 2, "ground truth")
    total = int((labels > 0).sum())
    for seed in SEEDS:
        split, report = _split_shares(labels.astype(np.int64), strategy, cfg.data.patch_size, seed)
        assert len(report["classes"]) == 16
        lacking = [(r["name"], r["train"], r["val"], r["test"]) for r in report["classes"]
                   if not (r["train"] and r["val"] and r["test"])]
        assert lacking == [], f"seed {seed}: {lacking}"
        train_share = len(split["train"]) / total
        assert 0.09 <= train_share <= 0.14, train_share  # the target is 10%
        assert len(split["test"]) / total > 0.55


def test_the_honest_defaults_on_salinas_a(shared_data: Path, tmp_path: Path) -> None:
    cfg = compose_train([*HONEST, "data=salinas_a"], tmp_path)
    strategy = instantiate(cfg.data.split)
    labels = read_array(shared_data / "salinas_a" / "SalinasA_gt.mat", None, 2, "ground truth")
    labels = np.searchsorted(np.unique(labels), labels)  # label values 0, 1, 10, ... -> 0..6
    for seed in SEEDS:
        _, report = _split_shares(labels.astype(np.int64), strategy, cfg.data.patch_size, seed)
        assert all(r["train"] and r["val"] and r["test"] for r in report["classes"]), seed


# -- the every_class assignment ----------------------------------------------------------------
def _small_fields() -> np.ndarray:
    """A 64x64 scene: a big class and two small fields the 16 px grid cannot split three ways."""
    labels = np.ones((64, 64), dtype=np.int64)
    labels[20:30, 20:22] = 2  # a 10x2 strip, like Indian Pines' Oats
    labels[40:47, 50:54] = 3  # a 7x4 field, like Grass-pasture-mowed
    return labels


@pytest.mark.parametrize("seed", SEEDS)
def test_every_class_reaches_training_validation_and_test(seed: int) -> None:
    labels = _small_fields()
    coords = np.argwhere(labels > 0)
    targets = labels[coords[:, 0], coords[:, 1]] - 1
    old, _ = disjoint_split(labels, coords, 0.9, 0.1, block_size=16, patch_size=5, seed=seed)
    assert any(not set(targets[old[k]]) >= {0, 1, 2} for k in ("val", "test"))  # the original misses some
    split, report = disjoint_split(labels, coords, 0.9, 0.1, block_size=16, patch_size=5, seed=seed,
                                   every_class=True)
    for k in ("train", "val", "test"):
        assert set(targets[split[k]].tolist()) == {0, 1, 2}, k
    assert report["every_class"] and min(report["block_sides"]) < 16 <= max(report["block_sides"])
    near_train = window_mask(labels.shape, coords[split["train"]], 5)
    for k in ("val", "test"):
        assert not near_train[coords[split[k], 0], coords[split[k], 1]].any()
    n = len(coords)
    assert sum(len(v) for v in split.values()) + report["dropped"] == n
    assert len(set(np.concatenate(list(split.values())).tolist())) == sum(len(v) for v in split.values())


def test_every_class_is_a_setting_that_round_trips_and_is_checked(tmp_path: Path) -> None:
    strategy = DisjointSplit(0.8, 0.1, 8, every_class=True)
    assert strategy.config()["every_class"] is True
    assert instantiate(strategy.config()) == strategy
    assert DisjointSplit().every_class is False  # older runs rebuild their split unchanged
    with pytest.raises(ConfigError, match=r"data\.split\.every_class='yes' must be true or false"):
        DisjointSplit(every_class="yes")
    dm = HSIDataModule("synthetic", pca={"components": 8, "cache": False}, patch_size=5, height=32,
                       width=32, bands=16, classes=3, split=strategy)
    dm.setup()
    again = HSIDataModule(**dm.hparams)
    again.setup()
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(again.split[k], dm.split[k])


# -- the split figure --------------------------------------------------------------------------
class _FigureLogger:
    def __init__(self) -> None:
        self.experiment = SimpleNamespace(add_figure=self.add_figure)
        self.figures: list[tuple[str, int]] = []

    def add_figure(self, tag: str, fig, global_step: int = 0, close: bool = True) -> None:
        self.figures.append((tag, global_step))


def test_the_run_start_writes_the_split_figure_and_gives_it_to_the_loggers(tmp_path: Path) -> None:
    dm = HSIDataModule("synthetic", pca={"components": 8, "cache": False}, patch_size=5, height=32,
                       width=32, bands=16, classes=3, split=DisjointSplit(0.8, 0.1, 8, every_class=True))
    dm.setup()
    figures, plain = _FigureLogger(), SimpleNamespace(experiment=object())  # e.g. CSV: no figures
    write_run_start(tmp_path, dm, [figures, plain])
    assert figures.figures == [("split", 0)]
    png = (tmp_path / "split.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    write_run_start(tmp_path / "alone", dm)  # without loggers (as before): the file still
    assert (tmp_path / "alone" / "split.png").is_file()


def test_the_split_image_marks_every_pixel() -> None:
    from hsi.maps import split_image

    labels = np.array([[0, 1, 1], [2, 2, 1]])
    split = {"train": np.array([[0, 1]]), "val": np.array([[1, 0]]), "test": np.array([[1, 2]])}
    np.testing.assert_array_equal(split_image(labels, split), [[0, 1, 4], [2, 4, 3]])
