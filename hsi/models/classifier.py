"""HSIClassifier: the LightningModule that trains and evaluates any window classifier.

Validation and test take either batches of windows `(x, y)` or, for dense-capable networks,
tiles of the padded scene (`hsi.data.sampling.patches.TileDataset`: a dict with `tile`, `pos`, `target`,
`index`): the trunk runs once over the tile, the head as convolutions (`hsi.models.dense`), and
the logits at the tile's pixels go through the same loss, metrics and predictions as windows.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric

from hsi.errors import ConfigError, DataError
from hsi.models.consistency import ConsistencyLoss
from hsi.models.dense import build_dense_head, check_network_eval_path, tile_logits
from hsi.models.metrics import accuracy_report, classification_metrics

Batch = tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]


def _cat(chunks: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.long)


def _plain(config: Any) -> Any:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config


class HSIClassifier(L.LightningModule):
    """Wraps a network built from `net` (a Hydra config with `_target_`) for the data's shapes.

    The network is built here from its config and the data's (bands, patch size, classes),
    so the checkpoint's hyperparameters alone rebuild the model (`load_from_checkpoint`; a
    checkpoint from before a hyperparameter was renamed, e.g. `num_bands`, loads through
    `hsi.run.checkpoint.load_checkpoint`, which upgrades it); what prediction needs besides
    (PCA, split, classes) is the datamodule's checkpoint state.
    `label_smoothing` (`model.label_smoothing`, 0 to below 1) smooths the targets of the training
    loss; validation and test losses are plain cross-entropy, comparable between runs.
    """

    def __init__(self, net: dict, in_bands: int, patch_size: int, num_classes: int,
                 class_names: list[str] | None = None,
                 optimizer: dict | None = None, scheduler: dict | None = None,
                 scheduler_monitor: str = "train/loss",
                 class_weights: list[float] | None = None, label_smoothing: float = 0.0,
                 consistency: dict | None = None) -> None:
        super().__init__()
        if (isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float))
                or not 0 <= label_smoothing < 1):
            raise ConfigError(f"model.label_smoothing={label_smoothing!r} must be a number from 0 to "
                              f"below 1 (0: none; 0.1 is usual).")
        label_smoothing = float(label_smoothing)
        net, optimizer, scheduler = _plain(net), _plain(optimizer), _plain(scheduler)
        consistency = _plain(consistency)
        class_names = list(class_names) if class_names is not None else [
            f"class_{k}" for k in range(1, num_classes + 1)]
        class_weights = list(class_weights) if class_weights is not None else None
        self.save_hyperparameters(logger=False)
        self.net: nn.Module = instantiate(net, in_bands=in_bands, patch_size=patch_size,
                                          num_classes=num_classes)
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.criterion = nn.CrossEntropyLoss(weight=weight)
        # semi=fixmatch: the loss on unlabelled windows (training batches then come as a dict)
        self.consistency = ConsistencyLoss(**consistency) if consistency else None
        self.train_metrics = classification_metrics(num_classes).clone(prefix="train/")
        self.val_metrics = classification_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = classification_metrics(num_classes).clone(prefix="test/")
        # the mean loss of dense evaluation, weighted by pixels (tiles differ in size)
        self.tile_loss = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self._test_preds: list[torch.Tensor] = []
        self._test_targets: list[torch.Tensor] = []
        self._test_index: list[torch.Tensor] = []  # dense test: each pixel's place in the test set
        self._dense_test = False  # this test epoch ran on tiles (on every process alike)
        self._dense_cache: dict[str, nn.Module] = {}  # this evaluation epoch's DenseHead (no state_dict)
        self.test_report: dict[str, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor],
              smoothing: float = 0.0) -> tuple[torch.Tensor, ...]:
        x, y = batch
        logits = self(x)
        if smoothing:  # the training loss only (model.label_smoothing)
            loss = nn.functional.cross_entropy(logits, y, weight=self.criterion.weight,
                                               label_smoothing=smoothing)
        else:
            loss = self.criterion(logits, y)
        return loss, logits.argmax(1), y

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        unlabelled = None
        if isinstance(batch, dict):  # {"labelled": (x, y), "unlabelled": (x, -1)}: semi=fixmatch
            batch, unlabelled = batch["labelled"], batch["unlabelled"][0]
        loss, preds, y = self._step(batch, self.hparams.get("label_smoothing", 0.0))
        if unlabelled is not None and self.consistency is not None:
            extra, counted = self.consistency(self, unlabelled, self.global_rank)
            loss = loss + self.consistency.weight * extra
            self.log("train/loss_unlabelled", extra, on_step=False, on_epoch=True, batch_size=len(unlabelled))
            self.log("train/confident", counted, on_step=False, on_epoch=True, batch_size=len(unlabelled))
        if not torch.isfinite(loss):
            raise DataError(f"The training loss became {loss.item()} at epoch {self.current_epoch}, "
                            f"batch {batch_idx}: the windows hold non-finite or huge values (check the "
                            f"cube and data.pca.components) or the learning rate is too high "
                            f"(model.optimizer.lr). The run was stopped.")
        self.train_metrics.update(preds, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, prog_bar=False, batch_size=len(y))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if isinstance(batch, dict):
            self._tile_step(batch, batch_idx, "val")
            return
        loss, preds, y = self._step(batch)
        self.val_metrics.update(preds, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True)
        self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_start(self) -> None:
        self._dense_cache.clear()  # the weights changed since the last evaluation

    def on_validation_epoch_end(self) -> None:
        self._dense_cache.clear()

    def on_test_epoch_start(self) -> None:
        self._test_preds, self._test_targets, self._test_index = [], [], []
        self._dense_test = False
        self._dense_cache.clear()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        if isinstance(batch, dict):
            self._tile_step(batch, batch_idx, "test")
            return
        loss, preds, y = self._step(batch)
        self.test_metrics.update(preds, y)
        self._test_preds.append(preds.detach().cpu())
        self._test_targets.append(y.detach().cpu())
        self.log("test/loss", loss, on_step=False, on_epoch=True)
        self.log_dict(self.test_metrics, on_step=False, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self._dense_cache.clear()
        if self._dense_test:  # tiles on every process: the sampler gives each at least one
            preds, targets = self._gather_in_order(*(_cat(chunks) for chunks in (
                self._test_index, self._test_preds, self._test_targets)))
        else:
            preds = self.all_gather_cat(self._test_preds)
            targets = self.all_gather_cat(self._test_targets)
        self.test_report = accuracy_report(preds, targets, self.hparams.num_classes)
        self.test_report.update(preds=preds, targets=targets)

    # -- dense evaluation ---------------------------------------------------------------------
    def dense_logits_at(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (n, K) of a tile's pixels: the trunk once over the tile, the head as
        convolutions (built once per evaluation epoch from the current weights)."""
        head = self._dense_cache.get("head")
        if head is None:
            check_network_eval_path(self.net, "dense", "data.eval_path")
            head = build_dense_head(self.net, self.hparams.in_bands, self.hparams.patch_size)
            self._dense_cache["head"] = head
        logits = tile_logits(self.net, head, batch["tile"])  # (K, rows, W)
        pos = batch["pos"]
        return logits[:, pos[:, 0], pos[:, 1]].T

    def _tile_step(self, batch: dict[str, torch.Tensor], batch_idx: int, stage: str) -> None:
        logits = self.dense_logits_at(batch)
        y = batch["target"]
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        self._dense_test = self._dense_test or stage == "test"
        if not self._is_sampler_padding(batch_idx, stage):
            preds = logits.argmax(1)
            metrics.update(preds, y)
            self.tile_loss[stage].update(self.criterion(logits, y).float(), weight=len(y))
            if stage == "test":
                self._test_preds.append(preds.detach().cpu())
                self._test_targets.append(y.detach().cpu())
                self._test_index.append(batch["index"].detach().cpu())
        # metric objects: computed (and synchronised across processes) at the epoch's end
        self.log(f"{stage}/loss", self.tile_loss[stage], on_step=False, on_epoch=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def _is_sampler_padding(self, batch_idx: int, stage: str) -> bool:
        """Whether this tile is a DistributedSampler's repeat of an earlier one (distributed only).

        An unshuffled DistributedSampler deals item i to rank i % world_size and pads the end
        with the first items, so step k of rank r is item k * world_size + r, a repeat when it is
        past the dataset's end. A repeated tile would count its pixels twice.
        """
        from torch.utils.data import DistributedSampler

        world = self.trainer.world_size
        if world == 1:
            return False
        loaders = self.trainer.test_dataloaders if stage == "test" else self.trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or sampler.shuffle or sampler.drop_last:
            return False  # the test report still drops repeats by pixel index
        return batch_idx * world + self.global_rank >= len(loader.dataset)

    def _gather_in_order(self, index: torch.Tensor, preds: torch.Tensor,
                         targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions and targets of the whole test set in its order, from every process.

        Each pixel carries its place in the test set (`index`); the rows of all processes
        (different lengths: tiles differ in size) are gathered, sorted by index, and a
        pixel seen twice (a tile the sampler repeated) is kept once.
        """
        rows = torch.stack([index, preds, targets], 1).long()
        if self.trainer.world_size > 1:
            count = torch.tensor([len(rows)], device=self.device)
            longest = int(self.all_gather(count).max())
            padded = torch.full((longest, 3), -1, dtype=torch.long, device=self.device)
            padded[:len(rows)] = rows.to(self.device)
            rows = self.all_gather(padded).reshape(-1, 3).cpu()
            rows = rows[rows[:, 0] >= 0]
        rows = rows[torch.argsort(rows[:, 0], stable=True)]
        keep = torch.ones(len(rows), dtype=torch.bool)
        keep[1:] = rows[1:, 0] != rows[:-1, 0]
        rows = rows[keep]
        size = self._test_size()
        complete = len(rows) == size and torch.equal(rows[:, 0], torch.arange(len(rows)))
        # a test cut short by Lightning (limit_test_batches, fast_dev_run) covers some tiles only:
        # it reports on the pixels it evaluated, as the window path does (see finish_run)
        partial = self._test_is_limited() and len(rows) < size and bool((rows[:, 0] < size).all())
        if not (complete or partial):
            raise RuntimeError(f"dense test gathered {len(rows)} distinct pixels, not the test set's "
                               f"{size} in order")
        return rows[:, 1], rows[:, 2]

    def _test_is_limited(self) -> bool:
        """Whether Lightning's flags (fast_dev_run, limit_test_batches) cut the test short."""
        trainer = self.trainer
        if trainer.fast_dev_run:
            return True
        limit = trainer.limit_test_batches
        return limit is not None and (isinstance(limit, int) or float(limit) < 1.0)

    def _test_size(self) -> int:
        loaders = self.trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        dataset = loader.dataset
        return int(getattr(dataset, "num_pixels", len(dataset)))

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
