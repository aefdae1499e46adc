"""Old spellings, read or refused in this one place.

- checkpoint format 1 (before the datamodule carried its own state: flat split and PCA keys, a
  hand-assembled scene record under "hsi"), upgraded to today's settings and state;
- the datamodule's format-1 flat keys (`data.test_ratio`, `data.pca_components`, ...), refused
  with their new spelling;
- split `_target_`s of the modules before `hsi.data.splits` (`hsi.data.split.RandomSplit`,
  `hsi.data.literature.FixedSplit`) as checkpoints and run configs hold them, and the augmentation's
  `_target_` from before `hsi.data.sampling` (`hsi.data.augment.BatchAugment`) as checkpoints hold it;
- metrics.json keys renamed since (`map_inference` is `map_eval_path`);
- the classifier's hyperparameters renamed since (`num_bands` is `in_bands`), as checkpoints hold them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hsi.data.sampling.augment import BatchAugment
from hsi.data.splits.base import target_of
from hsi.data.splits.registry import strategies, strategy_named
from hsi.errors import ConfigError

STATE_FORMAT = 2  # version of `HSIDataModule.state_dict()`; format 1 is upgraded here

# the datamodule's format-1 arguments and where they live now
RENAMED_DATA_KEYS = {"pca_components": "pca.components", "pca_whiten": "pca.whiten", "pca_fit": "pca.fit",
                     "pca_cache": "pca.cache", "pca_cache_dir": "pca.cache_dir",
                     "test_ratio": "split.test_ratio", "val_ratio": "split.val_ratio",
                     "train_per_class": "split.train_per_class", "block_size": "split.block_size",
                     "train_mask_path": "split.train_mask_path", "test_mask_path": "split.test_mask_path",
                     "val_mask_path": "split.val_mask_path"}
OLD_SPLIT_MODULES = ("hsi.data.split", "hsi.data.literature")
RENAMED_METRICS = {"map_inference": "map_eval_path"}
# BatchAugment.config()'s `_target_` before the module moved, and today's (derived, never spelled)
OLD_AUGMENT_TARGETS = ("hsi.data.augment.BatchAugment",)
AUGMENT_TARGET = target_of(BatchAugment)
RENAMED_MODEL_HPARAMS = {"num_bands": "in_bands"}


def refuse_renamed_keys(options: Mapping[str, Any]) -> None:
    """Format-1 datamodule keys among `options`, refused with their new spelling."""
    old = [k for k in options if k in RENAMED_DATA_KEYS]
    if old:
        raise ConfigError(", ".join(f"data.{k} is now data.{RENAMED_DATA_KEYS[k]}" for k in old)
                          + f" (the split itself: data/split={'|'.join(strategies())}).")


def upgrade_split_config(split: Any) -> Any:
    """A split config whose `_target_` names a class in a module it has left, pointed at its
    module today; anything else as it is."""
    if not isinstance(split, Mapping) or not isinstance(split.get("_target_"), str):
        return split
    module, _, name = split["_target_"].rpartition(".")
    cls = strategy_named(name) if module in OLD_SPLIT_MODULES else None
    return split if cls is None else {**split, "_target_": target_of(cls)}


def upgrade_augment_config(augment: Any) -> Any:
    """An augmentation config whose `_target_` names `BatchAugment` in the module it has left,
    pointed at its module today; anything else as it is."""
    if isinstance(augment, Mapping) and augment.get("_target_") in OLD_AUGMENT_TARGETS:
        return {**augment, "_target_": AUGMENT_TARGET}
    return augment


def upgrade_format1_data(flat: dict[str, Any]) -> dict[str, Any]:
    """Format 1's flat datamodule settings as today's: split and PCA keys in their own nodes."""
    cls = strategies()[flat.get("split", "random")]
    split_keys = {k for k, v in RENAMED_DATA_KEYS.items() if v.startswith("split.")}
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    split = {"_target_": target_of(cls), **{k: flat[k] for k in sorted(split_keys & fields) if k in flat}}
    pca = {new.removeprefix("pca."): flat[old] for old, new in RENAMED_DATA_KEYS.items()
           if new.startswith("pca.") and old in flat}
    rest = {k: v for k, v in flat.items() if k != "split" and k not in RENAMED_DATA_KEYS}
    return {**rest, "split": split, "pca": pca}


def upgrade_format1_state(info: dict[str, Any]) -> dict[str, Any]:
    """Format 1's scene record as today's datamodule state."""
    return {"format_version": STATE_FORMAT, "scene": info["scene"], "raw_bands": info["raw_bands"],
            "shape": None, "patch_size": info["patch_size"], "pca": info["pca"], "split": info["split"],
            "class_names": list(info["class_names"]), "label_values": list(info["label_values"]),
            "rgb_bands": info.get("rgb_bands"), "colours": info.get("colours")}


def upgrade_metrics(metrics: Any) -> Any:
    """A run's metrics.json with today's key names."""
    if not isinstance(metrics, dict):
        return metrics
    renamed = {old: new for old, new in RENAMED_METRICS.items() if old in metrics and new not in metrics}
    return {renamed.get(k, k): v for k, v in metrics.items()}


def upgrade_model_hparams(contents: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's contents with its classifier's `hyper_parameters` under today's names."""
    hparams = contents.get("hyper_parameters")
    if not isinstance(hparams, Mapping):
        return contents
    renamed = {old: new for old, new in RENAMED_MODEL_HPARAMS.items()
               if old in hparams and new not in hparams}
    if not renamed:
        return contents
    upgraded = {renamed.get(k, k): v for k, v in hparams.items()}
    return {**contents, "hyper_parameters": upgraded}
