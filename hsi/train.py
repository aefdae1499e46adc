"""Train (and test) a classifier: `python -m hsi.train [overrides]`, a Hydra app over `conf/`."""

from __future__ import annotations

import logging
import pickle
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

import hsi.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.data.datamodule import HSIDataModule
from hsi.inference import scene_info
from hsi.models.classifier import HSIClassifier
from hsi.models.cost import model_cost
from hsi.models.metrics import accuracy_report
from hsi.predict import write_scene_map
from hsi.reporting import finish_run
from hsi.utils.files import atomic_write

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> HSIDataModule:
    datamodule: HSIDataModule = instantiate(cfg.data)
    datamodule.setup()
    return datamodule


def build_model(cfg: DictConfig, datamodule: HSIDataModule) -> HSIClassifier:
    """The LightningModule for `cfg.model`, sized for the data."""
    class_weights = cfg.model.get("class_weights")
    if class_weights == "balanced":
        counts = np.bincount(datamodule.datasets["train"].targets.numpy(),
                             minlength=datamodule.num_classes)
        class_weights = (counts.sum() / (len(counts) * np.maximum(counts, 1))).tolist()
    return instantiate(cfg.model, num_bands=datamodule.num_bands,
                       patch_size=datamodule.hparams.patch_size,
                       num_classes=datamodule.num_classes, class_names=datamodule.class_names,
                       class_weights=class_weights, _recursive_=False)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Every entry of a config group (callbacks, loggers) that has a `_target_`."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


def is_network(model_cfg: DictConfig) -> bool:
    """Whether `model_cfg` is a LightningModule (trained by a Trainer) or a scikit-learn estimator."""
    return issubclass(get_class(model_cfg._target_), L.LightningModule)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test as `cfg` says; write the run's outputs; return its metrics."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    loggers = instantiate_group(cfg.get("logger"))
    run = train_network if is_network(cfg.model) else train_estimator
    return run(cfg, datamodule, loggers)


def start_run(cfg: DictConfig, datamodule: HSIDataModule) -> Path:
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datamodule.save_split(output_dir / "split.npz")
    datamodule.save_label_mapping(output_dir / "label_mapping.json")
    log.info("Scene %s: %s, %d bands per window, %d classes; outputs in %s",
             datamodule.scene.name, datamodule.sizes(), datamodule.num_bands,
             datamodule.num_classes, output_dir)
    return output_dir


def run_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The few settings that identify a run in TensorBoard's hparams view."""
    target = cfg.model.net._target_ if "net" in cfg.model else cfg.model._target_
    return {"model": target.rsplit(".", 1)[-1],
            **{f"data.{k}": v for k, v in cfg.data.items()
               if isinstance(v, (int, float, str, bool)) and not k.startswith("_")},
            "seed": cfg.seed, "max_epochs": cfg.trainer.get("max_epochs")}


def train_network(cfg: DictConfig, datamodule: HSIDataModule, loggers: list[Any]) -> dict[str, Any]:
    """Lightning: fit, then test on the best-validation (or last) weights."""
    model = build_model(cfg, datamodule)
    model.scene_info = scene_info(datamodule)
    callbacks = instantiate_group(cfg.get("callbacks"))
    if not loggers:  # the learning-rate monitor writes to a logger; without one it has no use
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # without a validation set (the notebook recipe) skip the loop, rather than feed it nothing
    no_validation = {"limit_val_batches": 0} if len(datamodule.datasets["val"]) == 0 else {}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     **no_validation)
    if trainer.is_global_zero:
        start_run(cfg, datamodule)

    train_seconds = 0.0
    if cfg.get("train"):
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        train_seconds = time.perf_counter() - start

    if not cfg.get("test"):
        return {}
    test_ckpt, checkpoint_file = choose_test_checkpoint(cfg, trainer, datamodule)
    start = time.perf_counter()
    trainer.test(model, datamodule=datamodule, ckpt_path=test_ckpt)
    test_seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return {}
    extra = {"epochs": trainer.current_epoch, "train_seconds": round(train_seconds, 2),
             "test_seconds": round(test_seconds, 2), "checkpoint": checkpoint_file,
             **model_cost(model.net, datamodule.num_bands, datamodule.hparams.patch_size)}
    if cfg.get("map", True):
        extra |= write_scene_map(Path(cfg.paths.output_dir), model.net, model.scene_info, datamodule.scene,
                                 cfg.get("map_method", "auto"), trainer.loggers, trainer.global_step)
    return finish_run(cfg.paths.output_dir, datamodule, model.test_report, extra, trainer.loggers,
                      trainer.global_step, run_hparams(cfg), cfg.seed)


def train_estimator(cfg: DictConfig, datamodule: HSIDataModule, loggers: list[Any]) -> dict[str, Any]:
    """scikit-learn: fit on the training pixels' spectra, test on the test pixels' spectra."""
    output_dir = start_run(cfg, datamodule)
    estimator = instantiate(cfg.model)
    train_set, test_set = datamodule.datasets["train"], datamodule.datasets["test"]
    checkpoint = output_dir / "model.pkl"
    start = time.perf_counter()
    if cfg.get("train"):
        estimator.fit(train_set.centre_spectra(), train_set.targets.numpy())
        atomic_write(checkpoint, lambda tmp: tmp.write_bytes(pickle.dumps(estimator)))
    else:
        estimator = pickle.loads(Path(cfg.ckpt_path).read_bytes())
        checkpoint = Path(cfg.ckpt_path)
    train_seconds = time.perf_counter() - start
    if not cfg.get("test"):
        return {}
    start = time.perf_counter()
    preds = torch.as_tensor(estimator.predict(test_set.centre_spectra()))
    test_seconds = time.perf_counter() - start
    report = accuracy_report(preds, test_set.targets, datamodule.num_classes)
    report.update(preds=preds, targets=test_set.targets)
    extra = {"epochs": None, "train_seconds": round(train_seconds, 2),
             "test_seconds": round(test_seconds, 2), "checkpoint": str(checkpoint),
             "params": None, "macs": None, "estimator": getattr(estimator, "best_params", None)}
    return finish_run(cfg.paths.output_dir, datamodule, report, extra, loggers, 0, run_hparams(cfg),
                      cfg.seed)


def choose_test_checkpoint(cfg: DictConfig, trainer: L.Trainer,
                           datamodule: HSIDataModule) -> tuple[str | None, str | None]:
    """(ckpt_path for trainer.test, checkpoint file recorded in metrics.json).

    Best validation checkpoint when there is a validation set and a monitored checkpoint;
    otherwise the weights in memory after the last epoch (as the notebook does), recorded
    as the `last.ckpt` they were saved to.
    """
    callback = checkpoint_callback(trainer)
    if not cfg.get("train"):
        return cfg.get("ckpt_path"), cfg.get("ckpt_path")
    has_val = len(datamodule.datasets["val"]) > 0
    if callback is not None and callback.monitor and has_val and callback.best_model_path:
        return "best", callback.best_model_path
    last = callback.last_model_path if callback is not None else ""
    return None, last or None


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    log.debug("Config:\n%s", OmegaConf.to_yaml(cfg))
    metrics = train(cfg)
    return metrics.get("oa")


if __name__ == "__main__":
    main()
