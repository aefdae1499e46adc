"""Semi-supervised training on the scene's unlabelled pixels (`semi=fixmatch`).

Beside every batch of training windows the network sees `ratio` times as many windows around
pixels of `semi.pool` (`hsi.data.sampling.pools`: `all` or `train_side`), whose labels are never read, and
adds the consistency loss of `hsi.models.consistency.ConsistencyLoss` for them. What a run used is
recorded in metrics.json under `semi`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hsi.data.datamodule import HSIDataModule
from hsi.data.sampling.pools import check_pool, check_pool_pca, pool_mask, require_pool
from hsi.errors import ConfigError
from hsi.models.consistency import ConsistencyLoss
from hsi.run.config import settings_from

METHODS = ("none", "fixmatch")


@dataclass
class SemiSettings:
    """`semi.*` (conf/semi/): see conf/semi/fixmatch.yaml for each setting."""

    method: str = "none"
    pool: str = "train_side"
    ratio: int = 3
    weight: float = 1.0
    threshold: float = 0.95
    strong: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"semi.method={self.method!r} is not one of {', '.join(METHODS)} "
                              f"(semi=fixmatch or semi=none).")
        check_pool("semi.pool", self.pool)
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, int) or self.ratio < 1:
            raise ConfigError(f"semi.ratio={self.ratio!r} must be a whole number of at least 1 (unlabelled "
                              f"windows per labelled one in a batch; 3 is usual).")

    @classmethod
    def from_any(cls, value: Mapping[str, Any] | DictConfig | None) -> Any:
        return settings_from(cls, value, "semi")

    @property
    def active(self) -> bool:
        return self.method != "none"


def check_semi_config(cfg: DictConfig, network: bool) -> SemiSettings:
    """The run's semi-supervised settings, refused early where they cannot be honoured."""
    settings = SemiSettings.from_any(cfg.get("semi"))
    if not settings.active:
        return settings
    if not network:
        raise ConfigError("semi=fixmatch trains a network on unlabelled windows; a scikit-learn estimator "
                          "cannot: drop semi= (or set semi=none) for this model.")
    check_pool_pca("semi.pool", settings.pool, OmegaConf.select(cfg, "data.pca.fit", default="scene"),
                   OmegaConf.select(cfg, "data.pca.components", default=None))
    consistency_settings(cfg)  # weight, threshold and the strong change checked before data loads
    return settings


def consistency_settings(cfg: DictConfig) -> dict[str, Any] | None:
    """What `HSIClassifier(consistency=...)` takes, or None without semi-supervised training."""
    settings = SemiSettings.from_any(cfg.get("semi"))
    if not settings.active:
        return None
    from_config = {"weight": settings.weight, "threshold": settings.threshold, "strong": settings.strong,
                   "seed": int(cfg.seed)}
    ConsistencyLoss(**from_config)
    return from_config


def add_unlabelled_pool(cfg: DictConfig, datamodule: HSIDataModule) -> dict[str, Any] | None:
    """Attach the pool's windows to the datamodule's training batches; what metrics.json records."""
    settings = SemiSettings.from_any(cfg.get("semi"))
    if not settings.active:
        return None
    hp = datamodule.hparams
    mask = pool_mask(tuple(datamodule.scene.shape[:2]), datamodule.split, hp.patch_size, settings.pool)
    coords = require_pool(mask, "semi.pool", settings.pool, datamodule.scene.name, hp.patch_size)
    datamodule.add_unlabelled(coords, settings.ratio * hp.batch_size)
    shape = datamodule.scene.shape
    return {**dataclasses.asdict(settings), "pool_pixels": int(len(coords)),
            "pool_share": round(len(coords) / (shape[0] * shape[1]), 4)}
