"""Old spellings in one place (`hsi.data.compat`): split targets of the modules before
`hsi.data.splits`, format-1 settings, renamed metrics.json keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsi.data import HSIDataModule
from hsi.data.compat import upgrade_format1_data, upgrade_metrics, upgrade_split_config
from hsi.data.splits.disjoint import DisjointSplit
from hsi.data.splits.fixed import FixedSplit
from hsi.data.splits.mask import MaskSplit
from hsi.data.splits.per_class import PerClassSplit
from hsi.data.splits.random import RandomSplit
from hsi.studies.jobs import read_job


@pytest.mark.parametrize(("old", "cls"), [
    ("hsi.data.split.RandomSplit", RandomSplit), ("hsi.data.split.PerClassSplit", PerClassSplit),
    ("hsi.data.split.DisjointSplit", DisjointSplit), ("hsi.data.split.MaskSplit", MaskSplit),
    ("hsi.data.literature.FixedSplit", FixedSplit)])
def test_old_split_targets_point_at_todays_modules(old: str, cls: type) -> None:
    new = upgrade_split_config({"_target_": old, "val_ratio": 0.1})
    assert new == {"_target_": f"{cls.__module__}.{cls.__name__}", "val_ratio": 0.1}
    assert upgrade_split_config(new) == new
    assert upgrade_split_config({"_target_": "hsi.data.split.NoSuchSplit"})["_target_"] == \
        "hsi.data.split.NoSuchSplit"  # refused later, naming the target


def test_a_datamodule_saved_with_an_old_split_target_rebuilds() -> None:
    dm = HSIDataModule("synthetic", height=20, width=20, bands=10, classes=3, patch_size=5,
                       pca={"components": 4, "cache": False},
                       split={"_target_": "hsi.data.split.RandomSplit", "test_ratio": 0.8, "val_ratio": 0.1})
    assert dm.split_strategy == RandomSplit(0.8, 0.1)
    assert dm.hparams["split"]["_target_"] == "hsi.data.splits.random.RandomSplit"


def test_format1_settings_move_into_their_nodes() -> None:
    flat = {"scene": "synthetic", "split": "disjoint", "test_ratio": 0.8, "val_ratio": 0.1, "block_size": 8,
            "train_per_class": 20, "train_mask_path": None, "pca_components": 6, "pca_whiten": True,
            "patch_size": 7}
    assert upgrade_format1_data(flat) == {
        "scene": "synthetic", "patch_size": 7,
        "split": {"_target_": "hsi.data.splits.disjoint.DisjointSplit", "test_ratio": 0.8, "val_ratio": 0.1,
                  "block_size": 8},
        "pca": {"components": 6, "whiten": True}}
    per_class = upgrade_format1_data({**flat, "split": "per_class"})["split"]
    assert per_class == {"_target_": "hsi.data.splits.per_class.PerClassSplit", "train_per_class": 20,
                         "val_ratio": 0.1}


def test_old_metrics_keys_are_read_with_todays_names(tmp_path: Path) -> None:
    assert upgrade_metrics({"map_inference": "dense", "oa": 0.5}) == {"map_eval_path": "dense", "oa": 0.5}
    assert upgrade_metrics({"map_inference": "x", "map_eval_path": "dense"})["map_eval_path"] == "dense"
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (job / "metrics.json").write_text(json.dumps({"oa": 0.9, "aa": 0.8, "kappa": 0.7,
                                                  "map_inference": "window"}))
    assert read_job(job).metrics["map_eval_path"] == "window"
