"""Scenes, loaders, PCA, windows and splits on generated and real data."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from hsi.data import CATALOGUE, DatasetNotFoundError, HSIDataModule, load_scene
from hsi.data.preprocessing import fit_pca
from hsi.data.sampling.patches import PatchDataset, pad_cube
from hsi.data.scenes.synthetic import make_synthetic_scene
from hsi.data.splits.random import stratified_split
from tests.fixtures.make_fake_scenes import fake_spec


def _pair(tmp_path: Path, h: int = 12, w: int = 10, b: int = 20, classes: int = 3):
    rng = np.random.default_rng(0)
    cube = rng.integers(0, 1000, size=(h, w, b)).astype(np.int16)
    gt = rng.integers(0, classes + 1, size=(h, w)).astype(np.uint8)
    return cube, gt


def _save_mat_v73(path: Path, **arrays: np.ndarray) -> None:
    """A MATLAB v7.3 file: HDF5 behind a 512-byte MATLAB header, arrays column-major."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in arrays.items():
            f[key] = value.T
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\x00"))


# -- windows -------------------------------------------------------------------------------
@pytest.mark.parametrize("patch", [1, 3, 7])
def test_window_equals_padded_slice_including_borders(patch: int) -> None:
    rng = np.random.default_rng(1)
    cube = rng.standard_normal((6, 5, 4)).astype(np.float32)
    m = patch // 2
    reference = np.pad(cube, ((m, m), (m, m), (0, 0)))
    rows, cols = np.indices((6, 5)).reshape(2, -1)
    ds = PatchDataset(pad_cube(cube, patch), np.stack([rows, cols], 1), np.zeros(30), patch)
    for i, (r, c) in enumerate(zip(rows, cols)):
        window, _ = ds[i]
        assert window.shape == (1, 4, patch, patch)
        expected = reference[r:r + patch, c:c + patch].transpose(2, 0, 1)
        np.testing.assert_array_equal(window[0].numpy(), expected)
        np.testing.assert_array_equal(window[0, :, m, m].numpy(), cube[r, c])
    corner, _ = ds[0]
    if patch > 1:  # the top-left window reaches into the zero padding
        assert torch.all(corner[0, :, :m, :] == 0) and torch.all(corner[0, :, :, :m] == 0)


def test_windows_share_one_padded_cube() -> None:
    dm = HSIDataModule("synthetic", pca={"components": 10}, patch_size=7, height=20, width=20, bands=20)
    dm.setup()
    tensors = {id(ds.padded) for ds in dm.datasets.values()}
    assert len(tensors) == 1


