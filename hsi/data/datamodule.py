"""LightningDataModule: scene -> split -> PCA -> padded cube -> window loaders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from hsi.data.catalogue import CATALOGUE, prepare_scene
from hsi.data.io import read_array
from hsi.data.leakage import leakage
from hsi.data.patches import PatchDataset, check_patch_size, pad_cube
from hsi.data.preprocessing import PCA_FITS, PCATransform, cached_fit_pca
from hsi.data.scene import Scene
from hsi.data.scenes import load_scene
from hsi.data.split import SPLITS, disjoint_split, mask_split, per_class_split, stratified_split

log = logging.getLogger(__name__)


class HSIDataModule(L.LightningDataModule):
    """Windows around labelled pixels of one scene, split into train / val / test.

    Scene options not named here (`cube_path`, `height`, ...) go to `load_scene`.
    `split`: random (stratified, the recipe) | per_class (`train_per_class` pixels per class)
    | disjoint (whole `block_size` blocks, evaluation pixels near training dropped) | mask
    (`train_mask_path`, `test_mask_path`, optional `val_mask_path`). `pca_fit`: scene (all
    pixels, the recipe) | train (training pixels only). `pca_cache`: keep fitted PCAs in
    `pca_cache_dir` (default: the user cache, `hsi.data.download.user_cache_dir() / "pca"`).
    """

    def __init__(self, scene: str | Scene = "indian_pines", data_dir: str | None = None,
                 pca_components: int | None = 30, pca_whiten: bool = True, patch_size: int = 25,
                 test_ratio: float = 0.9, val_ratio: float = 0.05, split_seed: int = 345,
                 batch_size: int = 32, eval_batch_size: int = 64, num_workers: int = 0,
                 pin_memory: bool = False, split: str = "random", train_per_class: int = 20,
                 block_size: int = 16, train_mask_path: str | None = None,
                 test_mask_path: str | None = None, val_mask_path: str | None = None,
                 pca_fit: str = "scene", pca_cache: bool = False, pca_cache_dir: str | None = None,
                 **scene_options: Any) -> None:
        super().__init__()
        check_patch_size(patch_size)
        if pca_components is not None and pca_components < 1:
            raise ValueError(f"data.pca_components={pca_components} must be >= 1 or null.")
        if split not in SPLITS:
            raise ValueError(f"data.split={split!r} is not one of {', '.join(SPLITS)}.")
        if pca_fit not in PCA_FITS:
            raise ValueError(f"data.pca_fit={pca_fit!r} is not one of {', '.join(PCA_FITS)}.")
        if split == "mask" and train_mask_path is None:
            raise ValueError("data.split=mask needs data.train_mask_path (and data.test_mask_path; "
                             "optional data.val_mask_path).")
        train_mask_path, test_mask_path, val_mask_path, pca_cache_dir = (
            _absolute(v) for v in (train_mask_path, test_mask_path, val_mask_path, pca_cache_dir))
        # Absolute paths and plain values, so the hyperparameters saved in a checkpoint
        # rebuild the same scene from any folder (hsi.evaluate, hsi.predict).
        data_dir = _absolute(data_dir)
        scene_options = _plain_options(scene_options)
        self.save_hyperparameters(ignore=["scene"] if isinstance(scene, Scene) else None,
                                  logger=False)
        self._scene_arg = scene
        self.scene_options = scene_options
        self.scene: Scene | None = None
        self.pca: PCATransform | None = None
        self.split: dict[str, np.ndarray] = {}
        self.split_report: dict[str, Any] = {}
        self.datasets: dict[str, PatchDataset] = {}

    # -- set-up -----------------------------------------------------------------------------
    def load_scene(self) -> Scene:
        """The scene alone (no PCA, no split): for prediction and maps."""
        if isinstance(self._scene_arg, Scene):
            return self._scene_arg
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
        scene = self.scene = self.load_scene()
        rows, cols = np.nonzero(scene.labels)  # row-major, as the notebook orders its windows
        coords = np.stack([rows, cols], axis=1)
        indices, self.split_report = self._split_indices(scene, coords)
        self.split = {k: coords[v] for k, v in indices.items()}
        cube = scene.cube
        if hp.pca_components is not None:
            self.pca = self._fit_pca(scene)
            cube = self.pca(cube)
        padded = pad_cube(cube, hp.patch_size)
        for subset, subset_coords in self.split.items():
            subset_targets = scene.labels[subset_coords[:, 0], subset_coords[:, 1]] - 1
            self.datasets[subset] = PatchDataset(padded, subset_coords, subset_targets,
                                                 hp.patch_size)
        all_rows, all_cols = np.indices(scene.shape).reshape(2, -1)
        self.datasets["predict"] = PatchDataset(
            padded, np.stack([all_rows, all_cols], axis=1),
            scene.labels[all_rows, all_cols] - 1, hp.patch_size)

    def _split_indices(self, scene: Scene,
                       coords: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Indices into `coords` (the labelled pixels) of each subset, and the split's report."""
        hp = self.hparams
        targets = scene.labels[coords[:, 0], coords[:, 1]] - 1
        method = hp.get("split", "random")
        if method == "random":
            indices = stratified_split(targets, hp.test_ratio, hp.val_ratio, hp.split_seed, scene.class_names)
            return indices, {"method": "random"}
        if method == "per_class":
            return per_class_split(targets, hp.train_per_class, hp.val_ratio, hp.split_seed,
                                   scene.class_names)
        if method == "disjoint":
            return disjoint_split(scene.labels, coords, hp.test_ratio, hp.val_ratio, hp.block_size,
                                  hp.patch_size, hp.split_seed, scene.class_names)
        masks = {k: None if hp.get(f"{k}_mask_path") is None
                 else read_array(hp[f"{k}_mask_path"], None, 2, f"{k} mask")
                 for k in ("train", "test", "val")}
        return mask_split(scene.labels, coords, masks["train"], masks["test"], masks["val"],
                          scene.class_names)

    def _fit_pca(self, scene: Scene) -> PCATransform:
        """PCA fitted on the whole scene or on the training pixels only (`data.pca_fit`), cached."""
        from hsi.data.download import user_cache_dir

        hp = self.hparams
        coords = self.split["train"] if hp.get("pca_fit", "scene") == "train" else None
        cache_dir = None
        if hp.get("pca_cache"):
            cache_dir = hp.get("pca_cache_dir") or user_cache_dir() / "pca"
        return cached_fit_pca(scene.cube, coords, hp.pca_components, hp.pca_whiten, hp.split_seed,
                              scene.name, cache_dir)

    # -- what the model needs to know -------------------------------------------------------
    @property
    def num_bands(self) -> int:
        """Bands per window after PCA."""
        self._require_setup()
        return self.pca.num_components if self.pca is not None else self.scene.num_bands

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

    def save_split(self, path: str | Path) -> None:
        """Pixel coordinates (row, col) of each subset, and the scene's labels, as `.npz`."""
        from hsi.utils.files import atomic_save_npz

        self._require_setup()
        atomic_save_npz(path, **self.split, labels=self.scene.labels,
                        class_names=np.array(self.scene.class_names))

    def save_label_mapping(self, path: str | Path) -> None:
        """JSON: each class's network output index, label, source label value, name and pixels."""
        from hsi.utils.files import atomic_write_json

        self._require_setup()
        atomic_write_json(path, self.scene.label_mapping())

    def _require_setup(self) -> None:
        if self.scene is None:
            raise RuntimeError("Call setup() on the datamodule first.")

    # -- loaders ----------------------------------------------------------------------------
    def _loader(self, subset: str, shuffle: bool, batch_size: int) -> DataLoader:
        self.setup()
        hp = self.hparams
        return DataLoader(self.datasets[subset], batch_size=batch_size, shuffle=shuffle,
                          num_workers=hp.num_workers, pin_memory=hp.pin_memory,
                          persistent_workers=hp.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if len(self.datasets["val"]) == 0:
            return []
        return self._loader("val", False, self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.hparams.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", False, self.hparams.eval_batch_size)


def _absolute(value: Any) -> Any:
    """Paths on the command line are relative to where the command runs."""
    return str(Path(value).expanduser().resolve()) if isinstance(value, (str, Path)) else value


def _plain_options(options: dict[str, Any]) -> dict[str, Any]:
    """Scene options with absolute `*_path`s and plain lists (Hydra passes ListConfigs)."""
    from omegaconf import OmegaConf

    plain = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in options.items()}
    plain = {k: _absolute(v) if k.endswith("_path") else v for k, v in plain.items()}
    if plain.get("ignore_labels") is not None:
        plain["ignore_labels"] = [int(v) for v in plain["ignore_labels"]]
    return plain
