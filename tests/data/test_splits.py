"""Split strategies (random, per class, spatially disjoint, masks), leakage, PCA fit set and cache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import hsi.data.preprocessing as preprocessing
from hsi.data import HSIDataModule
from hsi.data.preprocessing import fit_pca_on
from hsi.data.splits.disjoint import DisjointSplit
from hsi.data.splits.leakage import leakage, window_mask
from hsi.data.splits.mask import MaskSplit, mask_split
from hsi.data.splits.per_class import PerClassSplit, per_class_split
from hsi.data.splits.random import RandomSplit, stratified_split

SYNTH = {"height": 40, "width": 40, "bands": 20, "classes": 4}


def _dm(pca: dict | None = None, **options) -> HSIDataModule:
    """A set-up synthetic datamodule; PCA 8 components, not cached unless `pca` says so."""
    options = {"patch_size": 7, **SYNTH, **options}
    dm = HSIDataModule("synthetic", pca={"components": 8, "cache": False, **(pca or {})}, **options)
    dm.setup()
    return dm


def _assert_disjoint(split: dict[str, np.ndarray]) -> None:
    sets = {k: {tuple(rc) for rc in v.tolist()} for k, v in split.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert all(len(sets[k]) == len(split[k]) for k in sets)


# -- random (the recipe) ----------------------------------------------------------------------
def test_default_random_split_is_unchanged() -> None:
    dm = _dm(split_seed=11)
    labels = dm.scene.labels
    rows, cols = np.nonzero(labels)
    coords = np.stack([rows, cols], axis=1)
    expected = stratified_split(labels[rows, cols] - 1, 0.9, 0.05, 11, dm.scene.class_names)[0]
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(dm.split[k], coords[expected[k]])
    assert dm.split_report == {"method": "random"}


def test_leakage_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 15, size=(6, 2))
    test = np.argwhere(np.ones((15, 15), bool))
    for patch in (1, 3, 7):
        m = patch // 2
        near = [np.abs(train - t).max(axis=1).min() <= m for t in test]
        assert leakage((15, 15), train, test, patch) == pytest.approx(np.mean(near))
        assert window_mask((15, 15), train, patch).sum() == sum(near)


def test_random_split_leaks_almost_everything() -> None:
    dm = _dm(height=48, width=48, patch_size=25, split=RandomSplit(test_ratio=0.9, val_ratio=0.0))
    assert dm.leakage() > 0.9


def test_random_split_leaks_on_salinas_a(shared_data: Path) -> None:
    dm = HSIDataModule("salinas_a", str(shared_data), pca={"components": None}, patch_size=25,
                       split=RandomSplit(test_ratio=0.9, val_ratio=0.05))
    dm.setup()
    assert dm.leakage() > 0.9


# -- per class --------------------------------------------------------------------------------
def test_per_class_counts_and_cap(caplog: pytest.LogCaptureFixture) -> None:
    targets = np.repeat(np.arange(3), [100, 30, 7])
    with caplog.at_level(logging.WARNING):
        split, report = per_class_split(targets, 20, val_ratio=0.1, seed=3, class_names=["a", "b", "c"])
    assert [int((targets[split["train"]] == c).sum()) for c in range(3)] == [20, 15, 3]
    assert report["capped"] == {"b": 15, "c": 3}
    assert "capped" in caplog.text and "c -> 3" in caplog.text
    assert [int((targets[split["val"]] == c).sum()) for c in range(3)] == [10, 3, 1]
    assert all((targets[split["test"]] == c).sum() >= 1 for c in range(3))
    parts = np.concatenate([split[k] for k in ("train", "val", "test")])
    assert sorted(parts.tolist()) == list(range(len(targets)))
    again, _ = per_class_split(targets, 20, val_ratio=0.1, seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)


def test_per_class_through_datamodule() -> None:
    dm = _dm(split=PerClassSplit(train_per_class=10))
    train = dm.split["train"]
    counts = np.bincount(dm.scene.labels[train[:, 0], train[:, 1]] - 1, minlength=dm.num_classes)
    assert counts.tolist() == [10] * dm.num_classes
    assert dm.sizes()["n_train"] == 10 * dm.num_classes
    _assert_disjoint(dm.split)


# -- spatially disjoint -----------------------------------------------------------------------
def _check_disjoint(dm: HSIDataModule) -> None:
    _assert_disjoint(dm.split)
    assert dm.leakage() == 0.0
    m = dm.hparams.patch_size // 2
    train = dm.split["train"]
    for subset in ("val", "test"):  # brute force: no evaluation pixel within a training window
        for rc in dm.split[subset]:
            assert np.abs(train - rc).max(axis=1).min() > m
    report = dm.split_report
    assert report["method"] == "disjoint" and len(report["classes"]) == dm.num_classes
    assert all(r["train"] > 0 for r in report["classes"])
    n_labelled = int((dm.scene.labels > 0).sum())
    assert sum(map(len, dm.split.values())) + report["dropped"] == n_labelled


def test_disjoint_has_no_leakage_on_synthetic() -> None:
    dm = _dm(height=64, width=64, split=DisjointSplit(block_size=8, test_ratio=0.7, val_ratio=0.1))
    _check_disjoint(dm)
    # whole blocks: no 8x8 block holds pixels of two subsets
    block_subsets: dict[tuple[int, int], str] = {}
    for k, coords in dm.split.items():
        for r, c in coords.tolist():
            assert block_subsets.setdefault((r // 8, c // 8), k) == k


def test_disjoint_has_no_leakage_on_salinas_a(shared_data: Path) -> None:
    dm = HSIDataModule("salinas_a", str(shared_data), pca={"components": None}, patch_size=25,
                       split=DisjointSplit(block_size=8, test_ratio=0.9, val_ratio=0.05))
    dm.setup()
    _check_disjoint(dm)
    assert len(dm.split["test"]) > 100


# -- masks ------------------------------------------------------------------------------------
def test_mask_split_reads_masks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    labels = _dm().scene.labels
    train = np.zeros(labels.shape, np.uint8)
    train[:, :10] = 1
    test = np.zeros(labels.shape, bool)
    test[:, 20:] = True
    val = np.zeros(labels.shape, np.int32)
    val[:, 12:16] = 3
    for name, mask in (("train", train), ("test", test), ("val", val)):
        np.save(tmp_path / f"{name}.npy", mask)
    with caplog.at_level(logging.WARNING):
        dm = _dm(split=MaskSplit(train_mask_path=str(tmp_path / "train.npy"),
                                 test_mask_path=str(tmp_path / "test.npy"),
                                 val_mask_path=str(tmp_path / "val.npy")))
    for name, mask in (("train", train), ("test", test), ("val", val)):
        np.testing.assert_array_equal(dm.split[name], np.argwhere((mask != 0) & (labels > 0)))
    assert "without a label are ignored" in caplog.text  # the synthetic scene has unlabelled pixels
    assert dm.split_report["ignored_unlabelled"]["train"] == int(((train > 0) & (labels == 0)).sum())
    # no test mask: every labelled pixel outside train and val
    dm = _dm(split={"_target_": "hsi.data.splits.mask.MaskSplit",
                    "train_mask_path": str(tmp_path / "train.npy")})
    assert len(dm.split["test"]) == int((labels > 0).sum()) - len(dm.split["train"])


def test_mask_split_rejects_overlap_and_wrong_shape() -> None:
    labels = np.ones((6, 5), np.int64)
    coords = np.argwhere(labels > 0)
    train = np.zeros((6, 5), bool)
    train[:2] = True
    with pytest.raises(ValueError, match="overlap in 10 pixels"):
        mask_split(labels, coords, train, train.copy())
    with pytest.raises(ValueError, match=r"shape \(5, 6\)"):
        mask_split(labels, coords, train, ~train.T)
    with pytest.raises(ValueError, match=r"data/split=mask needs data\.split\.train_mask_path"):
        HSIDataModule("synthetic", split={"_target_": "hsi.data.splits.mask.MaskSplit"})


# -- PCA fitted on training pixels ------------------------------------------------------------
def test_pca_fit_on_train_never_reads_other_pixels() -> None:
    rng = np.random.default_rng(0)
    cube = rng.standard_normal((12, 10, 8)).astype(np.float32)
    train = np.argwhere(rng.random((12, 10)) < 0.3)
    poisoned = np.full_like(cube, np.nan)
    poisoned[train[:, 0], train[:, 1]] = cube[train[:, 0], train[:, 1]]
    pca = fit_pca_on(poisoned, train, 4)
    assert np.isfinite(pca.components).all() and np.isfinite(pca.mean).all()
    reference = fit_pca_on(cube, train, 4)
    np.testing.assert_allclose(pca.components, reference.components)


def test_pca_fit_train_passes_only_training_spectra(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[np.ndarray] = []
    real = preprocessing.fit_pca

    def spy(pixels, *args, **kwargs):
        seen.append(np.array(pixels))
        return real(pixels, *args, **kwargs)

    monkeypatch.setattr(preprocessing, "fit_pca", spy)
    dm = _dm(pca={"fit": "train"})
    train = dm.split["train"]
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], dm.scene.cube[train[:, 0], train[:, 1]])
    seen.clear()
    _dm()  # the recipe: all pixels of the scene
    assert seen[0].shape == (SYNTH["height"] * SYNTH["width"], SYNTH["bands"])


# -- PCA cache --------------------------------------------------------------------------------
def test_pca_cache_is_hit_and_survives_corruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = preprocessing.fit_pca
    monkeypatch.setattr(preprocessing, "fit_pca", lambda *a, **k: calls.append(1) or real(*a, **k))
    options = {"cache": True, "cache_dir": str(tmp_path)}
    first = _dm(options)
    assert len(calls) == 1 and len(list(tmp_path.glob("pca-*.npz"))) == 1
    second = _dm(options)
    assert len(calls) == 1  # loaded, not refitted
    np.testing.assert_array_equal(first.pca.components, second.pca.components)
    np.testing.assert_array_equal(first.datasets["train"].padded, second.datasets["train"].padded)
    _dm({**options, "fit": "train"})  # another fit set: another entry
    _dm({**options, "whiten": False})  # other settings: another entry
    assert len(calls) == 3 and len(list(tmp_path.glob("pca-*.npz"))) == 3
    path = next(p for p in tmp_path.glob("pca-*.npz") if np.allclose(np.load(p)["components"],
                                                                       first.pca.components))
    path.write_bytes(b"not an npz")
    third = _dm(options)
    assert len(calls) == 4  # corrupt file ignored, refitted ...
    np.testing.assert_allclose(third.pca.components, first.pca.components)
    _dm(options)
    assert len(calls) == 4  # ... and rewritten


def test_disjoint_gives_a_class_confined_to_one_block_its_training_pixels() -> None:
    from hsi.data.splits.disjoint import disjoint_split

    labels = np.ones((48, 48), dtype=np.int64)
    labels[2:6, 2:6] = 2  # a small class inside a single 16x16 block
    coords = np.argwhere(labels > 0)
    split, _ = disjoint_split(labels, coords, test_ratio=0.9, block_size=16, patch_size=5, seed=0)
    targets = labels[coords[:, 0], coords[:, 1]] - 1
    assert set(targets[split["train"]].tolist()) == {0, 1}
    assert not set(split["train"]) & set(split["test"])


# -- strategies as config objects -------------------------------------------------------------
def test_strategies_round_trip_through_their_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra.utils import instantiate

    monkeypatch.chdir(tmp_path)
    strategies = [RandomSplit(0.8, 0.1), PerClassSplit(7, 0.0), DisjointSplit(0.7, 0.1, 4),
                  MaskSplit("train.npy", val_mask_path="masks/val.npy")]
    for strategy in strategies:
        config = strategy.config()
        assert config["_target_"] == f"{type(strategy).__module__}.{type(strategy).__name__}"
        assert all(v is None or isinstance(v, (int, float, str)) for v in config.values())
        assert instantiate(config) == strategy
    assert strategies[-1].config() == {"_target_": "hsi.data.splits.mask.MaskSplit",
                                       "train_mask_path": str(tmp_path / "train.npy"),
                                       "test_mask_path": None,
                                       "val_mask_path": str(tmp_path / "masks" / "val.npy")}


@pytest.mark.parametrize(("make", "message"), [
    (lambda: RandomSplit(test_ratio=1.0), r"data\.split\.test_ratio=1\.0 must lie strictly between"),
    (lambda: RandomSplit(0.5, 0.6), r"data\.split\.val_ratio=0\.6 .* below data\.split\.test_ratio=0\.5"),
    (lambda: DisjointSplit(val_ratio=-0.1), r"data\.split\.val_ratio=-0\.1"),
    (lambda: DisjointSplit(block_size=0), r"data\.split\.block_size=0 must be an integer >= 1"),
    (lambda: PerClassSplit(train_per_class=0), r"data\.split\.train_per_class=0"),
    (lambda: PerClassSplit(val_ratio=1.0), r"data\.split\.val_ratio=1\.0 must lie in \[0, 1\)"),
    (lambda: MaskSplit(), r"data/split=mask needs data\.split\.train_mask_path"),
])
def test_strategy_settings_are_checked_with_their_keys(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_old_spellings_are_refused_with_the_new_ones() -> None:
    with pytest.raises(ValueError, match=r"data/split=disjoint .* data\.split\.test_ratio=0\.8"):
        HSIDataModule("synthetic", split="disjoint")
    with pytest.raises(ValueError, match=r"data\.block_size is now data\.split\.block_size"):
        HSIDataModule("synthetic", block_size=8)
    with pytest.raises(ValueError, match=r"data\.pca_components is now data\.pca\.components"):
        HSIDataModule("synthetic", pca_components=8)
    with pytest.raises(ValueError, match=r"data\.split\.test_ratio is not a setting of PerClassSplit "
                                         r"\(data/split=per_class\); it takes train_per_class, val_ratio"):
        HSIDataModule("synthetic", split={"_target_": "hsi.data.splits.per_class.PerClassSplit",
                                          "test_ratio": 0.9})
    with pytest.raises(ValueError, match=r"not a hsi\.data\.splits\.base\.SplitStrategy"):
        HSIDataModule("synthetic", split={"_target_": "pathlib.Path"})
    with pytest.raises(ValueError, match=r"data\.pca\.component is not a PCA setting"):
        HSIDataModule("synthetic", pca={"component": 8})
    with pytest.raises(ValueError, match=r"data\.pca\.fit='test' is not one of scene, train"):
        HSIDataModule("synthetic", pca={"fit": "test"})
    with pytest.raises(ValueError, match=r"data\.pca\.components=0 must be"):
        HSIDataModule("synthetic", pca={"components": 0})


def test_disjoint_warns_when_a_class_has_no_test_pixel(caplog: pytest.LogCaptureFixture) -> None:
    labels = np.ones((8, 8), dtype=np.int64)
    labels[0, 0] = 2
    coords = np.argwhere(labels > 0)
    with caplog.at_level(logging.WARNING):  # one block: it must go to training
        split, report = DisjointSplit(test_ratio=0.5, val_ratio=0.0, block_size=8)(
            labels, coords, patch_size=3, seed=0, class_names=["a", "b"])
    assert report["blocks"] == {"train": 1, "val": 0, "test": 0} and len(split["test"]) == 0
    assert "data/split=disjoint: no test pixel left for a, b" in caplog.text


@pytest.mark.parametrize("split", [
    RandomSplit(0.8, 0.1), PerClassSplit(5, 0.1), DisjointSplit(0.7, 0.1, 8)], ids=lambda s: s.method)
def test_saved_hyperparameters_rebuild_the_same_split(split) -> None:
    dm = _dm(split=split, split_seed=5)
    assert dm.hparams["split"] == split.config()
    assert dm.hparams["pca"] == {"components": 8, "whiten": True, "fit": "scene", "cache": False,
                                 "cache_dir": None, "sample": "auto", "rescale": None}
    again = HSIDataModule(**dm.hparams)
    again.setup()
    assert again.split_strategy == split and again.split_report == dm.split_report
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(again.split[k], dm.split[k])
    np.testing.assert_array_equal(again.pca.components, dm.pca.components)


def test_saved_hyperparameters_rebuild_a_mask_split_from_another_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = _dm().scene.labels
    train = np.zeros(labels.shape, bool)
    train[:, :15] = True
    (tmp_path / "masks").mkdir()
    np.save(tmp_path / "masks" / "train.npy", train)
    monkeypatch.chdir(tmp_path)
    dm = _dm(split={"_target_": "hsi.data.splits.mask.MaskSplit", "train_mask_path": "masks/train.npy"})
    monkeypatch.chdir(tmp_path / "masks")
    again = HSIDataModule(**dm.hparams)
    again.setup()
    np.testing.assert_array_equal(again.split["train"], dm.split["train"])
    np.testing.assert_array_equal(again.split["test"], dm.split["test"])
