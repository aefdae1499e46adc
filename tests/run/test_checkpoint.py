"""Checkpoints: today's format restores the datamodule through Lightning; format 1 still predicts;
files that are not checkpoints are named with what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hsi.data.scenes.synthetic import make_synthetic_scene
from hsi.run.checkpoint import CheckpointError, load_checkpoint
from hsi.run.inference import predict_labels

DATA = Path(__file__).parents[1] / "fixtures" / "checkpoints"
FORMAT1 = DATA / "format1_cnn2d_synthetic.ckpt"


def test_a_format1_checkpoint_still_predicts_the_same_labels() -> None:
    """Written by the code before the datamodule carried its own state (checkpoint['hsi'])."""
    checkpoint = load_checkpoint(FORMAT1)
    assert checkpoint.format == 1
    assert checkpoint.data["pca"]["components"] == 6 and checkpoint.data["patch_size"] == 7
    assert checkpoint.data["split"]["_target_"] == "hsi.data.splits.random.RandomSplit"
    net = checkpoint.classifier("cpu").net
    scene = make_synthetic_scene(height=16, width=16, bands=20, classes=3)
    labels, path = predict_labels(net, checkpoint.reduce(scene.cube), 7)
    assert path == "dense"
    np.testing.assert_array_equal(labels, np.load(DATA / "format1_cnn2d_synthetic_prediction.npy"))


def test_a_format1_checkpoint_rebuilds_its_datamodule_and_split() -> None:
    checkpoint = load_checkpoint(FORMAT1)
    datamodule = checkpoint.datamodule()
    datamodule.setup()  # raises if the rebuilt split differed from the recorded one
    for subset, coords in checkpoint.data_state["split"].items():
        np.testing.assert_array_equal(datamodule.split[subset], coords.numpy())
    recorded = checkpoint.data_state["pca"]["components"].numpy()
    np.testing.assert_allclose(datamodule.pca.components, recorded)


def test_todays_checkpoint_carries_the_datamodule_state(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.data.datamodule import HSIDataModule
    from hsi.run.training import train

    metrics = train(synthetic_cfg("trainer.max_epochs=1", "logger=none", "map=false"))
    path = Path(metrics["checkpoint"])
    contents = torch.load(path, map_location="cpu", weights_only=True)
    assert "hsi" not in contents and "HSIDataModule" in contents
    checkpoint = load_checkpoint(path)
    assert checkpoint.format == 2
    restored = HSIDataModule.load_from_checkpoint(path)  # Lightning's own mechanism
    restored.setup()
    split = np.load(tmp_path / "split.npz")
    for subset in ("train", "val", "test"):
        np.testing.assert_array_equal(restored.split[subset], split[subset])


def test_a_checkpoint_naming_the_old_split_module_still_loads(synthetic_cfg, tmp_path: Path) -> None:
    """Checkpoints written before hsi.data.splits name `hsi.data.split.RandomSplit` (hsi.data.compat)."""
    from hsi.data.datamodule import HSIDataModule
    from hsi.run.training import train

    metrics = train(synthetic_cfg("trainer.max_epochs=1", "logger=none", "map=false"))
    contents = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=True)
    contents["datamodule_hyper_parameters"]["split"]["_target_"] = "hsi.data.split.RandomSplit"
    old = tmp_path / "old.ckpt"
    torch.save(contents, old)
    for datamodule in (load_checkpoint(old).datamodule(), HSIDataModule.load_from_checkpoint(old)):
        datamodule.setup()  # raises if the rebuilt split differed from the recorded one
        assert type(datamodule.split_strategy).__module__ == "hsi.data.splits.random"


def test_a_checkpoint_naming_the_band_count_num_bands_still_loads(synthetic_cfg, tmp_path: Path) -> None:
    """Checkpoints written before the classifier's `num_bands` became `in_bands` (hsi.data.compat)."""
    from hsi.run.training import train

    metrics = train(synthetic_cfg("trainer.max_epochs=1", "logger=none", "map=false"))
    contents = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=True)
    hparams = contents["hyper_parameters"]
    hparams["num_bands"] = hparams.pop("in_bands")
    old = tmp_path / "old.ckpt"
    torch.save(contents, old)
    today = load_checkpoint(metrics["checkpoint"])
    upgraded = load_checkpoint(old)
    assert upgraded.contents["hyper_parameters"]["in_bands"] == today.contents["hyper_parameters"]["in_bands"]
    assert "num_bands" not in upgraded.contents["hyper_parameters"]
    hp = today.contents["hyper_parameters"]
    windows = torch.randn(4, 1, hp["in_bands"], hp["patch_size"], hp["patch_size"])  # (B, 1, bands, p, p)
    with torch.no_grad():
        torch.testing.assert_close(upgraded.classifier("cpu")(windows), today.classifier("cpu")(windows))


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.mkdir(), "is a folder, not a checkpoint file"),
    (lambda p: p.write_bytes(FORMAT1.read_bytes()[:5000]), "truncated"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(3000)), "truncated"),
    (lambda p: torch.save({"weight": torch.zeros(3)}, p), "not a Lightning checkpoint"),
    (lambda p: torch.save({"state_dict": {}, "epoch": 1}, p), "carries no scene information"),
])
def test_files_that_are_not_checkpoints_are_named(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "model.ckpt"
    make(path)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and "weights_only=False" not in str(caught.value)


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="Checkpoint not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
