"""Checks of a command's settings before anything is built: types and ranges of every user-facing
key, named as the user types it, so a typo fails in the first second rather than after training."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig

from hsi.data.preprocessing import PCA_FITS
from hsi.data.sampling.patches import EVAL_PATHS
from hsi.errors import ConfigError
from hsi.utils.hardware import cpu_computes_bf16


def _value(cfg: DictConfig, key: str) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=None)


def require_int(cfg: DictConfig, key: str, minimum: int | None = None, optional: bool = False,
                hint: str = "") -> None:
    """`key` holds an integer (not a bool, not 12.5, not 'abc') of at least `minimum`."""
    value = _value(cfg, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value!r} must be a whole number{_at_least(minimum)}{hint}.")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}={value} must be{_at_least(minimum)}{hint}.")


def require_number(cfg: DictConfig, key: str, low: float, high: float, optional: bool = False) -> None:
    value = _value(cfg, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{key}={value!r} must be a number from {low} to {high}.")


def require_choice(cfg: DictConfig, key: str, choices: Iterable[str]) -> None:
    value = _value(cfg, key)
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(choices)}.")


def _at_least(minimum: int | None) -> str:
    return f" >= {minimum}" if minimum is not None else ""


def check_data(cfg: DictConfig) -> None:
    """The `data` node: window, PCA, loaders, seed of the split."""
    if "data" not in cfg or cfg.data is None:
        return
    require_int(cfg, "data.patch_size", 1)
    if cfg.data.patch_size % 2 == 0:
        raise ConfigError(f"data.patch_size={cfg.data.patch_size}: the window must have a centre pixel, "
                          f"so the patch size must be odd (e.g. {cfg.data.patch_size + 1}).")
    require_int(cfg, "data.split_seed", optional=True)
    require_int(cfg, "data.batch_size", 1)
    require_int(cfg, "data.eval_batch_size", 1)
    require_int(cfg, "data.num_workers", 0)
    if _value(cfg, "data.eval_path") is not None:
        require_choice(cfg, "data.eval_path", EVAL_PATHS)
    check_split_keys(cfg)
    if "pca" in cfg.data and cfg.data.pca is not None:
        require_int(cfg, "data.pca.components", 1, optional=True,
                    hint=" (or null to keep all bands)")
        require_choice(cfg, "data.pca.fit", PCA_FITS)


def check_split_keys(cfg: DictConfig) -> None:
    """Keys of `data.split` that its strategy does not take (e.g. an experiment's test_ratio
    combined with data/split=mask) are named, with the override that removes them."""
    split = _value(cfg, "data.split")
    if not isinstance(split, DictConfig) or not isinstance(split.get("_target_"), str):
        return
    try:
        params = inspect.signature(get_class(split._target_)).parameters
    except Exception:  # noqa: BLE001 - an unknown target is reported when it is built
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    extra = [str(k) for k in split if not str(k).startswith("_") and k not in params]
    if extra:
        method = split._target_.rsplit(".", 1)[-1]
        raise ConfigError(f"{', '.join(f'data.split.{k}' for k in extra)} do not apply to this split "
                          f"({method} takes {', '.join(params) or 'no keys'}); an experiment sets them "
                          f"for its own split: remove them with "
                          f"{' '.join(f'~data.split.{k}' for k in extra)}, or leave out data/split=.")


def check_model(cfg: DictConfig) -> None:
    weights = _value(cfg, "model.class_weights")
    if weights is None or weights == "balanced":
        return
    if not isinstance(weights, (list, ListConfig)) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights):
        raise ConfigError(f"model.class_weights={weights!r}: give null, balanced, or a list of one "
                          f"non-negative weight per class.")


def check_accelerator(cfg: DictConfig) -> None:
    """A GPU asked for where there is none is refused in one line; mixed precision on the CPU
    (many times slower than fp32 there, it looks hung) is warned about."""
    trainer = cfg.get("trainer") or {}
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} (trainer=gpu) but torch sees no CUDA GPU here "
                          f"(torch {torch.__version__}); use trainer=cpu (or trainer.accelerator=auto), or "
                          f"install a CUDA build of torch.")
    precision = str(trainer.get("precision", "32-true"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and precision.startswith("bf16") and not cpu_computes_bf16():
        logging.getLogger("hsi").warning(
            "trainer.precision=%s on a CPU without avx512_bf16 / amx_bf16: bf16 is converted to fp32 and "
            "back there, 2-5x slower than fp32; trainer.precision=auto picks 32-true on this CPU.", precision)
    if on_cpu and precision.startswith("16"):
        logging.getLogger("hsi").warning(
            "trainer.precision=%s on the CPU: half precision is emulated there and a step can take 10x "
            "longer than fp32 (it looks hung); use trainer.precision=32-true (or bf16-mixed) on CPUs.",
            precision)


def check_trainer(cfg: DictConfig) -> None:
    check_accelerator(cfg)
    trainer = cfg.get("trainer") or {}
    if trainer.get("fast_dev_run"):
        return
    epochs = trainer.get("max_epochs")
    if epochs is None:
        return
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise ConfigError(f"trainer.max_epochs={epochs!r} must be a whole number >= 1.")
    if epochs == 0 and cfg.get("train", True):
        raise ConfigError("trainer.max_epochs=0 would test untrained weights; give at least 1, or "
                          "train=false ckpt_path=<checkpoint> to only test a trained one.")
    if epochs < 0 and not (trainer.get("max_steps", -1) > 0 or trainer.get("max_time")):
        raise ConfigError(f"trainer.max_epochs={epochs} trains until stopped by hand; give a number of "
                          f"epochs (or trainer.max_steps / trainer.max_time).")


def check_train_config(cfg: DictConfig) -> None:
    """Every user-facing key of `python -m hsi.train`, before the scene is loaded."""
    require_int(cfg, "seed")
    check_data(cfg)
    check_model(cfg)
    check_trainer(cfg)
    if cfg.get("search") is not None:
        raise ConfigError("hparams_search=... describes a search: run it with `python -m hsi.search "
                          "hparams_search=<name> ...` (python -m hsi.train trains one run).")
    metric = cfg.get("optimized_metric")
    if metric is not None and metric not in ("val_oa",):
        raise ConfigError(f"optimized_metric={metric!r}: a search may only optimise val_oa (the best "
                          f"validation OA); test pixels are for the final numbers only.")
    if not cfg.get("train") and cfg.get("test") and cfg.get("ckpt_path") is None:
        raise ConfigError("train=false tests a trained checkpoint: give ckpt_path=<file>.")


def check_predict_config(cfg: DictConfig) -> None:
    """`python -m hsi.predict` and `python -m hsi.evaluate`: `inference.*`, `moved.*`, `data.*`."""
    if cfg.get("ckpt_path") and cfg.get("model_path"):
        raise ConfigError(f"Both ckpt_path={cfg.ckpt_path} and model_path={cfg.model_path} are given; "
                          f"give one: ckpt_path= (a checkpoint) or model_path= (an exported model).")
    inference = cfg.get("inference") or {}
    require_choice(cfg, "inference.eval_path", EVAL_PATHS)
    for key in ("batch_size", "tile_rows"):
        if key in inference:
            require_int(cfg, f"inference.{key}", 1)
    if "device" in inference:
        require_choice(cfg, "inference.device", ("auto", "cpu", "cuda"))
    if "precision" in inference:  # hsi.predict's inference precision
        require_choice(cfg, "inference.precision", ("auto", "32-true", "bf16-mixed"))
    if "stream" in inference and inference.stream not in (True, False, "auto"):
        raise ConfigError(f"inference.stream={inference.stream!r}: choose true, false or auto.")
    for key in ("block_rows", "tile_pixels", "threads"):
        if inference.get(key) is not None:
            require_int(cfg, f"inference.{key}", 1)
    moved = sorted(key for key, value in (cfg.get("moved") or {}).items() if value is not None)
    if moved and cfg.get("data") is not None:
        raise ConfigError(f"moved.{moved[0]}= is where the model's own scene moved, and data= names "
                          f"another scene: give that scene's files as data.cube_path= / data.gt_path= "
                          f"(or data.data_dir=), or leave out data= .")
    check_data(cfg)
