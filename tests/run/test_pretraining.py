"""Self-supervised pretraining (`pretrain=masked`): pools honoured, trunk saved, reused, fine-tuned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hsi.data.sampling.patches import PatchDataset
from hsi.data.sampling.pools import pool_coords
from hsi.errors import ConfigError, DataError
from hsi.models.pretext import trunk_state
from hsi.run.dashboard import run_hparams
from hsi.run.pretraining import RUN_FILE, PretrainSettings, fit_pretext, pretrain_trunk
from hsi.run.training import build_datamodule, build_model
from hsi.train import train
from tests.conftest import FAST_SYNTHETIC, compose_train

# a disjoint split leaves room between training and evaluated blocks, so train_side keeps pixels
DISJOINT = ["data/split=disjoint", "data.split.block_size=6", "data.split.margin=3", "data.height=36",
            "data.width=36", "data.pca.fit=train",
            "model=cnn2d", "data.patch_size=7"]
QUICK = ["pretrain=masked", "pretrain.epochs=2", "pretrain.samples_per_epoch=256", "pretrain.batch_size=64"]


def planted(datamodule, value: float = float("nan")) -> torch.Tensor:
    """The padded cube with every validation and test pixel's spectrum set to `value`."""
    padded = datamodule.datasets["train"].padded
    m = datamodule.hparams.patch_size // 2
    for subset in ("val", "test"):
        coords = datamodule.split[subset]
        padded[:, coords[:, 0] + m, coords[:, 1] + m] = value
    return padded


def test_train_side_never_reads_a_validation_or_test_spectrum(synthetic_cfg) -> None:
    cfg = synthetic_cfg(*DISJOINT, *QUICK)
    datamodule = build_datamodule(cfg)
    padded = planted(datamodule)
    shape, split, p = datamodule.scene.shape[:2], datamodule.split, datamodule.hparams.patch_size
    side = pool_coords(shape, split, p, "train_side")
    everything = pool_coords(shape, split, p, "all")
    assert 0 < len(side) < len(everything)

    def windows(coords: np.ndarray) -> torch.Tensor:
        dataset = PatchDataset(padded, coords, np.zeros(len(coords)), p)
        return torch.stack([dataset[i][0] for i in range(len(dataset))])

    assert torch.isfinite(windows(side)).all()
    assert not torch.isfinite(windows(everything)).all()  # the marker is there to be read
    # the whole pretext fit on the planted cube: every loss finite with train_side ...
    net = build_model(cfg, datamodule).net
    losses = fit_pretext(cfg, datamodule, net, side, PretrainSettings(method="masked", epochs=1,
                                                                       samples_per_epoch=512))
    assert losses and np.isfinite(losses).all()
    # ... and the marker stops it at once with the whole scene
    with pytest.raises(DataError, match="non-finite"):
        fit_pretext(cfg, datamodule, net, everything, PretrainSettings(method="masked", epochs=1,
                                                                        samples_per_epoch=None))


def test_pretraining_moves_the_trunk_saves_it_and_a_rerun_reuses_it(synthetic_cfg, tmp_path: Path) -> None:
    cfg = synthetic_cfg(*DISJOINT, *QUICK, f"pretrain.cache_dir={tmp_path / 'cache'}")
    datamodule = build_datamodule(cfg)
    net = build_model(cfg, datamodule).net
    before = trunk_state(net)
    head = {k: v.clone() for k, v in net.classifier.state_dict().items()}
    info = pretrain_trunk(cfg, datamodule, net)
    after = trunk_state(net)
    assert info["reused"] is None and len(info["epoch_losses"]) == 2
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(head[k], v) for k, v in net.classifier.state_dict().items())  # head untouched
    saved = torch.load(tmp_path / RUN_FILE, weights_only=False)
    assert all(torch.equal(saved["trunk"][k], after[k]) for k in after)

    fresh = build_model(cfg, datamodule).net  # same seed, same key: the cached trunk, not a new fit
    again = pretrain_trunk(cfg, datamodule, fresh)
    assert again["reused"] and again["key"] == info["key"]
    assert all(torch.equal(trunk_state(fresh)[k], after[k]) for k in after)


def test_a_given_trunk_is_checked_against_the_run(synthetic_cfg, tmp_path: Path) -> None:
    cfg = synthetic_cfg(*DISJOINT, *QUICK, "pretrain.cache=false")
    datamodule = build_datamodule(cfg)
    pretrain_trunk(cfg, datamodule, build_model(cfg, datamodule).net)
    trunk = tmp_path / "kept.pt"
    (tmp_path / RUN_FILE).rename(trunk)
    # another window: refused in one line
    other = synthetic_cfg(*DISJOINT, *QUICK, "data.patch_size=9", "data.split.margin=4",
                          f"pretrain.trunk_path={trunk}")
    with pytest.raises(ConfigError, match="another scene or window"):
        pretrain_trunk(other, build_datamodule(other), build_model(other, build_datamodule(other)).net)
    # another split seed: another PCA (fitted on its training pixels), refused
    reseeded = synthetic_cfg(*DISJOINT, *QUICK, "data.split_seed=7", f"pretrain.trunk_path={trunk}")
    dm = build_datamodule(reseeded)
    with pytest.raises(ConfigError, match="another PCA"):
        pretrain_trunk(reseeded, dm, build_model(reseeded, dm).net)
    # the same run: loaded
    same = synthetic_cfg(*DISJOINT, *QUICK, f"pretrain.trunk_path={trunk}")
    dm = build_datamodule(same)
    assert pretrain_trunk(same, dm, build_model(same, dm).net)["reused"] == str(trunk)


