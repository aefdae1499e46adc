"""The network contract: what every network of the zoo is and can do, declared once.

A network takes windows (N, 1, bands, patch, patch) and gives (N, classes) logits. Its class says
which part of the window it reads (`takes`), whether it has an exact dense form (`dense`), its
smallest input (`input_limits`: the one place the minimum is written), where it comes from
(`reference`), and splits into `trunk` and `head` (forward = head(trunk(x))), which pretraining
and dense heads use. The tests walk every conf/model/*.yaml and check each network against this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from hsi.errors import ConfigError

TAKES = ("spectrum", "window")


@dataclass(frozen=True)
class Reference:
    """Where a network comes from and the settings its parameter count was measured at."""

    paper: str  # "Hamida et al., IEEE TGRS 2018"
    code: str  # "nshaud/DeepHyperX models.py (HamidaEtAl)"
    settings: dict[str, Any]  # {"in_bands": 200, "patch_size": 5, "num_classes": 17, **net kwargs}
    params: int  # the reference code's count at `settings`, measured by instantiating it
    counted: str = ""  # how it was measured, one line


class Network(nn.Module):
    """Bands in, classes out: forward((N, 1, bands, patch, patch)) -> (N, classes) logits.

    - `takes`: "spectrum" (only the centre pixel's spectrum is read, any window works) or
      "window" (the whole window);
    - `dense`: an exact dense form exists: the trunk is unpadded, spatially unstrided
      convolutions (or per-pixel layers), the head a flatten (or global pool) then a
      Linear / activation / dropout stack, which `hsi.models.dense` rewrites as convolutions;
    - `reference`: the paper and code the network follows, with the reference code's parameter
      count at its own settings (None for networks of our own);
    - `cannot_export`: why `hsi.export` must refuse the network (an operation without an ONNX
      translation), empty when it exports;
    - `input_limits(**net_kwargs)`: (smallest band count, smallest window); the constructor
      checks it with `check_input`;
    - `trunk(x)`: everything before the head; `head`: the module `classifier`.

    Constructors take `(in_bands, patch_size, num_classes, **own_kwargs)`.
    """

    takes: ClassVar[str] = "window"
    dense: ClassVar[bool] = False
    reference: ClassVar[Reference | None] = None
    cannot_export: ClassVar[str] = ""  # why the network has no ONNX graph; empty: it exports
    classifier: nn.Module

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.takes not in TAKES:
            raise TypeError(f"{cls.__name__}.takes={cls.takes!r}: choose one of {TAKES}")

    @classmethod
    def input_limits(cls, **net_kwargs: Any) -> tuple[int, int]:
        """(smallest band count, smallest window) for these constructor kwargs; (1, 1) = any."""
        return 1, 1

    @classmethod
    def check_input(cls, in_bands: int, patch_size: int, **net_kwargs: Any) -> None:
        """Refuse bands or a window below `input_limits(**net_kwargs)`, naming the key to raise
        (the constructor calls it; `hsi.run.training` too, before building the network)."""
        min_bands, min_patch = cls.input_limits(**net_kwargs)
        name = cls.__name__
        if in_bands < min_bands:
            raise ConfigError(f"{name} needs at least {min_bands} bands per window with these settings; "
                              f"got {in_bands}. Raise data.pca.components.")
        if patch_size < min_patch:
            raise ConfigError(f"{name} needs windows of at least {min_patch}x{min_patch} pixels with these "
                              f"settings; got {patch_size}. Raise data.patch_size.")

    @property
    def head(self) -> nn.Module:
        """The classifier head (the module `classifier`, the name checkpoints' keys carry)."""
        return self.classifier

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the head; networks whose trunk is one module `features` inherit this."""
        features = getattr(self, "features", None)
        if not isinstance(features, nn.Module):
            raise NotImplementedError(f"{type(self).__name__} must define trunk(x) (or a `features` module)")
        return features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

