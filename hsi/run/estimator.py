"""A pickled scikit-learn estimator (`model.pkl` of `model=svm`) checked against the data it is
tested on, as a Lightning checkpoint is: the scene, its classes, the split it was fitted on (the
run's `split.npz` beside the pickle) and the number of features per pixel."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from hsi.errors import ConfigError
from hsi.run.checkpoint import CheckpointError
from hsi.utils.run_files import SPLIT_FILE


def load_estimator(path: str | Path) -> Any:
    """The estimator in `path`, or one line saying what the file is instead."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path} not found: give the model.pkl of a model=svm run.")
    if zipfile.is_zipfile(path):
        raise CheckpointError(f"ckpt_path={path} is a Lightning checkpoint, but model=svm tests a "
                              f"pickled estimator (<run>/model.pkl); give the network's model= to test "
                              f"this checkpoint.")
    try:
        estimator = pickle.loads(path.read_bytes())
    except Exception as error:  # noqa: BLE001 - any unreadable pickle: one line
        raise CheckpointError(f"ckpt_path={path} cannot be read as a pickled estimator "
                              f"({type(error).__name__}): give the model.pkl of a model=svm run.") from error
    if not hasattr(estimator, "predict"):
        raise CheckpointError(f"ckpt_path={path} holds a {type(estimator).__name__}, not an estimator "
                              f"with predict(); give the model.pkl of a model=svm run.")
    return estimator


def check_estimator(path: str | Path, estimator: Any, datamodule: Any) -> None:
    """Refuse an estimator fitted on another scene, classes, split or band count than `datamodule`'s."""
    path = Path(path).expanduser()
    features = datamodule.datasets["train"].centre_spectra().shape[1]
    fitted = getattr(estimator, "n_features_in_", getattr(getattr(estimator, "model", None),
                                                          "n_features_in_", None))
    if fitted is not None and int(fitted) != features:
        raise ConfigError(f"ckpt_path={path} was fitted on {fitted} features per pixel but this data gives "
                          f"{features} (bands or data.pca.components differ): test it with the settings "
                          f"of the run that fitted it (its .hydra/overrides.yaml).")
    recorded = path.parent / SPLIT_FILE
    if not recorded.is_file():
        raise ConfigError(f"ckpt_path={path} has no {SPLIT_FILE} beside it, so the split it was fitted on "
                          f"cannot be checked (its test pixels could be training pixels): keep model.pkl "
                          f"in its run folder, or copy the run's {SPLIT_FILE} beside it.")
    with np.load(recorded, allow_pickle=False) as saved:
        labels, names = saved["labels"], [str(n) for n in saved["class_names"]]
        train = saved["train"]
    scene = datamodule.scene
    if labels.shape != scene.labels.shape or names != list(scene.class_names) or \
            not np.array_equal(labels, scene.labels):
        raise ConfigError(f"ckpt_path={path} was fitted on another scene (ground truth {labels.shape}, "
                          f"{len(names)} classes; here {scene.name} {scene.labels.shape}, "
                          f"{scene.num_classes} classes): test it on the scene it was fitted on.")
    if not np.array_equal(np.asarray(train).reshape(-1, 2), np.asarray(datamodule.split["train"])):
        raise ConfigError(f"ckpt_path={path} was fitted on another split of {scene.name} than this run "
                          f"draws (data.split or data.split_seed differ), so its test pixels could be "
                          f"its training pixels: test it with the split settings of the run that fitted "
                          f"it (its .hydra/overrides.yaml).")
