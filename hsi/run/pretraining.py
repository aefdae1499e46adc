"""Self-supervised pretraining of a network's trunk on the scene's unlabelled pixels (`pretrain=`).

`pretrain=masked` runs `hsi.models.pretext.MaskedReconstruction` on windows around the pixels of
`pretrain.pool` (`hsi.data.sampling.pools`: `all` or `train_side`) before the network is fine-tuned on the
training pixels. The trunk is saved in the run folder (`pretrain/trunk.pt`) and in a cache keyed by
everything it depends on (network, window, PCA, pool, pretext settings, seed), so a second run with
the same key (another fine-tuning setting, a rerun) reuses it instead of pretraining again;
`pretrain.trunk_path=<trunk.pt>` loads a given one after checking it fits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from hsi.data.datamodule import HSIDataModule
from hsi.data.readers.download import user_cache_dir
from hsi.data.sampling.patches import PatchDataset
from hsi.data.sampling.pools import check_pool, check_pool_pca, pool_mask, require_pool
from hsi.errors import ConfigError
from hsi.models.pretext import MaskedReconstruction, load_trunk, trunk_state
from hsi.run.config import settings_from
from hsi.run.precision import resolve_precision
from hsi.utils.files import atomic_write

log = logging.getLogger(__name__)

METHODS = ("none", "masked")
TRUNK_FORMAT = 1
RUN_FILE = Path("pretrain") / "trunk.pt"
# Lightning's debug flags that cut pretraining short as they cut training short
DEBUG_LIMITS = ("fast_dev_run", "limit_train_batches")
# settings that change the trunk (the rest say where it is kept)
_KEYED = ("method", "pool", "epochs", "samples_per_epoch", "batch_size", "lr", "weight_decay",
          "mask_ratio", "band_mask_ratio")


@dataclass
class PretrainSettings:
    """`pretrain.*` (conf/pretrain/): see conf/pretrain/masked.yaml for each setting."""

    method: str = "none"
    pool: str = "train_side"
    epochs: int = 10
    samples_per_epoch: int | None = 20000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    mask_ratio: float = 0.5
    band_mask_ratio: float = 0.25
    trunk_path: str | None = None
    cache: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"pretrain.method={self.method!r} is not one of {', '.join(METHODS)} "
                              f"(pretrain=masked or pretrain=none).")
        check_pool("pretrain.pool", self.pool)
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"pretrain.{key}={value!r} must be a whole number of at least 1.")
        if self.samples_per_epoch is not None and (isinstance(self.samples_per_epoch, bool) or not isinstance(
                self.samples_per_epoch, int) or self.samples_per_epoch < 1):
            raise ConfigError(f"pretrain.samples_per_epoch={self.samples_per_epoch!r} must be a whole number "
                              f"of at least 1, or null (every pixel of the pool each epoch).")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"pretrain.lr={self.lr!r} must be a positive number (1e-3 is usual).")

    @classmethod
    def from_any(cls, value: Mapping[str, Any] | DictConfig | None) -> Any:
        return settings_from(cls, value, "pretrain")

    @property
    def active(self) -> bool:
        return self.method != "none"

    def keyed(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _KEYED}


def check_pretrain_config(cfg: DictConfig, network: bool) -> PretrainSettings:
    """The run's pretraining settings, refused early where they cannot be honoured."""
    settings = PretrainSettings.from_any(cfg.get("pretrain"))
    if not settings.active:
        return settings
    if not network:
        raise ConfigError("pretrain=masked pretrains a network's trunk; a scikit-learn estimator has none: "
                          "drop pretrain= (or set pretrain=none) for this model.")
    check_pool_pca("pretrain.pool", settings.pool, OmegaConf.select(cfg, "data.pca.fit", default="scene"),
                   OmegaConf.select(cfg, "data.pca.components", default=None))
    return settings


