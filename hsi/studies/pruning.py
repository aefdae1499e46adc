"""Pruning: a trial reports its validation OA after every epoch; the study's pruner may stop it.

`ReportToTrial` is a Lightning callback (the equivalent of optuna-integration's
`PyTorchLightningPruningCallback`, without its extra dependency): after each validation loop it
reports `val/oa` to the Optuna trial at step = epoch and, when the pruner says so, raises
`optuna.TrialPruned`, which ends `trainer.fit` at once (no test, no map, no metrics.json from the
run). The search then records the trial as pruned (`hsi.studies.search`).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import optuna
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

__all__ = ["MONITOR", "ReportToTrial", "build_pruner"]

# what a trial reports each epoch: the validation OA logged by HSIClassifier
MONITOR = "val/oa"


def build_pruner(cfg: DictConfig | None) -> optuna.pruners.BasePruner:
    """The configured pruner (`search.pruner`, a `_target_` node); none: `NopPruner`."""
    if cfg is None or "_target_" not in cfg:
        return optuna.pruners.NopPruner()
    return instantiate(cfg)


class ReportToTrial(Callback):
    """Report `val/oa` to `trial` after each epoch's validation; prune when the pruner says so."""

    def __init__(self, trial: optuna.Trial, monitor: str = MONITOR) -> None:
        self.trial = trial
        self.monitor = monitor
        self.reported: dict[int, float] = {}  # epoch -> val OA
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        score = float(value)
        self.reported[epoch] = score
        self.trial.report(score, step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            log.info("Trial %d pruned after epoch %d (%s %.4f)", self.trial.number, epoch, self.monitor,
                     score)
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.monitor} {score:.4f})")

    @property
    def best(self) -> float | None:
        """The best validation OA reported so far."""
        return max(self.reported.values()) if self.reported else None

    def state_dict(self) -> dict[str, Any]:
        return {"reported": dict(self.reported)}
