"""Fit and test one configured run: a network through a Lightning Trainer, or a scikit-learn
estimator on pixel spectra; both end in the same bookkeeping (`record_run`)."""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig

from hsi.data.datamodule import HSIDataModule
from hsi.errors import ConfigError, DataError
from hsi.models.classifier import HSIClassifier
from hsi.models.cost import count_parameters, model_cost
from hsi.models.dense import check_network_eval_path, supports_dense
from hsi.models.metrics import accuracy_report
from hsi.models.zoo import network_class, own_kwargs
from hsi.run import dashboard
from hsi.run.checkpoint import load_checkpoint
from hsi.run.config import instantiate_group
from hsi.run.estimator import check_estimator, check_estimator_settings, load_estimator
from hsi.run.outputs import finish_run, update_metrics, write_run_start, write_scene_map
from hsi.run.precision import (
    accelerator_device,
    inference_precision_of,
    log_choice,
    run_precision,
    trainer_precision,
)
from hsi.run.pretraining import check_pretrain_config, pretrain_trunk
from hsi.run.semi_supervised import add_unlabelled_pool, check_semi_config, consistency_settings
from hsi.run.threads import set_threads
from hsi.run.validation import check_train_config
from hsi.utils.files import atomic_write
from hsi.utils.run_files import ESTIMATOR_FILE

log = logging.getLogger(__name__)

# A network larger than this is refused: it is a window or band count gone wrong (HybridSN on the
# recipe's 25x25 windows has 5.1 M parameters), not something to train for hours.
MAX_PARAMETERS = 100_000_000
# settings of the LightningModule that an experiment may set for every model; a scikit-learn
# estimator has no use for them
NETWORK_ONLY = frozenset({"optimizer", "scheduler", "scheduler_monitor", "label_smoothing", "class_weights"})


def build_datamodule(cfg: DictConfig) -> HSIDataModule:
    """The configured datamodule, set up (scene loaded, split drawn, PCA fitted)."""
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
    elif class_weights is not None and len(class_weights) != datamodule.num_classes:
        raise ConfigError(f"model.class_weights has {len(class_weights)} weights but the scene has "
                          f"{datamodule.num_classes} classes ({', '.join(datamodule.class_names)}); "
                          f"give one per class, or model.class_weights=balanced.")
    net_cfg = cfg.model.net
    network_class(net_cfg).check_input(datamodule.in_bands, datamodule.hparams.patch_size,
                                       **own_kwargs(net_cfg))
    with torch.device("meta"):  # counted before any memory is taken
        probe = instantiate(cfg.model.net, in_bands=datamodule.in_bands,
                            patch_size=datamodule.hparams.patch_size, num_classes=datamodule.num_classes)
    params = count_parameters(probe)
    if params > MAX_PARAMETERS:
        raise ConfigError(f"With data.patch_size={datamodule.hparams.patch_size} and "
                          f"{datamodule.in_bands} bands per window the network would have "
                          f"{params:,} parameters ({params * 4 / 1e9:.1f} GB per checkpoint); lower "
                          f"data.patch_size or data.pca.components.")
    return instantiate(cfg.model, in_bands=datamodule.in_bands,
                       patch_size=datamodule.hparams.patch_size,
                       num_classes=datamodule.num_classes, class_names=datamodule.class_names,
                       class_weights=class_weights, consistency=consistency_settings(cfg), _recursive_=False)


def is_network(model_cfg: DictConfig) -> bool:
    """Whether `model_cfg` is a LightningModule (trained by a Trainer) or a scikit-learn estimator."""
    return issubclass(get_class(model_cfg._target_), L.LightningModule)


def run_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The settings that identify a run in TensorBoard's hparams view (`hsi.run.dashboard`)."""
    return dashboard.run_hparams(cfg)


@contextmanager
def stopwatch(times: dict[str, float], key: str) -> Iterator[None]:
    """Record the block's wall-clock seconds as `times[key]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        times[key] = round(time.perf_counter() - start, 2)


def train(cfg: DictConfig, extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fit and test as `cfg` says; write the run's outputs; return its metrics.

    `extra_callbacks`: Lightning callbacks added to the configured ones (a search's pruning).
    """
    check_train_config(cfg)
    check_pretrain_config(cfg, is_network(cfg.model))
    check_semi_config(cfg, is_network(cfg.model))
    if not is_network(cfg.model):
        check_estimator_settings(cfg)
    set_threads(cfg, _hydra_config())
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    check_split_sizes(cfg, datamodule)
    loggers = instantiate_group(cfg.get("logger"))
    dashboard.start(cfg, loggers)
    if is_network(cfg.model):
        return train_network(cfg, datamodule, loggers, extra_callbacks or [])
    return train_estimator(cfg, datamodule, loggers)


