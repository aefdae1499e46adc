"""Every config option composes and resolves."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hsi.data.splits.fixed import FixedSplit
from hsi.run.config import CONFIG_DIR
from tests.conftest import compose_train


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


CASES = [f"{group}={option}" for group in ("data", "model", "trainer", "callbacks", "logger",
                                           "paths", "experiment", "debug")
         for option in _options(group)]


@pytest.mark.parametrize("override", CASES)
def test_every_option_composes_and_resolves(override: str, tmp_path: Path) -> None:
    extra = ["data.cube_path=cube.mat"] if override in ("data=custom",) else []
    cfg = compose_train([override, *extra], tmp_path)
    container = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k])
                 else cfg[k] for k in cfg if k != "hydra"}  # raises on a broken interpolation
    assert container["paths"]["output_dir"] == str(tmp_path)
    assert "_target_" in container["data"] and "_target_" in container["model"]


def test_defaults_are_the_recipe(tmp_path: Path) -> None:
    cfg = compose_train([], tmp_path)
    assert (cfg.data.scene, cfg.data.pca.components, cfg.data.patch_size) == ("indian_pines", 30, 25)
    assert cfg.data.pca.fit == "scene" and cfg.data.pca.whiten and cfg.data.pca.cache
    assert cfg.data.split._target_ == "hsi.data.splits.random.RandomSplit"
    assert cfg.data.split.test_ratio == 0.9 and cfg.data.split.val_ratio == 0.05
    assert cfg.data.batch_size == 32
    assert cfg.model.optimizer.lr == 1e-3 and cfg.trainer.max_epochs == 100
    assert cfg.callbacks.model_checkpoint.monitor == "val/oa"
    assert "early_stopping" not in cfg.callbacks


def test_seed_recipe_has_no_validation_and_keeps_command_line_scene(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=seed_recipe", "data=custom", "data.cube_path=x.mat"], tmp_path)
    assert cfg.data.scene == "custom" and cfg.data.split.val_ratio == 0.0
    assert cfg.data.split._target_ == "hsi.data.splits.random.RandomSplit"
    assert cfg.data.split.test_ratio == 0.9
    assert cfg.data.pca.components == 30
    assert cfg.data.split_seed == 345 and cfg.callbacks.model_checkpoint.monitor is None


def test_early_stopping_can_be_added(tmp_path: Path) -> None:
    cfg = compose_train(["callbacks=[default,early_stopping]"], tmp_path)
    assert cfg.callbacks.early_stopping.monitor == "val/oa"
    assert "model_checkpoint" in cfg.callbacks


def test_data_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSI_DATA_DIR", str(tmp_path / "scenes"))
    assert compose_train([], tmp_path).paths.data_dir == str(tmp_path / "scenes")
    monkeypatch.delenv("HSI_DATA_DIR")
    assert compose_train([], tmp_path).paths.data_dir.endswith("/data")


def test_seed_recipe_cosine_anneals_over_the_run_for_any_model(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=seed_recipe_cosine", "model=hybridsn_lite",
                         "trainer.max_epochs=7"], tmp_path)
    assert cfg.data.split_seed == 345 and cfg.data.split.val_ratio == 0.0
    assert cfg.model.net._target_ == "hsi.models.HybridSNLite"
    assert cfg.model.scheduler.T_max == 7
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.model.optimizer.lr)
    scheduler = instantiate(cfg.model.scheduler, optimizer=optimizer)
    rates = []
    for _ in range(7):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("option", _options("data/split"))
def test_every_split_composes_and_instantiates(option: str, tmp_path: Path) -> None:
    from hsi.data.splits.registry import strategies

    extra = [f"data.split.train_mask_path={tmp_path / 'train.npy'}"] if option == "mask" else []
    cfg = compose_train(["data=synthetic", f"data/split={option}", *extra], tmp_path)
    assert cfg.hydra.runtime.choices["data/split"] == option
    strategy = instantiate(cfg.data.split)
    if option.startswith("fixed_"):  # the literature's splits: one strategy, the split's name chosen
        assert isinstance(strategy, FixedSplit) and strategy.name == f"{option.removeprefix('fixed_')}_fixed"
    else:
        assert isinstance(strategy, strategies()[option]) and strategy.method == option
    assert strategy.config() == OmegaConf.to_container(cfg.data.split, resolve=True)
    assert not any(k in cfg.data for k in ("test_ratio", "val_ratio", "block_size", "pca_components"))


def test_split_keys_override_on_the_command_line(tmp_path: Path) -> None:
    cfg = compose_train(["data=synthetic", "data/split=disjoint", "data.split.block_size=8",
                         "data.pca.components=12", "data.pca.fit=train"], tmp_path)
    assert cfg.data.split == {"_target_": "hsi.data.splits.disjoint.DisjointSplit", "test_ratio": 0.9,
                              "val_ratio": 0.05, "block_size": 8, "every_class": False,
                              "margin": None, "every_field": False}
    dm = instantiate(cfg.data)
    assert dm.split_strategy.block_size == 8 and dm.hparams["split"]["block_size"] == 8
    assert dm.pca_settings.components == 12 and dm.hparams["pca"]["fit"] == "train"
    buffer = io.BytesIO()  # plain values only: a checkpoint's hyperparameters load with weights_only
    torch.save(dict(dm.hparams), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == dict(dm.hparams)
    cfg = compose_train(["experiment=seed_recipe", "data/split=disjoint"], tmp_path)
    assert cfg.data.split.block_size == 16 and cfg.data.split.val_ratio == 0.0


def test_sweep_grid_uses_the_pca_node() -> None:
    import yaml

    sweep = yaml.safe_load((CONFIG_DIR / "sweep" / "patch_pca.yaml").read_text())
    assert sweep["hydra"]["sweeper"]["params"]["data.pca.components"] == "15,20,30,40"


def test_no_config_refers_to_issue_numbers() -> None:
    import re

    for path in CONFIG_DIR.rglob("*.yaml"):
        assert not re.search(r"issue\s*#?\d", path.read_text(), re.IGNORECASE), path