def pretrain_trunk(cfg: DictConfig, datamodule: HSIDataModule, net: nn.Module) -> dict[str, Any] | None:
    """Pretrain (or load) `net`'s trunk as `cfg.pretrain` says; what metrics.json records of it."""
    settings = PretrainSettings.from_any(cfg.get("pretrain"))
    if not settings.active:
        return None
    hp = datamodule.hparams
    shape = tuple(int(n) for n in datamodule.scene.shape[:2])
    mask = pool_mask(shape, datamodule.split, hp.patch_size, settings.pool)
    coords = require_pool(mask, "pretrain.pool", settings.pool, datamodule.scene.name, hp.patch_size)
    key = trunk_key(cfg, datamodule, mask, settings)
    info: dict[str, Any] = {"method": settings.method, "pool": settings.pool, "pool_pixels": int(len(coords)),
                            "pool_share": round(len(coords) / mask.size, 4), **settings.keyed(), "key": key,
                            "patch_size": int(hp.patch_size), "pca": pca_fingerprint(datamodule)}
    cache_file = None
    cut_short = bool(OmegaConf.select(cfg, "trainer.fast_dev_run", default=None)) or \
        OmegaConf.select(cfg, "trainer.limit_train_batches", default=None) not in (None, 1.0)
    if cut_short:  # a debug run's trunk is never cached, nor a cached one used for it
        info["cut_short"] = True
    elif settings.cache:
        cache_dir = Path(settings.cache_dir) if settings.cache_dir else user_cache_dir() / "pretrain"
        cache_file = cache_dir / f"{key}.pt"
    source, saved = None, None
    if settings.trunk_path:
        source = Path(settings.trunk_path)
        if not source.is_file():
            raise ConfigError(f"pretrain.trunk_path={settings.trunk_path}: no such file; give a run's "
                              f"{RUN_FILE} or leave it null to pretrain.")
        saved = read_trunk(source, None, datamodule, mask, settings)
    elif cache_file is not None and cache_file.is_file():
        try:  # as the PCA cache: an unusable file is a cache miss, never a failed run
            saved, source = read_trunk(cache_file, key, datamodule, mask, settings), cache_file
        except ConfigError as error:
            log.warning("Ignoring the pretrained-trunk cache %s (%s); pretraining again.", cache_file, error)
    if saved is not None:
        load_trunk(net, saved["trunk"])
        info |= {"reused": str(source), "epoch_losses": saved.get("epoch_losses"), "seconds": 0.0}
        log.info("Pretrained trunk loaded from %s", source)
    else:
        start = time.perf_counter()
        with own_random_stream(int(cfg.seed)):  # a reused trunk leaves fine-tuning as a fresh one does
            losses = fit_pretext(cfg, datamodule, net, coords, settings)
        info |= {"reused": None, "epoch_losses": losses, "seconds": round(time.perf_counter() - start, 2)}
        if cache_file is not None:
            try:
                save_trunk(cache_file, net, key, mask, info)
            except OSError as error:
                log.warning("Could not write the pretrained-trunk cache %s (%s); set pretrain.cache_dir to a "
                            "writable folder or pretrain.cache=false.", cache_file, error)
    save_trunk(Path(cfg.paths.output_dir) / RUN_FILE, net, key, mask, info)
    info["trunk"] = str(RUN_FILE)
    return info


