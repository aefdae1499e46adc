"""HSIClassifier: the LightningModule that trains and evaluates any window classifier."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hsi.errors import DataError
from hsi.models.metrics import accuracy_report, classification_metrics


def _plain(config: Any) -> Any:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config


class HSIClassifier(L.LightningModule):
    """Wraps a network built from `net` (a Hydra config with `_target_`) for the data's shapes.

    The network is built here from its config and the data's (bands, patch size, classes),
    so the checkpoint's hyperparameters alone rebuild the model (`load_from_checkpoint`); what
    prediction needs besides (PCA, split, classes) is the datamodule's checkpoint state.
    """

    def __init__(self, net: dict, num_bands: int, patch_size: int, num_classes: int,
                 class_names: list[str] | None = None,
                 optimizer: dict | None = None, scheduler: dict | None = None,
                 scheduler_monitor: str = "train/loss",
                 class_weights: list[float] | None = None) -> None:
        super().__init__()
        net, optimizer, scheduler = _plain(net), _plain(optimizer), _plain(scheduler)
        class_names = list(class_names) if class_names is not None else [
            f"class_{k}" for k in range(1, num_classes + 1)]
        class_weights = list(class_weights) if class_weights is not None else None
        self.save_hyperparameters(logger=False)
        self.net: nn.Module = instantiate(net, in_bands=num_bands, patch_size=patch_size,
                                          num_classes=num_classes)
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.criterion = nn.CrossEntropyLoss(weight=weight)
        self.train_metrics = classification_metrics(num_classes).clone(prefix="train/")
        self.val_metrics = classification_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = classification_metrics(num_classes).clone(prefix="test/")
        self._test_preds: list[torch.Tensor] = []
        self._test_targets: list[torch.Tensor] = []
        self.test_report: dict[str, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        x, y = batch
        logits = self(x)
        return self.criterion(logits, y), logits.argmax(1), y

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, preds, y = self._step(batch)
        if not torch.isfinite(loss):
            raise DataError(f"The training loss became {loss.item()} at epoch {self.current_epoch}, "
                            f"batch {batch_idx}: the windows hold non-finite or huge values (check the "
                            f"cube and data.pca.components) or the learning rate is too high "
                            f"(model.optimizer.lr). The run was stopped.")
        self.train_metrics.update(preds, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, prog_bar=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.val_metrics.update(preds, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True)
        self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._test_preds, self._test_targets = [], []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.test_metrics.update(preds, y)
        self._test_preds.append(preds.detach().cpu())
        self._test_targets.append(y.detach().cpu())
        self.log("test/loss", loss, on_step=False, on_epoch=True)
        self.log_dict(self.test_metrics, on_step=False, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        preds = self.all_gather_cat(self._test_preds)
        targets = self.all_gather_cat(self._test_targets)
        self.test_report = accuracy_report(preds, targets, self.hparams.num_classes)
        self.test_report.update(preds=preds, targets=targets)

    def all_gather_cat(self, chunks: list[torch.Tensor]) -> torch.Tensor:
        """Concatenate per-step tensors, and across processes when running distributed.

        Distributed, the test set's order is restored and the DistributedSampler's padding dropped,
        so every test sample counts exactly once, as in a single-process test.
        """
        local = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.long)
        if self.trainer.world_size == 1:
            return local
        gathered = self.all_gather(local.to(self.device))  # (world, n_local): equal shards
        return gathered.transpose(0, 1).reshape(-1)[: self._distributed_test_size()].cpu()

    def _distributed_test_size(self) -> int:
        """The test set's size, checking its sampler deals sample i to rank i % world_size in order.

        DistributedSampler(shuffle=False) gives rank r the samples r, r + W, r + 2W, ... of the
        dataset padded with its first samples to a multiple of W, so interleaving the gathered
        shards and keeping the first len(dataset) is the dataset in order.
        """
        from torch.utils.data import DistributedSampler

        loaders = self.trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or sampler.shuffle or sampler.drop_last:
            raise RuntimeError(f"Distributed test needs an unshuffled DistributedSampler without "
                               f"drop_last to gather exact metrics, got {sampler!r}; keep the "
                               f"Trainer's use_distributed_sampler=True")
        return len(loader.dataset)

    def configure_optimizers(self) -> Any:
        optimizer_cfg = self.hparams.optimizer or {"_target_": "torch.optim.Adam", "lr": 1e-3}
        optimizer = instantiate(optimizer_cfg, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler, optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.scheduler_monitor,
                                 "interval": "epoch"}}
