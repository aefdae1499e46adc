"""What a checkpoint carries and how it is read back.

A checkpoint written by `hsi.train` is a Lightning checkpoint. Lightning itself stores the
classifier's hyperparameters (`hyper_parameters`: the network config and the data's shapes), the
datamodule's hyperparameters (`datamodule_hyper_parameters`: scene, window, split, PCA settings)
and the datamodule's state (`HSIDataModule`: the fitted PCA, the split, class names, label
values, display bands, colours and, for a raster, its georeference `geo`; see
`HSIDataModule.state_dict`). That is format 2.

Format 1 (before the datamodule carried its own state) kept a hand-assembled scene record under
`hsi`; it is read here and converted by `hsi.data.compat`, so older checkpoints keep predicting.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsi.data.compat import STATE_FORMAT, upgrade_format1_data, upgrade_format1_state, upgrade_model_hparams
from hsi.data.datamodule import HSIDataModule
from hsi.data.preprocessing import PCATransform
from hsi.errors import ConfigError, DataError, HsiError, first_line
from hsi.models.classifier import HSIClassifier
from hsi.utils.run_files import LAST_CHECKPOINT

DATAMODULE_KEY = HSIDataModule.__qualname__
FORMATS = (1, STATE_FORMAT)


class CheckpointError(HsiError, ValueError):
    """A file that is not a readable hsi checkpoint; the message names the file and the fix."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: its file, format, settings (`data`) and recorded state
    (`data_state`: PCA, split, window, classes)."""

    path: Path
    format: int
    data: dict[str, Any]
    data_state: dict[str, Any]
    contents: dict[str, Any]

    def classifier(self, device: str = "auto") -> HSIClassifier:
        """The trained LightningModule, in eval mode on `device` (auto: CUDA if there is one)."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model = HSIClassifier(**self.contents["hyper_parameters"])
            model.load_state_dict(self.contents["state_dict"])
        except (KeyError, TypeError, RuntimeError) as error:
            raise CheckpointError(f"{self.path}: the network in this checkpoint cannot be rebuilt "
                                  f"({first_line(error)}); it was not written by this "
                                  f"version of hsi.train.") from error
        return model.to(device).eval()

    def datamodule(self, **overrides: Any) -> HSIDataModule:
        """The datamodule the checkpoint was trained with (not set up), its recorded state loaded
        so that `setup()` reuses the fitted PCA and checks the rebuilt split against the recorded
        one. `overrides` replace settings, e.g. `data_dir` or a moved `cube_path`."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        moved = sorted(set(overrides) & {"cube_path", "gt_path"})
        if moved and self.data.get("scene") != "custom":
            raise ConfigError(f"{', '.join(f'moved.{key}' for key in moved)} apply to checkpoints trained on "
                              f"data=custom; this one was trained on the scene "
                              f"{self.data.get('scene')!r}: give moved.data_dir=<the "
                              f"folder that holds '{self.data.get('scene')}/'> instead.")
        datamodule = HSIDataModule(**(self.data | overrides))
        datamodule.load_state_dict(self.data_state)
        return datamodule

    def reduce(self, cube: np.ndarray) -> np.ndarray:
        return reduce_cube(self.data_state, cube)


# where a model's own scene moved to, as hsi.evaluate / hsi.predict take it (`moved.gt_path=`) and
# as the readers of data/ name it for hsi.train (`data.gt_path`)
MOVED_KEYS = {"data.cube_path": "moved.cube_path", "data.gt_path": "moved.gt_path",
              "data.data_dir": "moved.data_dir"}


@contextmanager
def command_keys() -> Iterator[None]:
    """Errors from reading a checkpoint's own scene name the command's keys (`moved.gt_path=`), not
    hsi.train's (`data.gt_path`), which these commands refuse."""
    try:
        yield
    except HsiError as error:
        text = str(error)
        for theirs, ours in MOVED_KEYS.items():
            text = text.replace(theirs, ours)
        if text == str(error):
            raise
        raise type(error)(text) from error


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file written by `hsi.train` (format 1 or 2), on the CPU, tensors only."""
    path = Path(path).expanduser()
    if path.is_dir():
        hint = path / LAST_CHECKPOINT
        also = f"; did you mean {hint}?" if hint.is_file() else "; give a .ckpt file."
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{also}")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    if not zipfile.is_zipfile(path) and path.read_bytes()[:1] == b"\x80":  # a pickle: model=svm's
        raise CheckpointError(f"{path} is a pickled estimator (model=svm's model.pkl), not a network "
                              f"checkpoint: test it with python -m hsi.train model=svm train=false "
                              f"ckpt_path={path}; estimators are not evaluated, exported or mapped "
                              f"by this command.")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a checkpoint: checkpoints are zip archives and this file "
                              f"is not one (it is truncated, or another kind of file). Give a .ckpt "
                              f"written by hsi.train (<run>/checkpoints/*.ckpt).")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message advises unsafe loading: not repeated
        raise CheckpointError(f"{path} holds objects other than tensors and plain values, so it was "
                              f"not written by hsi.train; hsi never runs code from a checkpoint "
                              f"file.") from error
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(error).__name__}): the "
                              f"file is truncated or damaged.") from error
    if not isinstance(contents, dict) or "state_dict" not in contents:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict): a bare "
                              f"PyTorch state dict or another file. Give a .ckpt written by "
                              f"hsi.train (<run>/checkpoints/*.ckpt).")
    contents = upgrade_model_hparams(contents)
    if DATAMODULE_KEY in contents:
        scene = dict(contents[DATAMODULE_KEY])
        version = int(scene.get("format_version", STATE_FORMAT))
        if version != STATE_FORMAT:
            raise CheckpointError(f"{path} holds checkpoint format {version}; this version of hsi "
                                  f"reads formats {', '.join(map(str, FORMATS))}. Use the hsi "
                                  f"version that wrote it.")
        data = dict(contents.get("datamodule_hyper_parameters") or {})
        return Checkpoint(path, STATE_FORMAT, data, scene, contents)
    if "hsi" in contents:
        info = contents["hsi"]
        return Checkpoint(path, 1, upgrade_format1_data(info["data"]), upgrade_format1_state(info),
                          contents)
    raise CheckpointError(f"{path} is a Lightning checkpoint but carries no scene information (no "
                          f"{DATAMODULE_KEY!r} state, no format-1 'hsi' record): it was not written "
                          f"by hsi.train, so its PCA, window and classes are unknown. Retrain with "
                          f"hsi.train.")


def check_bands(state: dict[str, Any], bands: int, what: str = "cube") -> None:
    """Refuse a cube (or raster) whose band count is not the one the checkpoint was trained on."""
    if bands != state["raw_bands"]:
        raise DataError(f"The checkpoint was trained on cubes with {state['raw_bands']} bands (scene "
                        f"{state['scene']!r}) but this {what} has {bands}; predict on a {what} from the "
                        f"same sensor and band set.")


def reduce_cube(state: dict[str, Any], cube: np.ndarray) -> np.ndarray:
    """Apply a checkpoint's spectral reduction (its PCA, if any) to a (H, W, bands) cube,
    checking the band count; `state` is the datamodule's checkpoint state."""
    if cube.ndim != 3:
        raise ValueError(f"expected a (height, width, bands) cube, got shape {cube.shape}")
    check_bands(state, cube.shape[2], "cube")
    pca = PCATransform.from_tensors(state["pca"])
    return cube.astype(np.float32) if pca is None else pca(cube)
