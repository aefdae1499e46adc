"""Consistency regularisation on unlabelled windows (FixMatch-style; `semi=fixmatch`).

For a batch of unlabelled windows the network's prediction on the windows as they are gives a
pseudo-label where its top probability reaches `threshold`; the loss is the cross-entropy of the
network's prediction on a strongly changed copy (`strong`: a `BatchAugment` setting, e.g. flips,
turns, scaling, band dropout, noise) against those pseudo-labels, averaged over the whole batch
(windows below the threshold count as 0). `HSIClassifier` adds `weight` times it to the training
loss. Sohn et al., "FixMatch", NeurIPS 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from hsi.data.sampling.augment import BatchAugment
from hsi.errors import ConfigError


class ConsistencyLoss(nn.Module):
    """`weight`, `threshold` and the `strong` change of unlabelled windows; see the module docstring."""

    def __init__(self, weight: float = 1.0, threshold: float = 0.95, strong: Mapping[str, Any] | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if not (isinstance(weight, (int, float)) and weight >= 0):
            raise ConfigError(f"semi.weight={weight!r} must be a number of at least 0 (1 is usual).")
        if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
            raise ConfigError(f"semi.threshold={threshold!r} must be from 0 to below 1 (0.95 is usual).")
        self.weight, self.threshold = float(weight), float(threshold)
        self.strong = BatchAugment.from_any({**dict(strong or {}), "seed": int(seed)}) or BatchAugment()

    def forward(self, network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, share of windows confident enough to count) for unlabelled windows `x`."""
        with torch.no_grad():
            confidence, pseudo = network(x).softmax(1).max(1)
        counted = (confidence >= self.threshold).to(x.dtype)
        changed, _ = self.strong(x, pseudo, self.strong.generator(x.device, offset=rank))
        loss = nn.functional.cross_entropy(network(changed), pseudo, reduction="none")
        return (loss * counted).mean(), counted.mean()
