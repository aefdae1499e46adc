"""Training on a raster larger than memory (`hsi.data.scenes.large_scene`): on real Salinas-A made into a
GeoTIFF here, the block-built (memory-mapped) reduced cube equals the in-memory one, PCA on a pixel
sample finds the same components, and a short training run on the streamed path records its sample."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hsi.data.datamodule import HSIDataModule
from hsi.data.preprocessing import fit_pca
from hsi.data.sampling.patches import pad_cube
from hsi.data.scenes.large_scene import StreamSettings, build_reduced_cube, load_streamed_scene, sample_pixels
from hsi.data.scenes.loading import load_custom_scene
from hsi.errors import ConfigError
from tests.conftest import compose_config, compose_train
from tests.data.geo_scenes import salinas_a_files

NODATA_ROWS = 3


@pytest.fixture(scope="module")
def raster(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("large")
    files = salinas_a_files(base, NODATA_ROWS)
    return files


def test_the_block_built_reduced_cube_equals_the_in_memory_one(raster: dict[str, Path],
                                                               tmp_path: Path) -> None:
    memory = load_custom_scene(raster["tif"], raster["gpkg"], gt_field="crop")
    streamed = load_streamed_scene(raster["tif"], raster["gpkg"], gt_field="crop", block_rows=7)
    assert streamed.cube is None and streamed.raw_bands == memory.raw_bands and streamed.shape == memory.shape
    np.testing.assert_array_equal(streamed.labels, memory.labels)
    np.testing.assert_array_equal(streamed.invalid, memory.invalid)
    assert streamed.class_names == memory.class_names and streamed.geo["crs"] == memory.geo["crs"]
    np.testing.assert_allclose(sample_pixels(streamed, None, block_rows=10),
                               memory.cube.reshape(-1, memory.raw_bands), rtol=1e-6)
    pca = fit_pca(memory.cube.reshape(-1, memory.raw_bands), 12)
    expected = pad_cube(pca(memory.cube), 9).numpy()
    mapped, report = build_reduced_cube(streamed, pca, 9, memmap_above_mb=0, memmap_dir=tmp_path,
                                        block_rows=10)
    assert report["reduced_cube"] == "memmap" and Path(report["memmap_path"]).parent == tmp_path
    assert Path(report["memmap_path"]).stat().st_size >= expected.nbytes  # kept where data.memmap_dir says
    np.testing.assert_allclose(mapped.numpy(), expected, rtol=1e-4, atol=1e-4)
    in_memory, report = build_reduced_cube(streamed, pca, 9, block_rows=83)
    assert report["reduced_cube"] == "memory"
    np.testing.assert_allclose(in_memory.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_pca_on_a_pixel_sample_finds_the_same_components(raster: dict[str, Path]) -> None:
    from hsi.data.scenes.large_scene import sample_coords

    scene = load_streamed_scene(raster["tif"], raster["gpkg"], gt_field="crop")
    every = fit_pca(sample_pixels(scene, None), 5)
    coords = sample_coords(*scene.shape, None, 1500, seed=0)
    assert coords.shape == (1500, 2) and len(np.unique(coords[:, 0] * 86 + coords[:, 1])) == 1500
    sampled = fit_pca(sample_pixels(scene, coords), 5)
    cosines = np.abs((every.components * sampled.components).sum(axis=1))
    pixels = sample_pixels(scene, None).astype(np.float64) - every.mean
    captured = [float(((pixels @ pca.components.T) ** 2).sum()) for pca in (sampled, every)]
    print(f"|cos| of components 1-5: {np.round(cosines, 5)}; variance the sample's 5 components "
          f"capture / the full fit's: {captured[0] / captured[1]:.6f}")
    assert (cosines[:2] > 0.999).all(), cosines  # the leading components (near-equal variances rotate)
    assert captured[0] / captured[1] > 0.995  # nearly the same subspace (measured 0.9974)


def test_a_streamed_datamodule_windows_equal_the_in_memory_ones(raster: dict[str, Path],
                                                                tmp_path: Path) -> None:
    options = {"scene": "custom", "cube_path": str(raster["tif"]), "gt_path": str(raster["gpkg"]),
               "gt_field": "crop", "patch_size": 9, "split_seed": 3}
    pca = {"components": 10, "sample": None, "cache": False}
    memory = HSIDataModule(**options, pca=pca, stream=False)
    streamed = HSIDataModule(**options, pca=pca, stream=True, memmap_above_mb=0, memmap_dir=str(tmp_path),
                             block_rows=10)
    memory.setup()
    streamed.setup()
    for subset in ("train", "val", "test"):
        np.testing.assert_array_equal(streamed.split[subset], memory.split[subset])
    np.testing.assert_allclose(np.abs(streamed.pca.components), np.abs(memory.pca.components), atol=1e-5)
    np.testing.assert_allclose(streamed.datasets["train"].padded.numpy(),
                               memory.datasets["train"].padded.numpy(), rtol=1e-3, atol=1e-3)
    window, target = streamed.datasets["train"][5]
    np.testing.assert_allclose(window.numpy(), memory.datasets["train"][5][0].numpy(), rtol=1e-3, atol=1e-3)
    assert int(target) == int(memory.datasets["train"][5][1])
    assert streamed.data_report["streamed"] and streamed.data_report["reduced_cube"] == "memmap"
    assert not memory.data_report["streamed"] and memory.data_report["pca_fit_pixels"] == 83 * 86


def test_a_short_training_run_on_the_streamed_path(raster: dict[str, Path], tmp_path: Path) -> None:
    from hsi.train import train

    metrics = train(compose_train([
        "data=custom", f"data.cube_path={raster['tif']}", f"data.gt_path={raster['gpkg']}",
        "data.gt_field=crop",
        "data.patch_size=9", "data.pca.components=8", "data.pca.sample=2000", "data.stream=true",
        "data.memmap_above_mb=0", "data.block_rows=16", "model=cnn2d", "trainer=cpu", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=3",
        "logger=none", "callbacks.progress_bar.refresh_rate=0"], tmp_path))
    data = json.loads((tmp_path / "metrics.json").read_text())["data"]
    assert data == metrics["data"]
    assert data["streamed"] and data["reduced_cube"] == "memmap" and data["memmap_path"] is None
    assert data["pca_sample"] == 2000 and data["pca_fit_pixels"] == 2000 and data["block_rows"] == 16
    assert metrics["map_streamed"] and 0 <= metrics["map_oa_labelled"] <= 1
    assert (tmp_path / "prediction.tif").is_file() and (tmp_path / "confidence.tif").is_file()
    from hsi.evaluate import evaluate  # the checkpoint's own streamed scene, rebuilt: same split, same test

    evaluated = evaluate(compose_config("evaluate", [
        f"ckpt_path={metrics['checkpoint']}", "logger=none", "++trainer.limit_test_batches=3"],
        tmp_path / "evaluate"))
    assert evaluated["data"]["streamed"] and evaluated["data"]["pca_fit_pixels"] is None  # the recorded PCA
    assert evaluated["oa"] == pytest.approx(metrics["oa"]) and evaluated["map_streamed"]
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        from hsi.deploy.export import export_checkpoint  # checked on the scene read whole

        meta = export_checkpoint(Path(metrics["checkpoint"]), tmp_path / "export")
        assert meta["verification"]["shape"] == [83, 86] and meta["verification"]["fp32"]["pixels"] == 83 * 86


@pytest.mark.parametrize(("settings", "words"), [
    ({"stream": "sometimes"}, "data.stream='sometimes'"),
    ({"stream_above_mb": -1}, "data.stream_above_mb=-1"),
    ({"block_rows": 0}, "data.block_rows=0"),
])
def test_bad_stream_settings_are_one_line(settings: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        StreamSettings(**settings)


def test_stream_true_on_an_array_scene_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.stream=true builds a raster scene"):
        HSIDataModule("synthetic", stream=True).load_scene()


def test_a_bad_pca_sample_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.pca.sample=1"):
        HSIDataModule("synthetic", pca={"sample": 1})


def test_nan_values_are_filled_as_in_memory_keeping_a_pixels_finite_bands(tmp_path: Path) -> None:
    """Pixels with some NaN bands keep their finite values, and a band that is NaN everywhere (a
    water-absorption band blanked by a tool) does not turn every pixel into the band means."""
    from tests.data.geo_scenes import shared_salinas_a, write_geotiff, write_polygons

    cube, gt = shared_salinas_a()
    cube = cube.astype(np.float32)
    cube[10:14, 5:40, 3:7] = np.nan  # partly NaN pixels
    cube[..., 50] = np.nan  # one band NaN everywhere
    tif = write_geotiff(tmp_path / "holes.tif", cube, nodata_rows=2)
    fields = tmp_path / "fields.gpkg"
    write_polygons(fields, gt)
    memory = load_custom_scene(tif, fields, gt_field="crop", nan_policy="fill")
    streamed = load_streamed_scene(tif, fields, gt_field="crop", nan_policy="fill", block_rows=5)
    filled = sample_pixels(streamed, None, block_rows=6)
    np.testing.assert_allclose(filled, memory.cube.reshape(-1, memory.raw_bands), rtol=1e-5, atol=1e-3)
    assert np.ptp(filled[:, 0]) > 0 and (filled[:, 50] == 0).all()  # spectra kept; the empty band 0
    np.testing.assert_array_equal(streamed.labels, memory.labels)
    coords = np.array([[12, 20], [0, 0], [40, 40]])
    np.testing.assert_allclose(sample_pixels(streamed, coords), filled[coords[:, 0] * 86 + coords[:, 1]])
