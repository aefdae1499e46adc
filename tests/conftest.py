"""Shared fixtures: configs composed from the real `conf/` with Hydra's compose API."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from hsi.run.config import CONFIG_DIR, PROJECT_ROOT

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# A small synthetic scene and a small window keep a training run to seconds.
FAST_SYNTHETIC = [
    "data=synthetic", "data.height=24", "data.width=24", "data.bands=30", "data.classes=4",
    "data.patch_size=9", "data.pca.components=15", "data.eval_batch_size=512",
    "trainer=cpu", "callbacks.progress_bar.refresh_rate=0",
]


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """`conf/<name>.yaml` with `overrides`, its run folder set to `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    return compose_config("train", overrides, output_dir)


@pytest.fixture
def synthetic_cfg(tmp_path: Path):
    """Factory: a fast synthetic-scene training config writing into tmp_path."""

    def make(*extra: str) -> DictConfig:
        return compose_train([*FAST_SYNTHETIC, *extra], tmp_path)

    return make


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip("../shared/data is not beside the repository")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fingerprint and PCA caches go to a temporary folder, never the user's ~/.cache/hsi."""
    monkeypatch.setenv("HSI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hsi_cache"))


def swept_rows(value: str) -> list[str]:
    """The rows a sweep's `+leaderboard` value selects (a list, or Hydra's glob over conf/leaderboard)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    rows = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "leaderboard").glob("*.yaml"))
    override = OverridesParser.create().parse_overrides([f"+leaderboard={value}"])[0]
    if isinstance(override.value(), Glob):
        return override.value().filter(rows)
    return list(override.sweep_string_iterator())


def sized_for(model: str, bands: int = 15, patch: int = 9) -> list[str]:
    """Overrides giving conf/model/<model>.yaml's network at least the input it needs (its
    `input_limits`): more PCA components (and scene bands) or a larger window than the test's own
    `bands` / `patch` where it needs them."""
    from hsi.models.zoo import smallest_input
    from hsi.run.config import CONFIG_DIR

    need_bands, need_side = smallest_input(OmegaConf.load(CONFIG_DIR / "model" / f"{model}.yaml").net)
    bands, patch = max(bands, need_bands), max(patch, need_side | 1)
    return [f"data.bands={max(30, bands)}", f"data.pca.components={bands}", f"data.patch_size={patch}"]