def _hydra_config() -> Any:
    """The running Hydra app's `hydra` node (the launcher), or None outside one."""
    try:
        return HydraConfig.get()
    except ValueError:
        return None


def check_split_sizes(cfg: DictConfig, datamodule: HSIDataModule) -> None:
    """A split without training pixels, or without test pixels for a run that tests, is refused
    before anything is trained or written (the fix for test pixels is the strategy's `no_test_fix`)."""
    strategy = datamodule.split_strategy
    method = datamodule.split_report.get("method") or strategy.method
    sizes = datamodule.sizes()
    for subset, needed in (("train", cfg.get("train")), ("test", cfg.get("test"))):
        if needed and sizes.get(f"n_{subset}", 0) == 0:
            fix = strategy.no_test_fix if subset == "test" else "raise the training share of data.split"
            raise DataError(f"The {method} split of {datamodule.scene.name} leaves no {subset} pixel "
                            f"({', '.join(f'{k}={v}' for k, v in sizes.items())}): {fix}.")


def record_run(cfg: DictConfig, datamodule: HSIDataModule, report: dict[str, Any],
               times: dict[str, float], checkpoint: str | None, loggers: list[Any], step: int = 0,
               **extra: Any) -> dict[str, Any]:
    """The one bookkeeping path of every run: metrics.json, reports and TensorBoard summaries."""
    record = {"epochs": None, "train_seconds": times.get("train", 0.0),
              "test_seconds": times.get("test", 0.0), "checkpoint": checkpoint,
              "params": None, "macs": None,
              "threads": torch.get_num_threads(),  # parallel jobs share the cores (hsi.run.threads)
              **extra}
    return finish_run(cfg.paths.output_dir, datamodule, report, record, loggers, step, run_hparams(cfg),
                      cfg.seed)


