"""The pixel estimators' side of a run (`model=svm`, `rf`, `knn`): Lightning-only settings refused
before anything is loaded (`check_estimator_settings`), and a pickled estimator (`model.pkl`)
checked against the data it is tested on, as a Lightning checkpoint is: the scene, its classes,
the split it was fitted on (the run's `split.npz` beside the pickle) and the features per pixel."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hsi.errors import ConfigError
from hsi.run.checkpoint import CheckpointError
from hsi.utils.run_files import SPLIT_FILE

# data.augment's keys and the value that leaves a window unchanged (conf/augment/none.yaml)
UNAUGMENTED = {"flip": False, "rotate": False, "scale": 0.0, "noise": 0.0, "band_dropout": 0.0,
               "band_shift": 0, "mix": 0.0}


def _lightning_only(cfg: DictConfig) -> list[tuple[str, str]]:
    """(setting as given, what to do) for each setting of `cfg` that only a network's training
    (a Lightning Trainer) can honour."""
    def value(key: str, default: Any = None) -> Any:
        return OmegaConf.select(cfg, key, default=default)

    found = []
    precision = str(value("trainer.precision", "32-true"))
    if precision not in ("32-true", "32"):
        found.append((f"trainer.precision={precision}", "drop it (scikit-learn computes in float64)"))
    accelerator = str(value("trainer.accelerator", "auto")).lower()
    if accelerator not in ("auto", "cpu"):
        found.append((f"trainer.accelerator={accelerator}", "use trainer=cpu (scikit-learn runs on the CPU)"))
    devices, strategy = value("trainer.devices", 1), value("trainer.strategy")
    spread = strategy not in (None, "auto") or devices not in (1, "1", "auto", None)
    if spread or value("trainer.num_nodes", 1) != 1:
        shown = "trainer.strategy" if strategy not in (None, "auto") else f"trainer.devices={devices}"
        found.append((f"{shown} (trainer=ddp, ddp_cpu)", "use trainer=default (one process fits it)"))
    augment = value("data.augment") or {}
    changed = sorted(k for k, off in UNAUGMENTED.items() if augment.get(k, off) not in (off, None))
    if changed:
        found.append((", ".join(f"data.augment.{k}" for k in changed) + " (augment=)",
                      "use augment=none (a spectrum is classified as it is)"))
    if cfg.get("train") and cfg.get("ckpt_path"):
        found.append((f"ckpt_path={cfg.ckpt_path} with train=true (resuming)",
                      "drop ckpt_path (an estimator is fitted anew), or test a model.pkl with train=false"))
    return found


def check_estimator_settings(cfg: DictConfig) -> None:
    """Refuse, in one line, the settings of a network's training a pixel estimator cannot honour
    (pretrain= and semi= are refused by their own checks)."""
    found = _lightning_only(cfg)
    if found:
        name = str(cfg.model.get("_target_", "the estimator")).rsplit(".", 1)[-1]
        raise ConfigError(f"{'; '.join(f'{given}: {fix}' for given, fix in found)}. These settings apply to "
                          f"networks trained by Lightning; {name} is a scikit-learn estimator on pixel "
                          f"spectra (or train a network, e.g. model=mlp).")


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