# -- split ---------------------------------------------------------------------------------
def test_split_is_disjoint_stratified_and_reproducible() -> None:
    targets = np.repeat(np.arange(4), [40, 100, 200, 60])
    split = stratified_split(targets, test_ratio=0.9, val_ratio=0.05, seed=7)[0]
    sets = [set(split[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == set(range(len(targets)))
    assert len(split["train"]) == 40 and len(split["val"]) == 20
    for c, n in enumerate([40, 100, 200, 60]):  # each class keeps its share within one pixel
        assert abs((targets[split["train"]] == c).sum() - 0.1 * n) <= 1
        assert abs((targets[split["val"]] == c).sum() - 0.05 * n) <= 1
    again = stratified_split(targets, test_ratio=0.9, val_ratio=0.05, seed=7)[0]
    other = stratified_split(targets, test_ratio=0.9, val_ratio=0.05, seed=8)[0]
    assert all(np.array_equal(split[k], again[k]) for k in split)
    assert not np.array_equal(split["train"], other["train"])


def test_split_without_validation() -> None:
    split = stratified_split(np.repeat([0, 1], 50), test_ratio=0.9, val_ratio=0.0, seed=0)[0]
    assert len(split["val"]) == 0 and len(split["train"]) + len(split["test"]) == 100


def test_class_too_small_to_split_is_named() -> None:
    targets = np.array([0] * 50 + [1])
    with pytest.raises(ValueError, match=r"Too few labelled pixels.*b \(1 pixels\)"):
        stratified_split(targets, 0.9, 0.0, 0, class_names=["a", "b"])[0]
    targets = np.array([0] * 50 + [1] * 4)
    with pytest.raises(ValueError, match="no training pixel is left for b"):
        stratified_split(targets, 0.9, 0.0, 0, class_names=["a", "b"])[0]


def test_saved_split_matches_datamodule(tmp_path: Path) -> None:
    from hsi.run.outputs import write_split

    dm = HSIDataModule("synthetic", pca={"components": 10}, patch_size=5, height=20, width=20, bands=20)
    dm.setup()
    write_split(tmp_path / "split.npz", dm)
    saved = np.load(tmp_path / "split.npz")
    for subset in ("train", "val", "test"):
        np.testing.assert_array_equal(saved[subset], dm.split[subset])
        np.testing.assert_array_equal(dm.datasets[subset].targets.numpy(),
                                      saved["labels"][tuple(saved[subset].T)] - 1)


# -- PCA -----------------------------------------------------------------------------------
def test_pca_whitens_and_matches_sklearn() -> None:
    from sklearn.decomposition import PCA

    scene = make_synthetic_scene(height=20, width=20, bands=30)
    pixels = scene.cube.reshape(-1, 30)
    pca = fit_pca(pixels, 5, whiten=True)
    reduced = pca(scene.cube).reshape(-1, 5)
    np.testing.assert_allclose(reduced.std(axis=0, ddof=1), 1.0, rtol=1e-3)
    expected = PCA(5, whiten=True).fit_transform(pixels.astype(np.float64))
    np.testing.assert_allclose(np.abs(reduced), np.abs(expected), atol=1e-3)


def test_more_components_than_bands_is_refused() -> None:
    dm = HSIDataModule("synthetic", pca={"components": 40}, patch_size=5, bands=20)
    with pytest.raises(ValueError, match=r"data\.pca\.components=40 but the cube has 20 bands"):
        dm.setup()


def test_even_patch_size_is_refused() -> None:
    with pytest.raises(ValueError, match="patch_size=24.*must be odd"):
        HSIDataModule("synthetic", patch_size=24)


# -- scenes --------------------------------------------------------------------------------
def test_synthetic_scene_is_deterministic_and_coherent() -> None:
    a, b = make_synthetic_scene(seed=3), make_synthetic_scene(seed=3)
    np.testing.assert_array_equal(a.cube, b.cube)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.cube, make_synthetic_scene(seed=4).cube)
    assert set(np.unique(a.labels)) == set(range(a.num_classes + 1))
    # spatial coherence: most labelled neighbours share their class
    left, right = a.labels[:, :-1], a.labels[:, 1:]
    both = (left > 0) & (right > 0)
    assert (left[both] == right[both]).mean() > 0.9


def test_custom_scene_from_mat_v5_v73_and_npy(tmp_path: Path) -> None:
    cube, gt = _pair(tmp_path)
    scipy.io.savemat(tmp_path / "v5.mat", {"cube": cube, "gt": gt})
    _save_mat_v73(tmp_path / "v73.mat", cube=cube, gt=gt)
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "gt.npy", gt)
    for cube_path, gt_path in [("v5.mat", None), ("v73.mat", None), ("cube.npy", "gt.npy")]:
        scene = load_scene("custom", cube_path=tmp_path / cube_path,
                           gt_path=None if gt_path is None else tmp_path / gt_path)
        np.testing.assert_array_equal(scene.cube, cube.astype(np.float32))
        np.testing.assert_array_equal(scene.labels, gt)
        assert scene.cube.dtype == np.float32


def test_custom_labels_are_reindexed(tmp_path: Path) -> None:
    cube = np.ones((4, 4, 3))
    gt = np.array([[0, 5, 5, 9]] * 4)
    np.save(tmp_path / "c.npy", cube)
    np.save(tmp_path / "g.npy", gt)
    scene = load_scene("custom", cube_path=tmp_path / "c.npy", gt_path=tmp_path / "g.npy",
                       class_names=["five", "nine"])
    assert scene.labels.max() == 2 and scene.label_values == [5, 9]
    assert scene.class_names == ["five", "nine"]


def test_missing_key_lists_the_keys_there(tmp_path: Path) -> None:
    cube, gt = _pair(tmp_path)
    scipy.io.savemat(tmp_path / "s.mat", {"cube": cube, "gt": gt})
    with pytest.raises(KeyError, match=r"no variable 'data'.*cube \(12, 10, 20\), gt \(12, 10\)"):
        load_scene("custom", cube_path=tmp_path / "s.mat", cube_key="data")


def test_shape_mismatch_is_refused(tmp_path: Path) -> None:
    cube, gt = _pair(tmp_path)
    np.save(tmp_path / "c.npy", cube)
    np.save(tmp_path / "g.npy", gt[:, :-1])
    with pytest.raises(ValueError, match=r"cube is 12x10 pixels but the ground truth is 12x9"):
        load_scene("custom", cube_path=tmp_path / "c.npy", gt_path=tmp_path / "g.npy")


def test_negative_or_fractional_labels_are_refused(tmp_path: Path) -> None:
    cube, gt = _pair(tmp_path)
    np.save(tmp_path / "c.npy", cube)
    np.save(tmp_path / "g.npy", gt.astype(np.int16) - 1)
    with pytest.raises(ValueError, match="negative"):
        load_scene("custom", cube_path=tmp_path / "c.npy", gt_path=tmp_path / "g.npy")
    np.save(tmp_path / "g.npy", gt + 0.5)
    with pytest.raises(ValueError, match="non-integer"):
        load_scene("custom", cube_path=tmp_path / "c.npy", gt_path=tmp_path / "g.npy")


def test_missing_files_raise_dataset_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_scene("indian_pines", tmp_path)
    message = str(err.value)
    assert "Indian_pines_corrected.mat" in message and "Indian_pines_gt.mat" in message
    assert str(tmp_path / "indian_pines") in message and "HSI_DATA_DIR" in message
    assert "data=custom" in message
    with pytest.raises(FileNotFoundError, match="File not found"):
        load_scene("custom", cube_path=tmp_path / "nope.mat")


def test_fake_catalogue_files_load_with_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny Salinas-A in the EHU on-disk format: file names, variable names, dtypes."""
    spec = CATALOGUE["salinas_a"]
    folder = tmp_path / "salinas_a"
    folder.mkdir()
    rng = np.random.default_rng(0)
    gt = rng.choice([0, 1, 10, 11, 12, 13, 14], size=(9, 8)).astype(np.uint8)
    gt.flat[:6] = [1, 10, 11, 12, 13, 14]
    scipy.io.savemat(folder / spec.cube.filename,
                     {spec.cube.key: rng.integers(0, 9000, (9, 8, 204)).astype(np.int16)})
    scipy.io.savemat(folder / spec.gt.filename, {spec.gt.key: gt})
    # the fakes' own shape and fingerprints, so that verification accepts them
    monkeypatch.setitem(CATALOGUE, "salinas_a", fake_spec("salinas_a", folder))
    scene = load_scene("salinas_a", tmp_path)
    assert scene.labels.max() == 6 and scene.label_values == [1, 10, 11, 12, 13, 14]
    lookup = dict(zip([0, 1, 10, 11, 12, 13, 14], range(7)))
    np.testing.assert_array_equal(scene.labels, np.vectorize(lookup.get)(gt))


def test_real_salinas_a(shared_data: Path) -> None:
    scene = load_scene("salinas_a", shared_data)
    spec = CATALOGUE["salinas_a"]
    assert scene.cube.shape == spec.cube_shape
    assert scene.class_names[1] == "Corn_senesced_green_weeds"
    np.testing.assert_array_equal(scene.class_counts(), spec.class_counts)


def test_real_indian_pines_8bit_pairs_with_gt(shared_data: Path) -> None:
    scene = load_scene("custom", cube_path=shared_data / "indian_pines_8bit/IP_200_M.mat",
                       gt_path=shared_data / "indian_pines/Indian_pines_gt.mat")
    spec = CATALOGUE["indian_pines"]
    assert scene.cube.shape == spec.cube_shape
    np.testing.assert_array_equal(scene.class_counts(), spec.class_counts)


# -- the datamodule's checkpoint state ------------------------------------------------------
STATE_SCENE = {"height": 24, "width": 24, "bands": 20, "classes": 3}


def _state_dm(components: int | None = 6, **options) -> HSIDataModule:
    return HSIDataModule("synthetic", pca={"components": components, "cache": False}, patch_size=5,
                         split_seed=3, **{**STATE_SCENE, **options})


def test_state_dict_is_plain_and_complete(tmp_path: Path) -> None:
    from hsi.data.datamodule import STATE_FORMAT
    from hsi.maps import class_colours

    dm = _state_dm()
    assert dm.state_dict() == {}
    dm.setup()
    state = dm.state_dict()
    torch.save(state, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    assert loaded["format_version"] == STATE_FORMAT == 2
    assert (loaded["scene"], loaded["raw_bands"], loaded["shape"], loaded["patch_size"]) == (
        "synthetic", 20, [24, 24], 5)
    assert loaded["class_names"] == dm.class_names and loaded["label_values"] == [1, 2, 3]
    assert loaded["rgb_bands"] is None
    assert loaded["colours"] == class_colours(3)[1:].tolist()
    for k in ("mean", "components", "scale"):
        assert loaded["pca"][k].dtype == torch.float64
        np.testing.assert_array_equal(loaded["pca"][k].numpy(), getattr(dm.pca, k))
    for k in ("train", "val", "test"):
        assert loaded["split"][k].dtype == torch.int64 and loaded["split"][k].shape[1] == 2
        np.testing.assert_array_equal(loaded["split"][k].numpy(), dm.split[k])
    none = _state_dm(components=None)
    none.setup()
    assert none.state_dict()["pca"] is None


def test_loaded_state_gives_the_recorded_pca_and_split(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import hsi.data.preprocessing as preprocessing

    dm = _state_dm()
    dm.setup()
    torch.save(dm.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    monkeypatch.setattr(preprocessing, "fit_pca", None)  # neither fitted ...
    monkeypatch.setattr(preprocessing, "cached_fit_pca", None)  # ... nor read from the cache
    fresh = HSIDataModule(**dm.hparams)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["format_version"] == 2  # held until setup
    fresh.setup()
    for k in ("mean", "components", "scale"):
        np.testing.assert_array_equal(getattr(fresh.pca, k), getattr(dm.pca, k))
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(fresh.split[k], dm.split[k])
    assert torch.equal(fresh.datasets["train"].padded, dm.datasets["train"].padded)
    fresh.load_state_dict(state)  # after setup (Lightning's resume): checked, nothing changes
    assert fresh.state_dict()["pca"]["components"].equal(state["pca"]["components"])


def test_changed_scene_is_refused(tmp_path: Path) -> None:
    dm = _state_dm()
    dm.setup()
    state = dm.state_dict()
    other = _state_dm(seed=1)  # another synthetic scene of the same size and classes
    other.load_state_dict(state)
    with pytest.raises(ValueError, match=r"The train split rebuilt from scene 'synthetic' differs "
                                         r"from the one recorded in the checkpoint.*data_dir"):
        other.setup()
    other = _state_dm(seed=1)
    other.setup()
    with pytest.raises(ValueError, match="split rebuilt from scene 'synthetic' differs"):
        other.load_state_dict(state)


def test_other_settings_than_recorded_are_named() -> None:
    dm = _state_dm()
    dm.setup()
    state = dm.state_dict()
    other = _state_dm(components=4)
    other.setup()
    with pytest.raises(ValueError, match=r"pca_components \(checkpoint 6, here 4\)"):
        other.load_state_dict(state)
    renamed = {**state, "class_names": ["a", "b", "c"], "patch_size": 7}
    with pytest.raises(ValueError, match=r"patch_size \(checkpoint 7, here 5\); class_names"):
        dm.load_state_dict(renamed)
    with pytest.raises(ValueError, match="format 1"):
        dm.load_state_dict({**state, "format_version": 1})
    fresh = _state_dm()  # a state without the scene's shape (format 1 did not record it) still loads
    fresh.load_state_dict({**state, "shape": None})
    fresh.setup()
    np.testing.assert_array_equal(fresh.pca.components, dm.pca.components)


def test_lightning_checkpoint_restores_the_datamodule(tmp_path: Path) -> None:
    import lightning as L

    from hsi.data.datamodule import STATE_FORMAT

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0].mean(dim=(1, 2, 3, 4), keepdim=False)[:, None]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    def trainer(steps: int) -> L.Trainer:
        return L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         limit_val_batches=0)

    dm = _state_dm()
    first = trainer(1)
    first.fit(Tiny(), datamodule=dm)
    first.save_checkpoint(tmp_path / "last.ckpt")
    trainer(2).fit(Tiny(), datamodule=_state_dm(), ckpt_path=tmp_path / "last.ckpt")  # resumes
    with pytest.raises(ValueError, match="split rebuilt from scene 'synthetic' differs"):
        trainer(2).fit(Tiny(), datamodule=_state_dm(seed=1), ckpt_path=tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["HSIDataModule"]["format_version"] == STATE_FORMAT
    restored = HSIDataModule.load_from_checkpoint(tmp_path / "last.ckpt")
    restored.setup()
    np.testing.assert_array_equal(restored.pca.components, dm.pca.components)
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(restored.split[k], dm.split[k])


def test_state_dict_holds_exactly_the_documented_keys() -> None:
    dm = _state_dm()
    dm.setup()
    assert sorted(dm.state_dict()) == sorted([
        "format_version", "scene", "raw_bands", "shape", "patch_size", "pca", "split",
        "class_names", "label_values", "rgb_bands", "colours", "geo"])


def test_state_of_a_catalogue_scene_has_its_display_bands(shared_data: Path) -> None:
    dm = HSIDataModule("salinas_a", str(shared_data), pca={"components": None}, patch_size=3,
                       download=False)
    dm.setup()
    state = dm.state_dict()
    spec = CATALOGUE["salinas_a"]
    assert state["rgb_bands"] == list(spec.rgb_bands) and state["pca"] is None
    assert state["label_values"] == list(spec.label_values) and state["raw_bands"] == spec.cube_shape[2]
