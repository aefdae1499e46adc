"""Your own scene: file formats, band-first cubes, label re-indexing and ignoring, NaN pixels."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hydra.utils import instantiate

from hsi.data import CATALOGUE, HSIDataModule, Scene, load_scene
from hsi.data.scenes.scene import build_scene
from hsi.data.splits.random import RandomSplit
from tests.conftest import compose_train

spectral_envi = pytest.importorskip("spectral.io.envi")
tifffile = pytest.importorskip("tifffile")

SMALL = {"pca": {"components": 10}, "patch_size": 5,
         "split": {"_target_": "hsi.data.splits.random.RandomSplit", "test_ratio": 0.9, "val_ratio": 0.05},
         "split_seed": 345, "batch_size": 16}


def _pair(h: int = 9, w: int = 8, b: int = 12, values=(5, 9, 12)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    cube = rng.normal(size=(h, w, b)).astype(np.float32)
    gt = np.concatenate([np.repeat(values, 4), rng.choice([0, *values], h * w - 4 * len(values))])
    return cube, rng.permutation(gt).reshape(h, w).astype(np.uint8)


def _first_batch(dm: HSIDataModule) -> list[torch.Tensor]:
    dm.setup()
    torch.manual_seed(0)
    return list(next(iter(dm.train_dataloader())))


# -- one scene, many formats ---------------------------------------------------------------
def _write_variants(cube: np.ndarray, gt: np.ndarray, out: Path) -> dict[str, dict]:
    """Salinas-A as .npy, ENVI, band-first .mat under other names and band-first GeoTIFF."""
    np.save(out / "cube.npy", cube)
    np.save(out / "gt.npy", gt)
    spectral_envi.save_image(str(out / "cube.hdr"), cube, dtype=cube.dtype, interleave="bil")
    spectral_envi.save_image(str(out / "gt.hdr"), gt[..., None], dtype=gt.dtype)
    scipy.io.savemat(out / "scene.mat", {"radiance": np.transpose(cube, (2, 0, 1)), "labels": gt,
                                         "wavelength_nm": np.linspace(400, 2500, cube.shape[2])})
    tifffile.imwrite(out / "cube.tif", np.transpose(cube, (2, 0, 1)))
    tifffile.imwrite(out / "gt.tif", gt)
    return {
        "npy": {"cube_path": str(out / "cube.npy"), "gt_path": str(out / "gt.npy")},
        "envi": {"cube_path": str(out / "cube.hdr"), "gt_path": str(out / "gt.img")},  # data file
        "mat_band_first": {"cube_path": str(out / "scene.mat"), "cube_key": "radiance",
                           "gt_key": "labels"},
        "geotiff_band_first": {"cube_path": str(out / "cube.tif"), "gt_path": str(out / "gt.tif")},
    }


def test_custom_formats_train_like_the_catalogue_scene(shared_data: Path, tmp_path: Path) -> None:
    spec = CATALOGUE["salinas_a"]
    raw = scipy.io.loadmat(shared_data / "salinas_a" / spec.cube.filename)[spec.cube.key]
    raw_gt = scipy.io.loadmat(shared_data / "salinas_a" / spec.gt.filename)[spec.gt.key]
    reference = HSIDataModule("salinas_a", str(shared_data), download=False, **SMALL)
    ref_batch = _first_batch(reference)
    for fmt, options in _write_variants(raw, raw_gt, tmp_path).items():
        dm = HSIDataModule("custom", **SMALL, **options)
        batch = _first_batch(dm)
        assert dm.scene.label_values == list(spec.label_values), fmt
        np.testing.assert_array_equal(dm.scene.cube, reference.scene.cube, err_msg=fmt)
        np.testing.assert_array_equal(dm.scene.labels, reference.scene.labels, err_msg=fmt)
        for subset in ("train", "val", "test"):
            np.testing.assert_array_equal(dm.split[subset], reference.split[subset], err_msg=fmt)
        assert len(batch) == len(ref_batch)
        for ours, theirs in zip(batch, ref_batch):
            assert torch.equal(ours, theirs), fmt


def test_envi_and_geotiff_read_as_height_width_bands(tmp_path: Path) -> None:
    cube, gt = _pair()
    spectral_envi.save_image(str(tmp_path / "c.hdr"), cube, interleave="bsq")
    tifffile.imwrite(tmp_path / "c.tif", cube)  # band-last GeoTIFF stays as it is
    np.save(tmp_path / "g.npy", gt)
    for cube_file in ("c.hdr", "c.img", "c.tif"):
        scene = load_scene("custom", cube_path=tmp_path / cube_file, gt_path=tmp_path / "g.npy")
        np.testing.assert_array_equal(scene.cube, cube, err_msg=cube_file)


def test_missing_optional_reader_says_how_to_install(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cube, gt = _pair()
    spectral_envi.save_image(str(tmp_path / "c.hdr"), cube)
    tifffile.imwrite(tmp_path / "c.tif", cube)
    for module in ("spectral", "spectral.io", "spectral.io.envi", "tifffile"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    for cube_file, package in (("c.hdr", "spectral"), ("c.tif", "tifffile")):
        with pytest.raises(ImportError, match=rf"'{package}'.*pip install -e \"\.\[io\]\""):
            load_scene("custom", cube_path=tmp_path / cube_file, gt_path=tmp_path / "g.npy")


def test_unknown_file_type_lists_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "cube.csv").write_text("1,2,3\n")
    with pytest.raises(ValueError, match=r"Unsupported file type '\.csv'.*ENVI.*GeoTIFF"):
        load_scene("custom", cube_path=tmp_path / "cube.csv")


def test_band_first_only_when_the_last_axes_match(tmp_path: Path) -> None:
    cube, gt = _pair(h=9, w=8, b=12)
    band_first = np.transpose(cube, (2, 0, 1))
    scene = build_scene("x", band_first, gt)
    np.testing.assert_array_equal(scene.cube, cube)
    scene = build_scene("x", cube, gt)  # already (H, W, B): unchanged
    np.testing.assert_array_equal(scene.cube, cube)
    with pytest.raises(ValueError, match="cube is 12x9 pixels but the ground truth is 9x9"):
        build_scene("x", band_first[:, :, :], np.zeros((9, 9), np.uint8) + 1)


def test_ground_truth_in_the_cube_file_or_missing(tmp_path: Path) -> None:
    cube, gt = _pair()
    np.savez(tmp_path / "both.npz", cube=cube, gt=gt)
    scene = load_scene("custom", cube_path=tmp_path / "both.npz")
    np.testing.assert_array_equal(scene.labels > 0, gt > 0)
    np.save(tmp_path / "cube.npy", cube)
    with pytest.raises(ValueError, match=r"ground truth.*data\.gt_path"):
        load_scene("custom", cube_path=tmp_path / "cube.npy")


# -- labels --------------------------------------------------------------------------------
def test_labels_reindexed_and_ignored(tmp_path: Path) -> None:
    cube, gt = _pair(values=(5, 9, 12))
    np.save(tmp_path / "c.npy", cube)
    np.save(tmp_path / "g.npy", gt)
    paths = {"cube_path": tmp_path / "c.npy", "gt_path": tmp_path / "g.npy"}
    scene = load_scene("custom", **paths, ignore_labels=[9], class_names=["five", "nine", "twelve"])
    assert scene.label_values == [5, 12] and scene.class_names == ["five", "twelve"]
    expected = np.select([gt == 5, gt == 12], [1, 2], 0)
    np.testing.assert_array_equal(scene.labels, expected)
    scene = load_scene("custom", **paths, ignore_labels=[9], class_names=["five", "twelve"])
    assert scene.class_names == ["five", "twelve"]
    assert scene.label_mapping()["ignored_source_values"] == [9]
    with pytest.raises(ValueError, match=r"ignore_labels lists \[7\].*\[5, 9, 12\]"):
        load_scene("custom", **paths, ignore_labels=[7])
    with pytest.raises(ValueError, match="leaves no class"):
        load_scene("custom", **paths, ignore_labels=[5, 9, 12])
    with pytest.raises(ValueError, match="data.class_names has 1 names"):
        load_scene("custom", **paths, ignore_labels=[9], class_names=["five"])


def test_catalogue_scene_ignores_labels_by_file_value(shared_data: Path) -> None:
    scene = load_scene("salinas_a", shared_data, ignore_labels=[10, 14])
    assert scene.label_values == [1, 11, 12, 13] and scene.num_classes == 4
    assert scene.class_names == ["Brocoli_green_weeds_1", "Lettuce_romaine_4wk",
                                 "Lettuce_romaine_5wk", "Lettuce_romaine_6wk"]
    np.testing.assert_array_equal(scene.class_counts(), [391, 616, 1525, 674])


def test_label_mapping_is_written_by_the_datamodule(tmp_path: Path) -> None:
    cube, gt = _pair(values=(5, 9, 12))
    np.save(tmp_path / "c.npy", cube)
    np.save(tmp_path / "g.npy", gt)
    from hsi.run.outputs import write_label_mapping

    dm = HSIDataModule("custom", pca={"components": 3}, patch_size=3,
                       split=RandomSplit(test_ratio=0.5, val_ratio=0.0),
                       cube_path=str(tmp_path / "c.npy"), gt_path=str(tmp_path / "g.npy"),
                       class_names=["a", "b", "c"], ignore_labels=[9])
    dm.setup()
    write_label_mapping(tmp_path / "run" / "label_mapping.json", dm)
    mapping = json.loads((tmp_path / "run" / "label_mapping.json").read_text())
    assert mapping["classes"] == [
        {"index": 0, "label": 1, "source_value": 5, "name": "a", "pixels": int((gt == 5).sum())},
        {"index": 1, "label": 2, "source_value": 12, "name": "c", "pixels": int((gt == 12).sum())}]
    assert mapping["ignored_source_values"] == [9] and mapping["scene"] == "custom"


# -- NaN / inf pixels ----------------------------------------------------------------------
def _with_holes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cube, gt = _pair()
    gt[0, :3] = [5, 9, 12]
    cube[0, 0, 2] = np.nan
    cube[0, 1, :] = np.inf
    cube[0, 2, 5] = -np.inf
    holes = np.zeros(gt.shape, bool)
    holes[0, :3] = True
    return cube, gt, holes


def test_nonfinite_pixels_excluded_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cube, gt, holes = _with_holes()
    with caplog.at_level(logging.WARNING):
        scene = build_scene("x", cube, gt)  # the default policy
    assert "3 pixels (3 of them labelled) hold NaN or inf" in caplog.text
    assert np.isfinite(scene.cube).all() and (scene.labels[holes] == 0).all()
    assert (scene.labels[~holes] > 0).sum() == (gt[~holes] > 0).sum()
    assert scene.excluded_pixels == 3 and scene.label_mapping()["excluded_nonfinite_pixels"] == 3
    band = cube[..., 2]
    band_mean = band[np.isfinite(band)].mean()  # the finite values of that band
    assert scene.cube[0, 0, 2] == pytest.approx(band_mean, rel=1e-5)
    np.testing.assert_array_equal(scene.cube[~holes], cube[~holes])


def test_nonfinite_pixels_filled_or_refused(caplog: pytest.LogCaptureFixture) -> None:
    cube, gt, holes = _with_holes()
    with caplog.at_level(logging.WARNING):
        scene = build_scene("x", cube, gt, nan_policy="fill")
    assert "filled with band means and their labels kept" in caplog.text
    assert np.isfinite(scene.cube).all() and (scene.labels[holes] > 0).all()
    with pytest.raises(ValueError, match=r"3 pixels .* NaN or inf.*nan_policy=exclude"):
        build_scene("x", cube, gt, nan_policy="error")
    with pytest.raises(ValueError, match="nan_policy='drop'"):
        build_scene("x", cube, gt, nan_policy="drop")
    with pytest.raises(ValueError, match="NaN or inf"):  # never silently into a Scene
        Scene("x", cube, gt, ["a", "b", "c"])


def test_hydra_config_plumbs_the_new_options(tmp_path: Path) -> None:
    cube, gt, _ = _with_holes()
    np.save(tmp_path / "c.npy", cube)
    np.save(tmp_path / "g.npy", gt)
    cfg = compose_train(["data=custom", f"data.cube_path={tmp_path / 'c.npy'}",
                         f"data.gt_path={tmp_path / 'g.npy'}", "data.ignore_labels=[12]",
                         "data.nan_policy=exclude", "data.pca.components=3", "data.patch_size=3",
                         "data.split.val_ratio=0.0", "data.split.test_ratio=0.5"], tmp_path)
    assert cfg.data.download is True
    dm: HSIDataModule = instantiate(cfg.data)
    dm.setup()
    assert dm.scene.label_values == [5, 9] and dm.scene.excluded_pixels == 2