@contextmanager
def own_random_stream(seed: int) -> Iterator[None]:
    """Run the block from `seed` and give back Python's, NumPy's and torch's random states as they
    were, so the run after it (fine-tuning) draws the same numbers whether the trunk was
    pretrained now or loaded from the cache."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def fit_pretext(cfg: DictConfig, datamodule: HSIDataModule, net: nn.Module, coords: np.ndarray,
                settings: PretrainSettings) -> list[float]:
    """Masked reconstruction over windows of the pool; the trunk of `net` moves in place."""
    hp = datamodule.hparams
    padded = datamodule.datasets["train"].padded
    dataset = PatchDataset(padded, coords, np.full(len(coords), -1), hp.patch_size)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    samples = min(settings.samples_per_epoch or len(coords), len(coords))
    loader = DataLoader(dataset, batch_size=settings.batch_size,
                        sampler=RandomSampler(dataset, num_samples=samples, generator=generator))
    pretext = MaskedReconstruction(net, datamodule.in_bands, hp.patch_size, settings.mask_ratio,
                                   settings.band_mask_ratio, settings.lr, settings.weight_decay)
    trainer_cfg = cfg.get("trainer") or {}
    debug = {k: trainer_cfg[k] for k in DEBUG_LIMITS if trainer_cfg.get(k)}
    progress = trainer_cfg.get("enable_progress_bar", True) is not False and OmegaConf.select(
        cfg, "callbacks.progress_bar.refresh_rate", default=1) != 0
    trainer = L.Trainer(max_epochs=settings.epochs, accelerator=trainer_cfg.get("accelerator", "auto"),
                        devices=1, logger=False,
                        precision=resolve_precision(trainer_cfg.get("precision"),
                                                    trainer_cfg.get("accelerator"), type(net).__name__),
                        enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=progress,
                        default_root_dir=cfg.paths.output_dir, **debug)
    log.info("Pretraining the trunk (%s, pool %s: %d pixels, %d per epoch, %d epochs)", settings.method,
             settings.pool, len(coords), samples, settings.epochs)
    trainer.fit(pretext, train_dataloaders=loader)
    net.to("cpu")
    return pretext.epoch_losses


def pca_fingerprint(datamodule: HSIDataModule) -> str:
    """Digest of the fitted PCA (or "none"): a trunk reads the reduced cube it was pretrained on."""
    if datamodule.pca is None:
        return "none"
    digest = hashlib.sha256()
    for name, tensor in sorted(datamodule.pca.to_tensors().items()):
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def trunk_key(cfg: DictConfig, datamodule: HSIDataModule, mask: np.ndarray,
              settings: PretrainSettings) -> str:
    """What the trunk depends on, hashed: network, scene, window, PCA, pool, pretext settings, seed."""
    parts = {"net": OmegaConf.to_container(cfg.model.net, resolve=True), "scene": datamodule.scene.name,
             "bands": datamodule.in_bands, "patch_size": int(datamodule.hparams.patch_size),
             "pca": pca_fingerprint(datamodule),
             "pool": hashlib.sha256(np.packbits(mask).tobytes()).hexdigest(),
             "settings": settings.keyed(), "seed": int(cfg.seed), "format": TRUNK_FORMAT}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def save_trunk(path: Path, net: nn.Module, key: str, mask: np.ndarray, info: Mapping[str, Any]) -> None:
    """The trunk and what it depends on, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": TRUNK_FORMAT, "key": key, "trunk": trunk_state(net), "network": type(net).__name__,
              "pool_mask": torch.from_numpy(np.packbits(mask)), "pool_shape": list(mask.shape),
              "info": {k: v for k, v in info.items() if k != "trunk"},
              "epoch_losses": info.get("epoch_losses")}
    atomic_write(path, lambda tmp: torch.save(record, tmp))


def read_trunk(path: Path, key: str | None, datamodule: HSIDataModule, mask: np.ndarray,
               settings: PretrainSettings) -> dict[str, Any]:
    """A saved trunk, checked: same key (cache) or, for a given file, same PCA and a pool that
    reads no pixel this run's pool leaves out."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise ConfigError(f"{path} is not a pretrained trunk ({type(error).__name__}); give a run's "
                          f"{RUN_FILE}.") from None
    if not isinstance(saved, dict) or saved.get("format") != TRUNK_FORMAT:
        raise ConfigError(f"{path} is not a pretrained trunk of this hsi version; give a run's {RUN_FILE}.")
    if key is not None:
        if saved.get("key") != key:
            raise ConfigError(f"{path} holds another trunk than its name says")
        return saved
    recorded = saved.get("info") or {}
    if recorded.get("patch_size") not in (None, datamodule.hparams.patch_size) or \
            saved.get("pool_shape") != list(mask.shape):
        raise ConfigError(f"pretrain.trunk_path={path} was pretrained on another scene or window: pretrain "
                          f"again for this data.")
    if recorded.get("pca") not in (None, pca_fingerprint(datamodule)):
        raise ConfigError(f"pretrain.trunk_path={path} was pretrained on another PCA (another scene, split "
                          f"or data.pca setting): pretrain again, or use the split it was made with.")
    theirs = np.unpackbits(saved["pool_mask"].numpy())[: mask.size].reshape(mask.shape).astype(bool)
    outside = int((theirs & ~mask).sum())
    if settings.pool == "train_side" and outside:
        raise ConfigError(f"pretrain.trunk_path={path} was pretrained on {outside} pixels "
                          f"whose windows reach this run's validation or test pixels, which "
                          f"pretrain.pool=train_side forbids: pretrain again on this split.")
    return saved
