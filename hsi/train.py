"""Train (and test) a classifier: `python -m hsi.train [overrides]`, a Hydra app over `conf/`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

import hsi.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.data.datamodule import HSIDataModule
from hsi.models.classifier import HSIClassifier
from hsi.reporting import confusion_matrix_figure, write_run_outputs

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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test as `cfg` says; write the run's outputs; return its metrics."""
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    if not loggers:  # the learning-rate monitor writes to a logger; without one it has no use
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        datamodule.save_split(output_dir / "split.npz")
        log.info("Scene %s: %s, %d bands per window, %d classes; outputs in %s",
                 datamodule.scene.name, datamodule.sizes(), datamodule.num_bands,
                 datamodule.num_classes, output_dir)

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
    extra = {**datamodule.sizes(), "epochs": trainer.current_epoch,
             "train_seconds": round(train_seconds, 2), "test_seconds": round(test_seconds, 2),
             "checkpoint": checkpoint_file, "scene": datamodule.scene.name, "seed": cfg.seed,
             "params": sum(p.numel() for p in model.net.parameters())}
    report = model.test_report
    metrics = write_run_outputs(output_dir, report, datamodule.class_names, extra)
    log_to_tensorboard(trainer, cfg, report, datamodule.class_names)
    log.info("Test OA %.4f  AA %.4f  kappa %.4f  (%d test pixels); outputs in %s",
             metrics["oa"], metrics["aa"], metrics["kappa"], extra["n_test"], output_dir)
    return metrics


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


def log_to_tensorboard(trainer: L.Trainer, cfg: DictConfig, report: dict[str, Any],
                       class_names: list[str]) -> None:
    """Hyperparameters with the final metrics, and the confusion matrix as a figure."""
    import matplotlib.pyplot as plt

    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        params = {"model": cfg.model.net._target_.rsplit(".", 1)[-1],
                  **{f"data.{k}": v for k, v in cfg.data.items()
                     if isinstance(v, (int, float, str, bool)) and not k.startswith("_")},
                  "seed": cfg.seed, "max_epochs": cfg.trainer.get("max_epochs")}
        logger.log_hyperparams(params, metrics={f"hp/{k}": report[k] for k in ("oa", "aa", "kappa")})
        fig = confusion_matrix_figure(np.asarray(report["confusion_matrix"]), class_names)
        logger.experiment.add_figure("test/confusion_matrix", fig, global_step=trainer.global_step)
        plt.close(fig)
        logger.experiment.flush()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    log.debug("Config:\n%s", OmegaConf.to_yaml(cfg))
    metrics = train(cfg)
    return metrics.get("oa")


if __name__ == "__main__":
    main()