def train_network(cfg: DictConfig, datamodule: HSIDataModule, loggers: list[Any],
                  extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Lightning: fit, then test on the best-validation (or last) weights; then the scene's map."""
    model = build_model(cfg, datamodule)
    datamodule.use_dense_evaluation(supports_dense(model.net), type(model.net).__name__)
    if cfg.get("map", True):  # a bad map option fails now, not after training
        check_network_eval_path(model.net, cfg.data.get("eval_path", "auto"), "data.eval_path")
    if cfg.get("train") and cfg.get("ckpt_path"):  # before anything is written
        check_resume(cfg.ckpt_path, datamodule, model)
    # a resumed run takes its weights from the checkpoint: no pretraining then
    pretrained = pretrain_trunk(cfg, datamodule, model.net) if cfg.get("train") and not cfg.get("ckpt_path") \
        else None
    semi = add_unlabelled_pool(cfg, datamodule)
    callbacks = [*dashboard.callbacks(loggers, datamodule.class_names),
                 *instantiate_group(cfg.get("callbacks")), *(extra_callbacks or [])]
    if not loggers:  # the learning-rate monitor writes to a logger; without one it has no use
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # without a validation set (the notebook recipe) skip the loop, rather than feed it nothing
    no_validation = {"limit_val_batches": 0} if len(datamodule.datasets["val"]) == 0 else {}
    callbacks = drop_validation_stopping(callbacks, bool(no_validation) or cfg.trainer.get(
        "limit_val_batches") == 0)
    save_last_only(callbacks)
    asked, precision = run_precision(cfg)  # trainer.precision=auto resolved for this network and device
    inference = inference_precision_of(asked, precision, type(model.net).__name__)
    device = accelerator_device(cfg.trainer.get("accelerator"))
    log_choice(asked, precision, device)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     **trainer_precision(precision, inference, device), **no_validation)
    if trainer.is_global_zero:
        write_run_start(cfg.paths.output_dir, datamodule, trainer.loggers)

    times: dict[str, float] = {}
    if cfg.get("train"):
        with stopwatch(times, "train"):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    if not cfg.get("test"):
        if cfg.get("map", True) and trainer.is_global_zero:  # no metrics, but the map asked for
            map_untested(cfg, trainer, datamodule, model)
        return {}
    test_ckpt, checkpoint_file = choose_test_checkpoint(cfg, trainer, datamodule)
    with stopwatch(times, "test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=test_ckpt)
    if not trainer.is_global_zero:
        return {}
    metrics = record_run(cfg, datamodule, model.test_report, times, checkpoint_file, trainer.loggers,
                         trainer.current_epoch, epochs=trainer.current_epoch,
                         val_oa=best_validation_oa(trainer), precision_asked=asked, precision=precision,
                         inference_precision=inference,
                         **({"pretrain": pretrained} if pretrained else {}),
                         **({"semi": semi} if semi else {}),
                         **model_cost(model.net, datamodule.in_bands, datamodule.hparams.patch_size))
    if cfg.get("map", True):  # after metrics.json: a failing map step loses no result
        drawn = write_scene_map(Path(cfg.paths.output_dir), model.net, datamodule.state_dict(),
                                datamodule.scene, cfg.data.get("eval_path", "auto"), trainer.loggers,
                                trainer.current_epoch, inference)
        metrics = update_metrics(cfg.paths.output_dir, drawn)
    return metrics


def map_untested(cfg: DictConfig, trainer: L.Trainer, datamodule: HSIDataModule,
                 model: HSIClassifier) -> dict[str, Any]:
    """test=false with map=true: the scene's map from the weights a test would use (the best
    validation checkpoint, else the last epoch's), with no metrics.json; returns how it ran."""
    test_ckpt, checkpoint_file = choose_test_checkpoint(cfg, trainer, datamodule)
    net = load_checkpoint(checkpoint_file).classifier().net if test_ckpt else model.net
    log.info("test=false: no test metrics; the map is drawn from %s.",
             checkpoint_file if test_ckpt else "the last epoch's weights")
    return write_scene_map(Path(cfg.paths.output_dir), net, datamodule.state_dict(), datamodule.scene,
                           cfg.data.get("eval_path", "auto"), trainer.loggers, trainer.current_epoch)


def drop_validation_stopping(callbacks: list[Any], no_validation: bool) -> list[Any]:
    """Without validation pixels (or with the validation loop off) early stopping on a `val/`
    metric can never fire: it is dropped with a warning, and the run trains every epoch."""
    if not no_validation:
        return callbacks
    stopping = [c for c in callbacks if isinstance(c, EarlyStopping) and str(c.monitor).startswith("val/")]
    for callback in stopping:
        log.warning("No validation pixels (data.split.val_ratio=0 or +trainer.limit_val_batches=0): early "
                    "stopping on %s is off, the run trains all trainer.max_epochs epochs and tests the "
                    "last weights. Give validation pixels to stop early.", callback.monitor)
    return [c for c in callbacks if c not in stopping]


def save_last_only(callbacks: list[Any]) -> None:
    """A checkpoint callback without a monitor keeps the latest epoch: written once, as last.ckpt,
    rather than twice (`epoch_NNN.ckpt` and its copy `last.ckpt`: 60 MB per epoch for HybridSN)."""
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None and callback.save_last \
                and callback.save_top_k == 1:
            callback.save_top_k = 0


# settings that shape the data or the network: resuming with other values cannot work
# the network's, the optimizer's and the schedule's: restored from the checkpoint as they were
RESUME_MODEL_KEYS = ("net.", "in_bands", "num_classes", "scheduler.", "optimizer.")
RESUME_DATA_KEYS = ("scene", "patch_size", "split_seed", "split", "pca.components", "pca.whiten", "pca.fit",
                    "pca.rescale")


def check_resume(ckpt_path: str, datamodule: HSIDataModule, model: HSIClassifier) -> None:
    """Resuming needs the checkpoint's data and network settings: name every key that differs."""
    checkpoint = load_checkpoint(ckpt_path)
    ours = _flat(dict(datamodule.hparams))
    theirs = _flat(checkpoint.data)
    differ = [f"data.{k} (checkpoint {theirs.get(k)!r}, here {ours.get(k)!r})"
              for k in sorted(set(ours) | set(theirs))
              if (k in RESUME_DATA_KEYS or k.split(".")[0] in RESUME_DATA_KEYS)
              and ours.get(k) != theirs.get(k)]
    saved = _flat(checkpoint.contents.get("hyper_parameters", {}))
    mine = _flat(dict(model.hparams))
    for key in sorted(set(saved) | set(mine)):
        if key.startswith(RESUME_MODEL_KEYS) and saved.get(key) != mine.get(key):
            name = f"model.{key}" if key.startswith(("net.", "scheduler", "optimizer")) else key
            differ.append(f"{name} (checkpoint {saved.get(key)!r}, here {mine.get(key)!r})")
    if differ:
        schedule = any(d.startswith(("model.scheduler", "model.optimizer")) for d in differ)
        why = (" The checkpoint's optimizer and learning-rate schedule are restored as they were, so a "
               "schedule cannot be lengthened on resume (a cosine one would restart): resume to the "
               "same trainer.max_epochs, or train a new run with the longer schedule.") if schedule else ""
        raise ConfigError(f"ckpt_path={ckpt_path} was trained with other settings: {'; '.join(differ)}."
                          f"{why} Resume with the checkpoint's settings (its run's .hydra/overrides.yaml), "
                          f"or start a new run without ckpt_path.")


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def train_estimator(cfg: DictConfig, datamodule: HSIDataModule, loggers: list[Any]) -> dict[str, Any]:
    """scikit-learn: fit on the training pixels' spectra, test on the test pixels' spectra."""
    fitted = None
    if not cfg.get("train"):  # checked before anything is written
        fitted = load_estimator(cfg.ckpt_path)
        check_estimator(cfg.ckpt_path, fitted, datamodule)
    output_dir = write_run_start(cfg.paths.output_dir, datamodule, loggers)
    ignored = sorted(NETWORK_ONLY & set(cfg.model))
    if ignored:  # e.g. an experiment's schedule, shared by every network
        log.info("model.%s apply to networks only; the estimator ignores them.", ", model.".join(ignored))
    estimator = instantiate({k: v for k, v in cfg.model.items() if k not in NETWORK_ONLY})
    train_set, test_set = datamodule.datasets["train"], datamodule.datasets["test"]
    checkpoint = output_dir / ESTIMATOR_FILE
    times: dict[str, float] = {}
    with stopwatch(times, "train"):
        if cfg.get("train"):
            estimator.fit(train_set.centre_spectra(), train_set.targets.numpy())
            atomic_write(checkpoint, lambda tmp: tmp.write_bytes(pickle.dumps(estimator)))
        else:
            estimator = fitted
            checkpoint = Path(cfg.ckpt_path)
    if not cfg.get("test"):
        return {}
    with stopwatch(times, "test"):
        preds = torch.as_tensor(estimator.predict(test_set.centre_spectra()))
    report = accuracy_report(preds, test_set.targets, datamodule.num_classes)
    report.update(preds=preds, targets=test_set.targets)
    asked, _ = run_precision(cfg)
    return record_run(cfg, datamodule, report, times, str(checkpoint), loggers,
                      estimator=getattr(estimator, "best_params", None), precision_asked=asked,
                      precision=None)


def best_validation_oa(trainer: L.Trainer) -> float | None:
    """The best validation OA of the fit (what a search optimises; never a test metric), or the
    last one when no checkpoint monitors it; None without a validation set."""
    callback = trainer.checkpoint_callback
    if callback is not None and callback.monitor == "val/oa" and callback.best_model_score is not None:
        return float(callback.best_model_score)
    value = trainer.callback_metrics.get("val/oa")
    return None if value is None else float(value)


def choose_test_checkpoint(cfg: DictConfig, trainer: L.Trainer,
                           datamodule: HSIDataModule) -> tuple[str | None, str | None]:
    """(ckpt_path for trainer.test, checkpoint file recorded in metrics.json).

    Best validation checkpoint when there is a validation set and a monitored checkpoint;
    otherwise the weights in memory after the last epoch (as the notebook does), recorded
    as the `last.ckpt` they were saved to.
    """
    callback = trainer.checkpoint_callback
    if not cfg.get("train"):
        return cfg.get("ckpt_path"), cfg.get("ckpt_path")
    has_val = len(datamodule.datasets["val"]) > 0
    if callback is not None and callback.monitor and has_val and callback.best_model_path:
        return "best", callback.best_model_path
    last = callback.last_model_path if callback is not None else ""
    return None, last or None