def test_train_side_refuses_a_trunk_whose_pool_read_test_pixels(synthetic_cfg, tmp_path: Path) -> None:
    made = synthetic_cfg(*DISJOINT, *QUICK, "pretrain.pool=all", "pretrain.cache=false")
    dm = build_datamodule(made)
    pretrain_trunk(made, dm, build_model(made, dm).net)
    given = synthetic_cfg(*DISJOINT, *QUICK, f"pretrain.trunk_path={tmp_path / RUN_FILE}")
    dm = build_datamodule(given)
    with pytest.raises(ConfigError, match="train_side forbids"):
        pretrain_trunk(given, dm, build_model(given, dm).net)


def test_a_run_pretrains_then_fine_tunes_and_records_it(synthetic_cfg, tmp_path: Path) -> None:
    cfg = synthetic_cfg(*DISJOINT, *QUICK, "trainer.max_epochs=2", "map=false")
    metrics = train(cfg)
    recorded = json.loads((tmp_path / "metrics.json").read_text())["pretrain"]
    assert recorded["pool"] == "train_side" and recorded["pool_pixels"] > 0
    assert recorded["trunk"] == str(RUN_FILE) and (tmp_path / RUN_FILE).is_file()
    assert 0 <= metrics["oa"] <= 1
    # the checkpoint holds the fine-tuned network: its trunk moved on from the pretrained one
    ckpt = torch.load(metrics["checkpoint"], weights_only=False, map_location="cpu")
    pretrained = torch.load(tmp_path / RUN_FILE, weights_only=False)["trunk"]
    assert any(not torch.equal(ckpt["state_dict"][f"net.{k}"], v) for k, v in pretrained.items()
               if v.is_floating_point())


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=svm", "pretrain=masked"], "scikit-learn estimator"),
    (["pretrain=masked", "data.pca.fit=scene"], "data.pca.fit=train"),
    (["pretrain=masked", "pretrain.pool=nearby", "data.pca.fit=train"], "all, train_side"),
    (["pretrain=masked", "pretrain.epochs=0", "data.pca.fit=train"], "pretrain.epochs"),
    (["pretrain=masked", "+pretrain.masking=0.3", "data.pca.fit=train"], "masking is not a pretrain setting"),
])
def test_bad_pretraining_settings_are_refused_before_anything_runs(synthetic_cfg, tmp_path: Path,
                                                                   overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        train(synthetic_cfg(*overrides))
    assert not (tmp_path / "metrics.json").exists()


def test_a_reused_trunk_gives_the_same_run_as_a_fresh_one(tmp_path: Path) -> None:
    overrides = [*FAST_SYNTHETIC, *DISJOINT, *QUICK, "trainer.max_epochs=2", "map=false",
                 f"pretrain.cache_dir={tmp_path / 'cache'}"]
    first = train(compose_train(overrides, tmp_path / "fresh"))
    again = train(compose_train(overrides, tmp_path / "reused"))
    assert first["pretrain"]["reused"] is None and again["pretrain"]["reused"]
    assert (again["oa"], again["val_oa"], again["per_class_accuracy"]) == \
        (first["oa"], first["val_oa"], first["per_class_accuracy"])
    weights = [torch.load(run["checkpoint"], weights_only=False)["state_dict"] for run in (first, again)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_debug_run_pretrains_one_batch_and_never_touches_the_cache(synthetic_cfg, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    metrics = train(synthetic_cfg(*DISJOINT, "pretrain=masked", f"pretrain.cache_dir={cache}", "debug=fast"))
    assert metrics["pretrain"]["cut_short"] and len(metrics["pretrain"]["epoch_losses"]) == 1
    assert not cache.exists() and (tmp_path / RUN_FILE).is_file()


def test_tensorboard_names_the_methods_and_pools_of_a_run(synthetic_cfg) -> None:
    hparams = run_hparams(synthetic_cfg(*DISJOINT, "pretrain=masked", "semi=fixmatch", "semi.pool=all"))
    assert hparams["pretrain.method"] == "masked" and hparams["pretrain.pool"] == "train_side"
    assert hparams["semi.method"] == "fixmatch" and hparams["semi.pool"] == "all"
    assert "pretrain.cache_dir" not in hparams  # bookkeeping stays out
    plain = run_hparams(synthetic_cfg(*DISJOINT))
    assert not any(k.startswith(("pretrain", "semi")) for k in plain)


def test_an_unusable_trunk_cache_costs_the_cache_not_the_run(synthetic_cfg, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cfg = synthetic_cfg(*DISJOINT, *QUICK, f"pretrain.cache_dir={cache}")
    datamodule = build_datamodule(cfg)
    key = pretrain_trunk(cfg, datamodule, build_model(cfg, datamodule).net)["key"]
    (cache / f"{key}.pt").write_bytes(b"not a trunk")  # a truncated file: pretrained again, rewritten
    again = pretrain_trunk(cfg, datamodule, build_model(cfg, datamodule).net)
    assert again["reused"] is None and torch.load(cache / f"{key}.pt", weights_only=False)["key"] == key
    cache.rename(tmp_path / "moved")
    cache.write_text("a file where the folder should be")  # cannot be written: the run still pretrains
    assert pretrain_trunk(cfg, datamodule, build_model(cfg, datamodule).net)["reused"] is None
