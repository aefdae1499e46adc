"""Hyperparameter search with Optuna (`hparams_search=<name>`, the `search` extra).

`conf/hparams_search/_optuna.yaml` sets Hydra's Optuna sweeper (hydra-optuna-sweeper) to maximise
the best validation OA that `python -m hsi.train` returns, and the Hydra callback `PrepareSearch`,
which runs once before the sweeper is built:

- a search without validation pixels is refused at once (every trial would return no `val_oa`:
  the sweeper would train them all and then fail);
- a resumed study (same `storage` and `study_name`) gets the sampler seed + the number of trials
  the study already holds. The sweeper builds its sampler from `hydra.sweeper.sampler.seed` at every
  start, so a resumed study would otherwise draw the very same random start-up trials again and
  train the first trials' settings a second time. A fresh search stays reproducible.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hsi.errors import ConfigError
from hsi.utils.files import release_run_folder
from hsi.utils.reporting import exit_with

log = logging.getLogger(__name__)

__all__ = ["PrepareSearch", "check_validation_pixels", "stored_trials"]


def stored_trials(storage: str | None, study_name: str | None) -> int:
    """How many trials the study `study_name` in `storage` holds (0 when there is none yet).

    An SQLite file that does not exist is not created (the sweeper creates it in its own folder).
    """
    if not storage or not study_name:
        return 0
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        return 0
    import optuna  # the `search` extra; only here, so that composing a config never needs it

    summaries = optuna.get_all_study_summaries(storage=storage)
    return next((s.n_trials for s in summaries if s.study_name == study_name), 0)


def check_validation_pixels(cfg: DictConfig) -> None:
    """A search optimises validation OA: the split must keep validation pixels."""
    split = OmegaConf.select(cfg, "data.split")
    if split is None or cfg.get("optimized_metric") != "val_oa":
        return
    if "val_ratio" in split and not split.val_ratio:
        raise ConfigError(f"data.split.val_ratio={split.val_ratio}: a search optimises validation OA "
                          f"(optimized_metric=val_oa), so the split needs validation pixels, e.g. "
                          f"data.split.val_ratio=0.05; test pixels are never the objective.")
    if "val_mask_path" in split and not split.val_mask_path:
        raise ConfigError("data.split.val_mask_path=null: a search optimises validation OA "
                          "(optimized_metric=val_oa), so give a validation mask.")


class PrepareSearch(Callback):
    """Hydra callback of a search: refuse it without validation pixels; re-seed a resumed study."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_validation_pixels(config)
        except ConfigError as error:
            release_run_folder(config.hydra.sweep.dir)  # claimed just before, still empty
            exit_with(error)
        reseed_resumed_study(config)


def reseed_resumed_study(config: DictConfig) -> None:
    """Sampler seed + stored trials, when the sweeper continues a stored study with a seed."""
    sweeper = OmegaConf.select(config, "hydra.sweeper")
    sampler = None if sweeper is None else sweeper.get("sampler")
    if sampler is None or sampler.get("seed") is None:
        return
    done = stored_trials(sweeper.get("storage"), sweeper.get("study_name"))
    if not done:
        return
    seed = int(sampler.seed)
    with read_write(sampler), open_dict(sampler):
        sampler.seed = seed + done
    log.info("Study %s holds %d trials: resuming it with sampler seed %d (%d + %d)",
             sweeper.study_name, done, seed + done, seed, done)
