"""Hydra / OmegaConf glue shared by the entry points."""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hsi.errors import ConfigError, HsiError
from hsi.utils.files import claim_run_folder, release_run_folder
from hsi.utils.reporting import exit_with

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    """`${hsi_root:}` is the project folder (the one that holds `conf/` and `hsi/`)."""
    if not OmegaConf.has_resolver("hsi_root"):
        OmegaConf.register_new_resolver("hsi_root", lambda: str(PROJECT_ROOT))


Settings = TypeVar("Settings")


def settings_from(cls: type[Settings], value: Mapping[str, Any] | DictConfig | None, group: str) -> Settings:
    """A settings dataclass from a config group's node (`pretrain`, `semi`); an unknown key is
    refused with the known ones, None gives the defaults."""
    if value is None:
        return cls()
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"{group}.{unknown[0]} is not a {group} setting; the settings are "
                          f"{', '.join(sorted(known))}.")
    return cls(**value)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Every entry of a config group (callbacks, loggers) that has a `_target_`."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


class ClaimRunFolder(Callback):
    """Hydra callback: a run (or multirun) folder is claimed before Hydra writes into it.

    A folder that already holds a run or any file is refused, and a lock file keeps two runs
    started at once out of the same folder (`hsi.utils.files.claim_run_folder`); the lock is
    removed when the run ends.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _claim(config.hydra.run.dir)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not _started_by_lightning():
            release_run_folder(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_launcher(config)
        _claim(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not _started_by_lightning():
            release_run_folder(config.hydra.sweep.dir)


def check_launcher(config: DictConfig) -> None:
    """`hydra/launcher=slurm` on a machine without Slurm: one line before any folder is made
    (submitit would fail with a traceback on the first job)."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    if target.endswith("SlurmLauncher") and not (shutil.which("sbatch") and shutil.which("srun")):
        exit_with(ConfigError("hydra/launcher=slurm submits every job to Slurm, but this machine has no "
                              "Slurm (no sbatch / srun on PATH): run the command on the cluster's login "
                              "node, or leave hydra/launcher out (hydra/launcher=parallel runs the jobs "
                              "side by side here)."))


def _started_by_lightning() -> bool:
    """A DDP worker that Lightning started with the same command (it shares rank 0's folder)."""
    return os.environ.get("LOCAL_RANK", "0") != "0"


def _claim(folder: str) -> None:
    if _started_by_lightning():
        return
    try:
        claim_run_folder(folder)
    except HsiError as error:
        exit_with(error)
    # released however the command ends short of kill -9 (Ctrl-C in the map or export, a failed
    # job of a sweep), not only through on_run_end / on_multirun_end
    atexit.register(release_run_folder, folder)


register_resolvers()
