"""Semi-supervised training (`semi=fixmatch`): unlabelled windows beside training batches, pools honoured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hsi.errors import ConfigError, DataError
from hsi.run.semi_supervised import add_unlabelled_pool
from hsi.run.training import build_datamodule
from hsi.train import train
from tests.run.test_pretraining import DISJOINT, planted

SEMI = ["semi=fixmatch", "semi.ratio=2", "trainer.max_epochs=2", "map=false"]


def test_training_batches_carry_windows_of_the_pool_only(synthetic_cfg) -> None:
    cfg = synthetic_cfg(*DISJOINT, *SEMI)
    datamodule = build_datamodule(cfg)
    info = add_unlabelled_pool(cfg, datamodule)
    assert info["pool"] == "train_side" and info["pool_pixels"] == len(datamodule.unlabelled)
    batch = next(iter(datamodule.train_dataloader()))[0]
    x, y = batch["labelled"]
    u, unknown = batch["unlabelled"]
    assert len(u) == 2 * len(x) and (unknown == -1).all() and (y >= 0).all()
    evaluated = {tuple(c) for subset in ("val", "test") for c in datamodule.split[subset].tolist()}
    p = datamodule.hparams.patch_size
    for r, c in datamodule.unlabelled.coords.tolist():  # no window reaches an evaluated pixel
        assert not any((r + i, c + j) in evaluated for i in range(-(p // 2), p // 2 + 1)
                       for j in range(-(p // 2), p // 2 + 1))


@pytest.mark.parametrize(("pool", "finite"), [("train_side", True), ("all", False)])
def test_a_planted_marker_in_val_and_test_spectra_is_never_read_with_train_side(synthetic_cfg, tmp_path: Path,
                                                                                 pool: str, finite: bool,
                                                                                 monkeypatch) -> None:
    cfg = synthetic_cfg(*DISJOINT, *SEMI, f"semi.pool={pool}", "semi.threshold=0.0")
    original = build_datamodule

    def with_marker(config):
        datamodule = original(config)
        planted(datamodule)  # NaN: any window that reads it makes the loss NaN
        return datamodule

    monkeypatch.setattr("hsi.run.training.build_datamodule", with_marker)
    if finite:
        # val/test are not evaluated on the marked cube in a way that matters here: training must finish
        cfg.test = False
        train(cfg)
        assert (tmp_path / "checkpoints").is_dir()
    else:
        with pytest.raises(DataError, match="training loss became"):
            train(cfg)


def test_a_run_records_what_it_learnt_from(synthetic_cfg, tmp_path: Path) -> None:
    metrics = train(synthetic_cfg(*DISJOINT, *SEMI, "semi.pool=all"))
    semi = json.loads((tmp_path / "metrics.json").read_text())["semi"]
    assert semi["pool"] == "all" and semi["pool_share"] == 1.0 and semi["ratio"] == 2
    assert metrics["semi"]["pool_pixels"] == 36 * 36
    ckpt = torch.load(metrics["checkpoint"], weights_only=False, map_location="cpu")
    assert ckpt["hyper_parameters"]["consistency"]["threshold"] == 0.95
    assert np.isfinite(metrics["oa"])


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=svm", "semi=fixmatch"], "scikit-learn estimator"),
    (["semi=fixmatch", "data.pca.fit=scene"], "data.pca.fit=train"),
    (["semi=fixmatch", "semi.ratio=0", "data.pca.fit=train"], "semi.ratio"),
    (["semi=fixmatch", "semi.threshold=1.5", "data.pca.fit=train"], "semi.threshold"),
    (["semi=fixmatch", "+semi.rounds=2", "data.pca.fit=train"], "semi.rounds is not a semi setting"),
])
def test_bad_semi_settings_are_refused_before_anything_runs(synthetic_cfg, tmp_path: Path,
                                                            overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        train(synthetic_cfg(*overrides))
    assert not (tmp_path / "metrics.json").exists()
