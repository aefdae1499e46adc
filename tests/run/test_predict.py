"""Whole-scene maps: dense == window inference; predict / evaluate from a checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hsi.data.sampling.patches import pad_cube
from hsi.data.scenes.synthetic import make_synthetic_scene
from hsi.models.dense import supports_dense
from hsi.run.inference import scene_logits
from hsi.train import train
from tests.models.zoo_walk import randomise_batchnorm

# network config, and odd patch sizes from its smallest window up to 25
DENSE_MODELS = {
    "hybridsn": ({"_target_": "hsi.models.HybridSN"}, [9, 13, 25]),
    "cnn2d": ({"_target_": "hsi.models.CNN2D"}, [7, 11, 19]),
    "cnn2d_two_layers": ({"_target_": "hsi.models.CNN2D", "channels": [32, 32]}, [5, 9]),
    "cnn3d": ({"_target_": "hsi.models.CNN3D"}, [7, 15, 23]),
}
CASES = [(model, patch) for model, (_, patches) in DENSE_MODELS.items() for patch in patches]


def _assert_paths_agree(net: torch.nn.Module, cube: np.ndarray, patch: int) -> None:
    padded = pad_cube(cube, patch)
    dense, used = scene_logits(net, padded, patch, "dense", tile_rows=7)
    window, _ = scene_logits(net, padded, patch, "window", batch_size=97)
    assert used == "dense" and dense.shape == window.shape == (dense.shape[0], *cube.shape[:2])
    torch.testing.assert_close(dense, window, rtol=1e-4, atol=1e-4)
    assert torch.equal(dense.argmax(0), window.argmax(0))


@pytest.mark.parametrize(("model", "patch"), CASES)
def test_dense_equals_window_on_synthetic(model: str, patch: int) -> None:
    from hydra.utils import instantiate

    scene = make_synthetic_scene(height=21, width=17, bands=16)  # borders: every pixel is near one
    torch.manual_seed(0)
    net = instantiate(DENSE_MODELS[model][0], in_bands=16, patch_size=patch, num_classes=6)
    assert supports_dense(net)
    randomise_batchnorm(net)
    _assert_paths_agree(net.eval(), scene.cube, patch)


def test_dense_equals_window_on_salinas_a(shared_data: Path) -> None:
    from hsi.data import load_scene
    from hsi.data.preprocessing import fit_pca
    from hsi.models import HybridSN

    scene = load_scene("salinas_a", shared_data)
    cube = fit_pca(scene.cube.reshape(-1, scene.raw_bands), 15)(scene.cube)[:40, :30]
    torch.manual_seed(0)
    net = HybridSN(15, 11, 6)
    randomise_batchnorm(net)
    _assert_paths_agree(net.eval(), cube, 11)


def test_squeeze_excitation_falls_back_to_windows() -> None:
    from hsi.models import HybridSNSE

    net = HybridSNSE(16, 9, 3).eval()
    padded = pad_cube(make_synthetic_scene(height=6, width=5, bands=16).cube, 9)
    assert not supports_dense(net)
    logits, used = scene_logits(net, padded, 9, "auto")
    assert used == "window" and logits.shape == (3, 6, 5)
    with pytest.raises(ValueError, match="use eval_path=window"):
        scene_logits(net, padded, 9, "dense")


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> Path:
    """A HybridSN checkpoint trained briefly on the synthetic scene."""
    from tests.conftest import FAST_SYNTHETIC, compose_train

    run = tmp_path_factory.mktemp("train")
    metrics = train(compose_train([*FAST_SYNTHETIC, "trainer.max_epochs=3", "logger=none"], run))
    for name in ("map.png", "prediction.npy", "prediction.png"):  # the training run's own map
        assert (run / name).is_file(), name
    assert metrics["map_eval_path"] == "dense"
    return Path(metrics["checkpoint"])


def _compose(config: str, overrides: list[str], output_dir: Path):
    from tests.conftest import compose_config

    return compose_config(config, overrides, output_dir)


def test_predict_from_a_moved_checkpoint_writes_every_file(trained_checkpoint: Path,
                                                         tmp_path: Path) -> None:
    from hsi.predict import predict

    moved = tmp_path / "elsewhere" / "model.ckpt"
    moved.parent.mkdir()
    shutil.copy(trained_checkpoint, moved)
    run = trained_checkpoint.parent.parent
    hidden = run.with_name(run.name + "_hidden")
    run.rename(hidden)  # the training run's folder is gone while predicting
    try:
        out = tmp_path / "pred"
        summary = predict(_compose("predict", [f"ckpt_path={moved}", "inference.progress=false"], out))
    finally:
        hidden.rename(run)
    for name in ("prediction.npy", "prediction.png", "map.png", "prediction.json"):
        assert (out / name).is_file(), name
    prediction = np.load(out / "prediction.npy")
    scene = make_synthetic_scene(height=24, width=24, bands=30, classes=4)
    assert prediction.shape == scene.labels.shape
    assert set(np.unique(prediction)) <= set(range(1, 5))
    labelled = scene.labels > 0
    assert summary["oa"] == pytest.approx((prediction[labelled] == scene.labels[labelled]).mean())
    assert summary["eval_path"] == "dense"
    assert json.loads((out / "prediction.json").read_text())["oa"] == summary["oa"]


def test_predict_on_a_custom_cube_and_refuse_other_band_counts(trained_checkpoint: Path,
                                                               tmp_path: Path) -> None:
    from hsi.predict import predict

    scene = make_synthetic_scene(height=24, width=24, bands=30, classes=4)
    np.save(tmp_path / "cube.npy", scene.cube[:10, :12])
    out = tmp_path / "pred"
    summary = predict(_compose("predict", [f"ckpt_path={trained_checkpoint}", "data=custom",
                                           f"data.cube_path={tmp_path / 'cube.npy'}",
                                           "inference.eval_path=window", "inference.progress=false"], out))
    assert summary["eval_path"] == "window" and "oa" not in summary  # no ground truth given
    assert np.load(out / "prediction.npy").shape == (10, 12)
    np.save(tmp_path / "cube.npy", scene.cube[:10, :12, :20])
    with pytest.raises(ValueError, match="trained on cubes with 30 bands.*this cube has 20"):
        predict(_compose("predict", [f"ckpt_path={trained_checkpoint}", "data=custom",
                                     f"data.cube_path={tmp_path / 'cube.npy'}"], tmp_path / "p2"))


def test_evaluate_reproduces_the_training_test(trained_checkpoint: Path, tmp_path: Path) -> None:
    from hsi.evaluate import evaluate

    trained = json.loads((trained_checkpoint.parent.parent / "metrics.json").read_text())
    metrics = evaluate(_compose("evaluate", [f"ckpt_path={trained_checkpoint}", "logger=none"],
                                tmp_path))
    assert metrics["n_test"] == trained["n_test"]
    if Path(trained["checkpoint"]) == trained_checkpoint:
        assert metrics["oa"] == pytest.approx(trained["oa"])
        assert metrics["kappa"] == pytest.approx(trained["kappa"])
    for name in ("metrics.json", "classification_report.txt", "confusion_matrix.csv",
                 "confusion_matrix.png", "split.npz", "map.png"):
        assert (tmp_path / name).is_file(), name
