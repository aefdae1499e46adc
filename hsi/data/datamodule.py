"""LightningDataModule: scene -> split -> PCA -> padded cube -> window (or tile) loaders.

The datamodule carries its own checkpoint state: Lightning saves `state_dict()` (scene, window,
fitted PCA, split, classes) into every checkpoint under "HSIDataModule" and gives it back to
`load_state_dict` on resume and in `HSIDataModule.load_from_checkpoint`. A datamodule that
loaded a state before `setup()` rebuilds the scene and the split, checks the split against the
recorded one and applies the recorded PCA instead of fitting one.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, RandomSampler

from hsi.data.compat import STATE_FORMAT, refuse_renamed_keys, upgrade_augment_config, upgrade_split_config
from hsi.data.preprocessing import PCASettings, PCATransform, cached_fit_pca, fit_minmax
from hsi.data.readers.download import user_cache_dir
from hsi.data.sampling.augment import BatchAugment
from hsi.data.sampling.patches import (
    EVAL_PATHS,
    PatchDataset,
    TileDataset,
    check_patch_size,
    first_item,
    pad_cube,
)
from hsi.data.scenes.catalogue import CATALOGUE, prepare_scene
from hsi.data.scenes.large_scene import (
    AUTO_SAMPLE,
    StreamedScene,
    StreamSettings,
    build_reduced_cube,
    load_streamed_scene,
    sample_coords,
    sample_pixels,
)
from hsi.data.scenes.loading import load_scene
from hsi.data.scenes.scene import Scene
from hsi.data.splits.base import SplitStrategy
from hsi.data.splits.leakage import leakage, split_audit
from hsi.data.splits.registry import build_strategy
from hsi.errors import ConfigError, DataError
from hsi.maps import class_colours
from hsi.utils.tiles import capped_tile_rows

log = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")


class HSIDataModule(L.LightningDataModule):
    """Windows around labelled pixels of one scene, split into train / val / test.

    `pca`: `PCASettings` or a mapping of its fields (`data.pca.*`; None: the defaults).
    `split`: a `hsi.data.splits` strategy, or a mapping with its `_target_` (`data/split=...`;
    None: `RandomSplit()`, the recipe). `split_seed` seeds the split and the PCA fit.
    `eval_path` (`data.eval_path`): how validation and test run; `window` cuts every pixel's
    window (`PatchDataset`), `dense` feeds row tiles of the padded scene (`TileDataset`, at most
    `eval_tile_rows` output rows each) to a dense-capable network, `auto` chooses dense when the
    network allows it, which only the model knows: see `use_dense_evaluation`. `augment`
    (`augment=none|flips|spectral|all`, written to `data.augment`): a `BatchAugment` or a
    mapping of its settings, applied to training batches on their device
    (`on_after_batch_transfer`); None or one with everything off changes nothing. `stream`,
    `stream_above_mb`, `memmap_above_mb`, `memmap_dir`, `block_rows` (`data.*`): a raster scene
    built block by block, its reduced cube memory-mapped when large (`StreamSettings`). Scene
    options not named here (`cube_path`, `height`, ...) go to `load_scene`. The saved
    hyperparameters are plain values, so `HSIDataModule(**datamodule.hparams)` rebuilds it.
    """

    def __init__(self, scene: str | Scene = "indian_pines", data_dir: str | None = None,
                 pca: PCASettings | Mapping[str, Any] | None = None, patch_size: int = 25,
                 split: SplitStrategy | Mapping[str, Any] | None = None, split_seed: int = 345,
                 batch_size: int = 32, eval_batch_size: int = 64, num_workers: int = 0,
                 pin_memory: bool = False, eval_path: str = "auto", eval_tile_rows: int = 128,
                 augment: BatchAugment | Mapping[str, Any] | None = None, stream: str | bool = "auto",
                 stream_above_mb: float = 1024, memmap_above_mb: float = 1024,
                 memmap_dir: str | None = None, block_rows: int | None = None,
                 **scene_options: Any) -> None:
        super().__init__()
        refuse_renamed_keys(scene_options)
        check_patch_size(patch_size)
        check_eval_settings(eval_path, eval_tile_rows)
        self.stream_settings = StreamSettings(stream, stream_above_mb, memmap_above_mb, memmap_dir,
                                              block_rows)
        self.pca_settings = PCASettings.from_any(_plain(pca))
        self.split_strategy = split_strategy(split)
        augmenter = BatchAugment.from_any(upgrade_augment_config(_plain(augment)))
        self.augment = augmenter if augmenter is not None and augmenter.active else None
        self.save_hyperparameters(ignore=["scene", "pca", "split", "augment"] if isinstance(scene, Scene)
                                  else ["pca", "split", "augment"], logger=False)
        # Absolute paths and plain values, so the hyperparameters saved in a checkpoint
        # rebuild the same scene from any folder (hsi.evaluate, hsi.predict).
        self.scene_options = _plain_options(scene_options)
        self.hparams.update(data_dir=_absolute(data_dir), pca=self.pca_settings.config(),
                            memmap_dir=_absolute(memmap_dir),
                            split=self.split_strategy.config(),
                            augment=None if self.augment is None else self.augment.config(),
                            **self.scene_options)
        self._hparams_initial = copy.deepcopy(self._hparams)
        self._scene_arg = scene
        self.scene: Scene | None = None
        self.pca: PCATransform | None = None
        self.split: dict[str, np.ndarray] = {}
        self.split_report: dict[str, Any] = {}
        self.datasets: dict[str, PatchDataset] = {}
        self._tiles: dict[str, TileDataset] = {}  # evaluation subsets as row tiles, built on demand
        self._dense_evaluation: bool | None = None  # set by use_dense_evaluation()
        self._recorded: dict[str, Any] | None = None  # a loaded state waiting for setup()
        self.data_report: dict[str, Any] = {}  # how the cube was built and PCA fitted (metrics.json "data")
        self.unlabelled: PatchDataset | None = None  # windows drawn beside training batches (semi=)
        self.unlabelled_batch_size = 0

    # -- set-up -----------------------------------------------------------------------------
    def load_scene(self) -> Scene:
        """The scene alone (no PCA, no split): for prediction and maps."""
        if isinstance(self._scene_arg, Scene):
            return self._scene_arg
        if self.stream_settings.streams(self._scene_arg, self.scene_options):
            return load_streamed_scene(**self.scene_options, block_rows=self.hparams.block_rows)
        return load_scene(self._scene_arg, self.hparams.data_dir, **self.scene_options)

    def prepare_data(self) -> None:
        """Download a catalogue scene's missing files (once, on one process) when allowed."""
        scene = self._scene_arg
        if (isinstance(scene, str) and scene in CATALOGUE and self.scene_options.get("download")
                and self.hparams.data_dir is not None):
            prepare_scene(scene, self.hparams.data_dir, download=True)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        scene = self.load_scene()
        check_window_fits(hp.patch_size, scene)
        rows, cols = np.nonzero(scene.labels)  # row-major, as the notebook orders its windows
        coords = np.stack([rows, cols], axis=1)
        indices, report = self.split_strategy(scene.labels, coords, hp.patch_size, hp.split_seed,
                                              scene.class_names)
        split = {k: coords[indices[k]] for k in SUBSETS}
        recorded = self._recorded
        if recorded is not None:
            _check_settings(recorded, self._settings(scene))
            _check_split(recorded, split, scene.name)
            pca = PCATransform.from_tensors(recorded.get("pca"))
        else:
            pca = self._fit_pca(scene, split["train"]) if self.pca_settings.transforms else None
        streamed = isinstance(scene, StreamedScene)
        if streamed:  # the padded reduced cube built block by block, memory-mapped when large
            padded, built = build_reduced_cube(scene, pca, hp.patch_size, hp.memmap_above_mb, hp.memmap_dir,
                                               hp.block_rows)
        else:
            padded, built = pad_cube(scene.cube if pca is None else pca(scene.cube), hp.patch_size), {}
        self.data_report = {"streamed": streamed, **built, "pca_sample": self.pca_settings.sample,
                            "pca_fit_pixels": self.data_report.get("pca_fit_pixels")}
        self.scene, self.pca, self.split, self.split_report = scene, pca, split, report
        self._recorded = None
        for subset, subset_coords in split.items():
            subset_targets = scene.labels[subset_coords[:, 0], subset_coords[:, 1]] - 1
            self.datasets[subset] = PatchDataset(padded, subset_coords, subset_targets,
                                                 hp.patch_size)

    def _fit_pca(self, scene: Scene, train: np.ndarray) -> PCATransform:
        """PCA fitted on the whole scene or on the training pixels only (`data.pca.fit`), cached."""
        settings, seed = self.pca_settings, self.hparams.split_seed
        streamed = isinstance(scene, StreamedScene)
        sample = settings.sample if settings.sample != "auto" else AUTO_SAMPLE if streamed else None
        coords = sample_coords(*scene.shape, train if settings.fit == "train" else None, sample, seed)
        self.data_report["pca_fit_pixels"] = int(np.prod(scene.shape)) if coords is None else len(coords)
        cache_dir = None
        if settings.cache:
            cache_dir = settings.cache_dir or user_cache_dir() / "pca"
        if streamed:  # only the sampled spectra are read: (N, 1, bands) is the "cube" PCA sees
            pixels = sample_pixels(scene, coords, self.hparams.block_rows)[:, None, :]
            if settings.rescale is not None:
                return fit_minmax(pixels, settings.rescale)
            return cached_fit_pca(pixels, None, settings.components, settings.whiten, seed, scene.name,
                                  cache_dir)
        if settings.rescale is not None:
            return fit_minmax(scene.cube if coords is None else scene.cube[coords[:, 0], coords[:, 1]],
                              settings.rescale)
        return cached_fit_pca(scene.cube, coords, settings.components, settings.whiten, seed, scene.name,
                              cache_dir)

    # -- checkpoint state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Scene, window, fitted PCA, split and classes: tensors and plain values only.

        Empty before `setup()` (unless a loaded state is waiting for it).
        """
        if self.scene is None:
            return dict(self._recorded) if self._recorded is not None else {}
        scene, pca = self.scene, self.pca
        spec = CATALOGUE.get(scene.name)
        return {
            "format_version": STATE_FORMAT,
            "scene": scene.name,
            "raw_bands": int(scene.raw_bands),
            "shape": [int(n) for n in scene.shape],
            "patch_size": int(self.hparams.patch_size),
            "pca": None if pca is None else pca.to_tensors(),
            "split": {k: torch.as_tensor(np.asarray(v, dtype=np.int64).reshape(-1, 2))
                      for k, v in self.split.items()},
            "class_names": list(scene.class_names),
            "label_values": [int(v) for v in scene.label_values],
            "rgb_bands": [int(b) for b in spec.rgb_bands] if spec is not None else None,
            "colours": class_colours(scene.num_classes)[1:].tolist(),
            "geo": scene.geo,  # a raster's CRS, transform, nodata, wavelengths (hsi.data.readers.raster)
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A checkpoint's state: kept for `setup()` if not set up yet, else checked against this one."""
        if not state:
            return
        version = state.get("format_version")
        if version != STATE_FORMAT:
            raise ConfigError(f"The checkpoint's datamodule state has format {version!r}; this "
                             f"version of hsi reads format {STATE_FORMAT}.")
        if self.scene is None:
            self._recorded = dict(state)
            return
        _check_settings(state, self._settings(self.scene))
        _check_split(state, self.split, self.scene.name)

    def _settings(self, scene: Scene) -> dict[str, Any]:
        """What a recorded state must agree on (besides the split), as the state records it."""
        settings = self.pca_settings  # a rescaling is recorded as a transform keeping every band
        return {"scene": scene.name, "raw_bands": int(scene.raw_bands),
                "shape": [int(n) for n in scene.shape], "patch_size": int(self.hparams.patch_size),
                "pca_components": scene.raw_bands if settings.rescale else settings.components,
                "class_names": list(scene.class_names)}

    # -- what the model needs to know -------------------------------------------------------
    @property
    def in_bands(self) -> int:
        """Bands per window after PCA: what a network takes (`in_bands` everywhere: the network
        contract, the classifier's hyperparameter); a scene's own band count is `scene.raw_bands`."""
        self._require_setup()
        return self.pca.num_components if self.pca is not None else self.scene.raw_bands

    @property
    def num_classes(self) -> int:
        self._require_setup()
        return self.scene.num_classes

    @property
    def class_names(self) -> list[str]:
        self._require_setup()
        return list(self.scene.class_names)

    def sizes(self) -> dict[str, int]:
        self._require_setup()
        return {f"n_{k}": int(len(v)) for k, v in self.split.items()}

    def leakage(self) -> float:
        """Fraction of test pixels inside some training window (within patch_size // 2, Chebyshev)."""
        self._require_setup()
        return leakage(self.scene.shape, self.split["train"], self.split["test"], self.hparams.patch_size)

    def audit(self) -> dict[str, float | int | None]:
        """Shares of test and validation pixels inside a training window, for this window and for
        7x7, 9x9 and 25x25 (`hsi.data.splits.leakage.split_audit`)."""
        self._require_setup()
        return split_audit(self.scene.shape, self.split, self.hparams.patch_size)

    def _require_setup(self) -> None:
        if self.scene is None:
            raise RuntimeError("Call setup() on the datamodule first.")

    # -- evaluation path --------------------------------------------------------------------
    def use_dense_evaluation(self, capable: bool, network: str = "this network") -> bool:
        """Choose how validation and test run, given whether the network is dense-capable
        (`hsi.models.dense.supports_dense(model.net)`); returns True when they will run densely.

        `data.eval_path=auto` runs densely when it is, `window` never; `dense` raises a
        ConfigError for a network that is not. Without this call, `auto` means windows.
        """
        path = self.hparams.eval_path
        if path == "dense" and not capable:
            raise ConfigError(f"data.eval_path=dense: {network} has window-global steps inside its "
                              f"trunk (e.g. squeeze-excitation) and cannot be evaluated densely; use "
                              f"data.eval_path=window (or auto, which picks windows for it).")
        self._dense_evaluation = path == "dense" or (path == "auto" and bool(capable))
        return self._dense_evaluation

    @property
    def dense_evaluation(self) -> bool:
        """Whether the validation and test loaders yield row tiles (else windows)."""
        if self._dense_evaluation is None:
            return self.hparams.eval_path == "dense"
        return self._dense_evaluation

    def tile_dataset(self, subset: str) -> TileDataset:
        """The pixels of `subset` ("val", "test", ...) as row tiles of the padded cube."""
        self.setup()
        if subset not in self._tiles:
            rows = self.hparams.eval_tile_rows
            if isinstance(self.scene, StreamedScene):  # a wide raster: tiles of at most TILE_PIXELS pixels
                rows = capped_tile_rows(rows, self.scene.shape[1])
            self._tiles[subset] = TileDataset.from_patches(self.datasets[subset], rows)
        return self._tiles[subset]

    # -- loaders ----------------------------------------------------------------------------
    def _loader(self, subset: str, shuffle: bool, batch_size: int) -> DataLoader:
        self.setup()
        hp = self.hparams
        return DataLoader(self.datasets[subset], batch_size=batch_size, shuffle=shuffle,
                          num_workers=hp.num_workers, pin_memory=hp.pin_memory,
                          persistent_workers=hp.num_workers > 0)

    def _eval_loader(self, subset: str) -> DataLoader:
        """Windows in batches of `eval_batch_size`, or one row tile per batch (dense)."""
        if not self.dense_evaluation:
            return self._loader(subset, False, self.hparams.eval_batch_size)
        hp = self.hparams
        return DataLoader(self.tile_dataset(subset), batch_size=1, shuffle=False,
                          collate_fn=first_item, num_workers=hp.num_workers,
                          pin_memory=hp.pin_memory, persistent_workers=hp.num_workers > 0)

    def add_unlabelled(self, coords: np.ndarray, batch_size: int) -> None:
        """Draw `batch_size` windows around pixels of `coords` beside every training batch (their
        labels are never read): training batches become {"labelled": (x, y), "unlabelled": (x, -1)}."""
        self.setup()
        self.unlabelled = PatchDataset(self.datasets["train"].padded, coords, np.full(len(coords), -1),
                                       self.hparams.patch_size)
        self.unlabelled_batch_size = int(batch_size)

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        labelled = self._loader("train", True, self.hparams.batch_size)
        if self.unlabelled is None:
            return labelled
        draws = len(labelled) * self.unlabelled_batch_size  # one unlabelled batch per labelled one
        sampler = RandomSampler(self.unlabelled, replacement=draws > len(self.unlabelled), num_samples=draws)
        unlabelled = DataLoader(self.unlabelled, batch_size=self.unlabelled_batch_size, sampler=sampler,
                                num_workers=self.hparams.num_workers, pin_memory=self.hparams.pin_memory)
        return CombinedLoader({"labelled": labelled, "unlabelled": unlabelled}, mode="min_size")

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if len(self.datasets["val"]) == 0:
            return []
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # -- augmentation -----------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches of windows through `augment` on their device; everything else
        (validation, test, prediction, dense tiles) unchanged."""
        trainer = self.trainer
        if isinstance(batch, dict) and "labelled" in batch:  # with unlabelled windows (semi=)
            return {**batch, "labelled": self.on_after_batch_transfer(batch["labelled"], dataloader_idx)}
        if (self.augment is None or trainer is None or not trainer.training
                or not isinstance(batch, (tuple, list)) or len(batch) != 2):
            return batch
        x, y = batch
        generator = self.augment.generator(x.device, offset=trainer.global_rank)
        return type(batch)(self.augment(x, y, generator))


# -- building from configs ----------------------------------------------------------------------
def split_strategy(split: SplitStrategy | Mapping[str, Any] | None) -> SplitStrategy:
    """A split strategy from itself, a mapping with its `_target_` (`data.split`, today's or an
    older module's), or None (random): `hsi.data.splits.registry.build_strategy`."""
    return build_strategy(upgrade_split_config(_plain(split)))


# -- checking a recorded state --------------------------------------------------------------------
def _check_split(state: Mapping[str, Any], split: Mapping[str, np.ndarray], scene_name: str) -> None:
    for subset, coords in state["split"].items():
        ours = split.get(subset)
        if ours is None or not np.array_equal(ours, torch.as_tensor(coords).cpu().numpy()):
            raise ConfigError(f"The {subset} split rebuilt from scene {scene_name!r} differs from the "
                             f"one recorded in the checkpoint: the scene's files changed. Point "
                             f"data_dir (or the scene's paths) at the files it was trained on.")


def _check_settings(state: Mapping[str, Any], ours: Mapping[str, Any]) -> None:
    """Raise naming every key in which `ours` differs from `state` (keys it left unset: unchecked)."""
    recorded = {k: state.get(k) for k in ours}
    pca = state.get("pca")
    recorded["pca_components"] = None if pca is None else int(pca["components"].shape[0])
    if recorded["shape"] is not None:
        recorded["shape"] = [int(n) for n in recorded["shape"]]
    if recorded["class_names"] is not None:
        recorded["class_names"] = list(recorded["class_names"])
    differing = [k for k in ours if recorded[k] != ours[k]
                 and (recorded[k] is not None or k == "pca_components")]
    if differing:
        raise ConfigError("The datamodule differs from the one recorded in the checkpoint in "
                         + "; ".join(f"{k} (checkpoint {recorded[k]!r}, here {ours[k]!r})"
                                     for k in differing)
                         + ". Build it from the checkpoint's hyperparameters "
                           "(HSIDataModule.load_from_checkpoint).")


# -- plain values -------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """OmegaConf containers as plain dicts / lists (Hydra passes DictConfigs)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_eval_settings(eval_path: str, tile_rows: int) -> None:
    """`data.eval_path` one of the known paths, `data.eval_tile_rows` a whole number >= 1."""
    if eval_path not in EVAL_PATHS:
        raise ConfigError(f"data.eval_path={eval_path!r}: choose one of {', '.join(EVAL_PATHS)}.")
    if isinstance(tile_rows, bool) or not isinstance(tile_rows, int) or tile_rows < 1:
        raise ConfigError(f"data.eval_tile_rows={tile_rows!r} must be a whole number >= 1.")


def check_window_fits(patch_size: int, scene: Scene) -> None:
    """A scene a classifier can be trained on, and a window no wider than it (a wider one is all
    padding and blows up the network): refuse otherwise, before anything is built."""
    if scene.num_classes < 2 or np.count_nonzero(scene.class_counts()) < 2:
        raise DataError(f"Scene {scene.name!r}: the ground truth holds a single class "
                        f"({', '.join(scene.class_names)}); a classifier needs at least two. Check "
                        f"data.gt_path / data.ignore_labels.")
    if patch_size > min(scene.shape):
        raise ConfigError(f"data.patch_size={patch_size} is larger than the scene {scene.name!r} "
                          f"({scene.shape[0]}x{scene.shape[1]} pixels); choose an odd window of at "
                          f"most {min(scene.shape) - (1 - min(scene.shape) % 2)} pixels.")


def _absolute(value: Any) -> Any:
    """Paths on the command line are relative to where the command runs."""
    return str(Path(value).expanduser().resolve()) if isinstance(value, (str, Path)) else value


def _plain_options(options: dict[str, Any]) -> dict[str, Any]:
    """Scene options with absolute `*_path`s and plain lists (Hydra passes ListConfigs)."""
    plain = {k: _plain(v) for k, v in options.items()}
    plain = {k: _absolute(v) if k.endswith("_path") else v for k, v in plain.items()}
    if plain.get("ignore_labels") is not None:
        plain["ignore_labels"] = [int(v) for v in plain["ignore_labels"]]
    return plain
