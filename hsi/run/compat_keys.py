"""Old spellings of command-line keys, refused in one line with the new address (the one place
for renamed settings; old checkpoints' and runs' keys are read by hsi.data.compat).

Each setting has one dotted path: a command's inference settings are `inference.*`, where a
model's own scene moved is `moved.*`, another scene is `data.*`. Hydra would answer an old key
with a multi-line "not in struct" error (and advise `+key=`, which would be silently ignored), so
commands check their command line here before Hydra composes it (`refuse_old_keys_in_argv`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from hsi.data.compat import RENAMED_DATA_KEYS
from hsi.errors import ConfigError
from hsi.utils.reporting import exit_with

# where the model's own scene files are now (hsi.evaluate, hsi.predict, hsi.export)
MOVED = {key: f"moved.{key}" for key in ("data_dir", "cube_path", "gt_path")}
# how hsi.predict classifies; the top-level spellings before the `inference` node
PREDICT_INFERENCE = {key: f"inference.{key}" for key in (
    "eval_path", "batch_size", "tile_rows", "tile_pixels", "device", "threads", "progress", "stream",
    "stream_above_mb", "block_rows")}
# a data config's training-pipeline keys with a counterpart in hsi.predict's `inference` node
# (`data=<scene>` names another scene there; its pipeline is not read)
PREDICT_DATA = {"data.eval_path": "inference.eval_path", "data.eval_batch_size": "inference.batch_size",
                "data.batch_size": "inference.batch_size", "data.eval_tile_rows": "inference.tile_rows",
                "data.stream": "inference.stream", "data.stream_above_mb": "inference.stream_above_mb",
                "data.block_rows": "inference.block_rows"}
# the datamodule's format-1 flat keys
DATA_KEYS = {f"data.{old}": f"data.{new}" for old, new in RENAMED_DATA_KEYS.items()}

RENAMED: dict[str, dict[str, str]] = {
    "train": {"map_method": "data.eval_path", **DATA_KEYS},
    "evaluate": {**MOVED, "eval_path": "inference.eval_path", "method": "inference.eval_path"},
    "predict": {**MOVED, **PREDICT_INFERENCE, "method": "inference.eval_path", **PREDICT_DATA, **DATA_KEYS},
    "export": {**MOVED, **{key: f"inference.{key}" for key in ("tile_rows", "batch_size", "threads")}},
    "profile": DATA_KEYS,
}
RENAMED["search"] = RENAMED["train"]  # a search composes the training config

WHY = {"moved.": " (where the model's own scene files are now)",
       "inference.": " (how the command classifies pixels)"}


def override_key(argument: str) -> str | None:
    """The dotted key of a `key=value` override (`+key=`, `++key=`, `~key` too), else None."""
    if argument.startswith("-"):
        return None
    key, equals, _ = argument.partition("=")
    key = key.lstrip("+~")
    if not equals and not argument.startswith("~"):
        return None
    return key.split("@", 1)[0] or None


def refuse_old_keys(command: str, overrides: Iterable[str]) -> None:
    """A renamed key among a command's overrides raises ConfigError naming the new key."""
    renamed = RENAMED.get(command, {})
    old = [key for key in map(override_key, overrides) if key in renamed]
    if not old:
        return
    key, new = old[0], renamed[old[0]]
    if command == "predict" and key in PREDICT_DATA:
        raise ConfigError(f"{key}= is not read by hsi.predict (data=<scene> names the scene to classify; "
                          f"its training pipeline is not used): give {PREDICT_DATA[key]}=.")
    why = next((text for prefix, text in WHY.items() if new.startswith(prefix)), "")
    raise ConfigError(f"{key}= is now {new}={why}: give the new name (docs/configuration.md).")


def refuse_old_keys_in_argv(command: str) -> None:
    """Before Hydra parses `python -m hsi.<command> ...`: an old key ends the command in one line."""
    try:
        refuse_old_keys(command, sys.argv[1:])
    except ConfigError as error:
        exit_with(error)
