"""The network contract: what a network is and can do, declared once.

TEMPORARY copy on branch w4/dhx with the API of the lead's spec; helper `contract` writes the
real module on w4/contract, which replaces this one at merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from hsi.models.blocks import require_input


@dataclass(frozen=True)
class Reference:
    """Where a network comes from and the settings its parameter count was measured at."""

    paper: str
    code: str
    settings: dict = field(default_factory=dict)
    params: int = 0
    counted: str = ""


class Network(nn.Module):
    """Bands in, classes out: forward((N, 1, bands, patch, patch)) -> (N, classes) logits."""

    takes: ClassVar[str] = "window"
    dense: ClassVar[bool] = False
    reference: ClassVar[Reference | None] = None
    classifier: nn.Module

    @classmethod
    def input_limits(cls, **net_kwargs) -> tuple[int, int]:
        """(smallest band count, smallest window) for these constructor kwargs; (1, 1) = any."""
        return 1, 1

    def check_input(self, in_bands: int, patch_size: int, **net_kwargs) -> None:
        """Refuse a window or band count below `input_limits`, naming the key to raise."""
        bands, window = self.input_limits(**net_kwargs)
        require_input(type(self).__name__, in_bands, patch_size, bands, window, "its smallest input")

    @property
    def dense_capable(self) -> bool:  # today's name, read by hsi.models.dense
        return self.dense

    @property
    def head(self) -> nn.Module:
        return self.classifier

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
