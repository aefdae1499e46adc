"""Search hyperparameters on validation OA with Optuna: `python -m hsi.search hparams_search=<name> ...`.

A Hydra app over the same config tree as `python -m hsi.train`: the command line composes the
training config every trial starts from; `hparams_search=<name>` (conf/hparams_search/) adds the
search (`search.*`: study name, number of trials, storage, sampler, pruner, space). A range on the
command line (`'data.patch_size=choice(7,9)'`) replaces the config's range for that key; a fixed
value takes the key out of the space. The engine is `hsi.studies.search`; see docs/outputs.md.

    python -m hsi.search hparams_search=synthetic_optuna data=synthetic trainer.max_epochs=3
    python -m hsi.search hparams_search=honest_optuna experiment=honest_fields search.workers=2
    python -m hsi.summarize outputs/search/<study_name>       # the table, the best trial's command
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import hsi.run.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.errors import ConfigError, MissingDependencyError
from hsi.run.compat_keys import refuse_old_keys_in_argv
from hsi.utils.reporting import report_errors

try:
    from hsi.studies.search import describe, run_search
    from hsi.studies.space import split_sweeps
except ModuleNotFoundError as missing:  # the `search` extra
    if missing.name is None or not missing.name.startswith(("optuna", "sqlalchemy")):
        raise
    run_search = None
    split_sweeps = None

log = logging.getLogger(__name__)

__all__ = ["main"]

# the command line as typed (a search space on it is taken out before Hydra sees it)
ARGV: list[str] = []
SWEEPS: list[str] = []


def search(cfg: DictConfig) -> dict:
    if run_search is None:
        raise MissingDependencyError("python -m hsi.search needs Optuna: pip install -e '.[search]' "
                                     "(make install includes it).")
    if cfg.get("search") is None:
        raise ConfigError("Name a search: python -m hsi.search hparams_search=<name> (one of "
                          "conf/hparams_search/, e.g. synthetic_optuna or honest_optuna).")
    hydra_cfg = HydraConfig.instance().cfg
    return run_search(cfg, hydra_cfg, GlobalHydra.instance().config_loader(), ARGV, SWEEPS)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    results = report_errors(search, cfg)
    print(describe(results))


def cli() -> None:
    """Take the search-space ranges out of the command line, then start the Hydra app."""
    refuse_old_keys_in_argv("search")
    ARGV[:] = [a for a in sys.argv[1:] if not a.startswith("search.workers=")]
    if split_sweeps is not None:
        SWEEPS[:], rest = split_sweeps(sys.argv[1:])
        sys.argv[1:] = rest
    main()


if __name__ == "__main__":
    cli()
