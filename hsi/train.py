"""Train (and test) a classifier: `python -m hsi.train [overrides]`, a Hydra app over `conf/`."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

import hsi.run.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.run.compat_keys import refuse_old_keys_in_argv
from hsi.run.training import train
from hsi.utils.reporting import report_errors

log = logging.getLogger(__name__)

__all__ = ["main", "train"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    log.debug("Config:\n%s", OmegaConf.to_yaml(cfg))
    metrics = report_errors(train, cfg)
    return metrics.get(cfg.get("optimized_metric") or "oa")


if __name__ == "__main__":
    refuse_old_keys_in_argv("train")  # before Hydra parses the command line
    main()
