"""Self-supervised pretext task for a network's trunk: masked window reconstruction.

Every network of the zoo splits into `trunk` and `head` (`hsi.models.contract.Network`; the head is
the module `classifier`, the prefix of its keys), and the trunk's output is what the head reads
(`classifier_input`). `MaskedReconstruction` hides a share of
each window's pixels and of its bands, encodes the masked window with the trunk and decodes the
whole window from the trunk's output with one linear layer; the loss is the mean squared error over
the window. Labels are never read. Pretraining moves the trunk's weights in place; `trunk_state`
and `load_trunk` save and restore them (the head is left at its initialisation).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from hsi.errors import ConfigError, DataError
from hsi.models.contract import Network

HEAD = "classifier"  # the head's module name: its state-dict keys start with "classifier."


def head_of(net: nn.Module) -> nn.Module:
    """The network's head (`Network.head`); a network outside the contract cannot be pretrained."""
    if not isinstance(net, Network):
        raise ConfigError(f"{type(net).__name__} is not an hsi.models.contract.Network, so its trunk cannot "
                          f"be told apart from its head: use pretrain=none with this network.")
    return net.head


def classifier_input(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, features): what the head reads for windows `x` (the trunk's output, flattened)."""
    head_of(net)
    return net.trunk(x).flatten(1)


def trunk_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The trunk's parameters and buffers (the network's state without the head's), on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items() if not k.startswith(f"{HEAD}.")}


def load_trunk(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put a saved trunk into `net`; the head keeps its weights. Shapes and names must match."""
    ours = {k: v for k, v in net.state_dict().items() if not k.startswith(f"{HEAD}.")}
    if set(ours) != set(state) or any(ours[k].shape != state[k].shape for k in ours):
        raise ConfigError(f"The pretrained trunk does not fit this {type(net).__name__} (other layers or "
                          f"sizes): pretrain again with this model, window and data.pca.components.")
    net.load_state_dict(state, strict=False)


class MaskedReconstruction(L.LightningModule):
    """Masked window reconstruction over windows `(N, 1, bands, p, p)` (labels ignored).

    `mask_ratio`: share of the window's pixels hidden (all their bands set to 0);
    `band_mask_ratio`: share of bands hidden in every pixel of a window. The optimizer (Adam,
    `lr`, `weight_decay`) updates the trunk and the decoder, never the head.
    """

    def __init__(self, net: nn.Module, in_bands: int, patch_size: int, mask_ratio: float = 0.5,
                 band_mask_ratio: float = 0.25, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__()
        for name, value in (("mask_ratio", mask_ratio), ("band_mask_ratio", band_mask_ratio)):
            if not 0 <= value < 1:
                raise ConfigError(f"pretrain.{name}={value!r} must be from 0 to below 1 (0.5 is usual).")
        self.net = net
        self.mask_ratio, self.band_mask_ratio = float(mask_ratio), float(band_mask_ratio)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            probe = classifier_input(net, torch.zeros(2, 1, in_bands, patch_size, patch_size))
        net.train(was_training)
        self.decoder = nn.Linear(probe.shape[1], in_bands * patch_size * patch_size)
        self.epoch_losses: list[float] = []
        self._sum, self._count = 0.0, 0

    def masked(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with a random share of each window's pixels and bands set to 0."""
        n, _, bands, p, _ = x.shape
        keep_pixels = torch.rand(n, 1, 1, p, p, device=x.device) >= self.mask_ratio
        keep_bands = torch.rand(n, 1, bands, 1, 1, device=x.device) >= self.band_mask_ratio
        return x * (keep_pixels & keep_bands)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        decoded = self.decoder(classifier_input(self.net, self.masked(x))).view_as(x)
        loss = nn.functional.mse_loss(decoded, x)
        if not torch.isfinite(loss):
            raise DataError(f"The pretraining loss became {loss.item()}: the windows hold non-finite "
                              f"values (check the cube) or pretrain.lr is too high.")
        self._sum += float(loss.detach()) * len(x)
        self._count += len(x)
        self.log("pretrain/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        if self._count:
            self.epoch_losses.append(round(self._sum / self._count, 6))
        self._sum, self._count = 0.0, 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        head = {id(p) for p in head_of(self.net).parameters()}
        trunk = [p for p in self.net.parameters() if id(p) not in head]
        return torch.optim.Adam([*trunk, *self.decoder.parameters()], lr=self.lr,
                                weight_decay=self.weight_decay)
