"""The network contract (issue 31): what every network declares and how its input is checked.

Temporary copy of the contract's two classes (helper `contract` owns this module; the merge takes
that version, which has the same names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

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
    def input_limits(cls, **net_kwargs: Any) -> tuple[int, int]:
        """(smallest band count, smallest window) for these constructor kwargs; (1, 1) = any."""
        return 1, 1

    def check_input(self, in_bands: int, patch_size: int, **net_kwargs: Any) -> None:
        """Raise ConfigError naming the key to change when the input is below `input_limits`."""
        min_bands, min_patch = type(self).input_limits(**net_kwargs)
        require_input(type(self).__name__, in_bands, patch_size, min_bands, min_patch,
                      "its layers' minimum")

    @property
    def head(self) -> nn.Module:
        return self.classifier

    def trunk(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))
