"""Augmentation of whole training batches on the training device (`augment=none|flips|spectral|all`).

`BatchAugment` works on a batch of windows `(N, 1, B, p, p)` and its labels `(N,)` with a few
tensor operations per batch (no Python loop over windows), on whatever device the batch is on,
drawing from its own `torch.Generator` (seeded from `seed`, one per device), so augmentation
never moves the global random stream that shuffling and dropout use. The datamodule calls it
from `on_after_batch_transfer` during training only; labels never change.

What it can do, each off by default (the settings live under `data.augment.`):

- `flip`, `rotate`: random horizontal / vertical flips and multiples of 90 degrees of each
  window (together the 8 symmetries of the square): exact permutations of a window's pixels.
- `scale`: each window times a factor drawn uniformly from [1 - scale, 1 + scale].
- `noise`: Gaussian noise of standard deviation `noise` added to every value (PCA-whitened
  inputs have unit variance per component).
- `band_dropout`: each band of each window set to 0 with this probability.
- `band_shift`: each window's spectrum shifted by up to this many bands either way, edges
  repeated; meaningful on raw bands only (`data.pca.components=null`), as PCA components have
  no spectral order.
- `mix`: with this probability a window becomes a weighted mean of itself and another window
  of the same class in the batch (weights drawn from [0.01, 1], DeepHyperX's "mixture noise");
  a window alone of its class in the batch stays as it is.

Spectral changes act on the network's input, i.e. after PCA when PCA is on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from hsi.errors import ConfigError

_PROBABILITIES = ("band_dropout", "mix")


@dataclass
class BatchAugment:
    """Random changes to training batches of windows; see the module's docstring for each setting."""

    flip: bool = False
    rotate: bool = False
    scale: float = 0.0
    noise: float = 0.0
    band_dropout: float = 0.0
    band_shift: int = 0
    mix: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("flip", "rotate"):
            value = getattr(self, key)
            if not isinstance(value, bool):
                raise ConfigError(f"data.augment.{key}={value!r} must be true or false.")
        for key in ("scale", "noise", *_PROBABILITIES):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"data.augment.{key}={value!r} must be a number >= 0.")
            setattr(self, key, float(value))
        for key in _PROBABILITIES:
            if getattr(self, key) > 1:
                raise ConfigError(f"data.augment.{key}={getattr(self, key)} is a probability: give a "
                                  f"number from 0 to 1.")
        if self.scale >= 1:
            raise ConfigError(f"data.augment.scale={self.scale} must be below 1 (factors are drawn "
                              f"from [1 - scale, 1 + scale]).")
        for key in ("band_shift", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or (key == "band_shift" and value < 0):
                raise ConfigError(f"data.augment.{key}={value!r} must be a whole number"
                                  f"{' >= 0' if key == 'band_shift' else ''}.")
        self._generators: dict[str, torch.Generator] = {}
        self._permutations: dict[tuple[int, str], torch.Tensor] = {}

    # -- configuration ---------------------------------------------------------------------------
    @classmethod
    def from_any(cls, augment: BatchAugment | Mapping[str, Any] | None) -> BatchAugment | None:
        """From itself, a mapping of its settings (`data.augment`, with or without `_target_`), or None."""
        if augment is None or isinstance(augment, BatchAugment):
            return augment
        if not isinstance(augment, Mapping):
            raise ConfigError(f"data.augment must be a mapping of augmentation settings (choose one "
                              f"with augment=none|flips|spectral|all); got {augment!r}.")
        settings = {k: v for k, v in augment.items() if not (k.startswith("_") and k.endswith("_"))}
        target = augment.get("_target_")
        if target is not None and target != f"{cls.__module__}.{cls.__qualname__}":
            raise ConfigError(f"data.augment._target_={target!r}: only "
                              f"{cls.__module__}.{cls.__qualname__} is supported.")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"data.augment.{unknown[0]} is not an augmentation setting; they are "
                              f"{', '.join(known)}.")
        return cls(**settings)

    def config(self) -> dict[str, Any]:
        """Plain values and `_target_`: `BatchAugment.from_any(augment.config())` rebuilds it."""
        cls = type(self)
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}",
                **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @property
    def active(self) -> bool:
        """Whether any change is switched on (an inactive one is never called)."""
        return bool(self.flip or self.rotate or self.scale or self.noise or self.band_dropout
                    or self.band_shift or self.mix)

    def generator(self, device: torch.device, offset: int = 0) -> torch.Generator:
        """This augmenter's generator on `device`, seeded with `seed + offset` on first use (the
        datamodule passes the process's rank as offset, so DDP processes draw differently)."""
        key = f"{torch.device(device)}:{offset}"
        if key not in self._generators:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.seed + offset)
            self._generators[key] = generator
        return self._generators[key]

    # -- the changes ---------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented windows (same shape, dtype and device) and the labels, unchanged."""
        if x.ndim != 5 or x.shape[1] != 1 or x.shape[-1] != x.shape[-2]:
            raise ConfigError(f"data.augment works on batches of square windows (N, 1, bands, p, p); "
                              f"got shape {tuple(x.shape)}.")
        if not self.active or len(x) == 0:
            return x, y
        g = generator if generator is not None else self.generator(x.device)
        if self.flip or self.rotate:
            x = self._symmetries(x, g)
        if self.band_shift:
            x = self._band_shift(x, g)
        if self.mix:
            x = self._mix(x, y, g)
        if self.scale:
            factor = 1 + self.scale * (2 * self._uniform((len(x), 1, 1, 1, 1), x, g) - 1)
            x = x * factor
        if self.band_dropout:
            keep = self._uniform((len(x), 1, x.shape[2], 1, 1), x, g) >= self.band_dropout
            x = x * keep.to(x.dtype)
        if self.noise:
            x = x + self.noise * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return x, y

    @staticmethod
    def _uniform(shape: tuple[int, ...], like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return torch.rand(shape, generator=g, device=like.device, dtype=like.dtype)

    def _integers(self, high: int, n: int, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=g, device=x.device)

    def symmetry_permutations(self, p: int, device: torch.device) -> torch.Tensor:
        """(8, p * p): for each symmetry of the square (k quarter turns, then a mirror for the
        last four), which source pixel each pixel of the window takes (row-major)."""
        key = (p, str(device))
        if key not in self._permutations:
            grid = torch.arange(p * p, device=device).reshape(p, p)
            turns = [torch.rot90(grid, k, dims=(0, 1)) for k in range(4)]
            self._permutations[key] = torch.stack(
                [t.reshape(-1) for t in turns] + [t.flip(1).reshape(-1) for t in turns])
        return self._permutations[key]

    def _symmetries(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Each window through one symmetry of the square: a rotation by k quarter turns
        (`rotate`), mirrored or not (`flip`); one gather for the whole batch."""
        n, _, b, p, _ = x.shape
        turns = self._integers(4, n, x, g) if self.rotate else torch.zeros(n, dtype=torch.long,
                                                                            device=x.device)
        mirror = self._integers(2, n, x, g) if self.flip else torch.zeros_like(turns)
        perm = self.symmetry_permutations(p, x.device)[turns + 4 * mirror]  # (n, p * p)
        flat = x.reshape(n, 1, b, p * p)
        return torch.gather(flat, 3, perm[:, None, None, :].expand(n, 1, b, p * p)).reshape(x.shape)

    def _band_shift(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, b, p, _ = x.shape
        shift = self._integers(2 * self.band_shift + 1, n, x, g) - self.band_shift
        source = (torch.arange(b, device=x.device)[None, :] - shift[:, None]).clamp(0, b - 1)
        return torch.gather(x, 2, source[:, None, :, None, None].expand(x.shape))

    def _mix(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """With probability `mix`, a window mixed with another window of its class in the batch."""
        n = len(x)
        partner = same_class_partners(y, g)
        chosen = (self._uniform((n,), x, g) < self.mix) & (partner != torch.arange(n, device=x.device))
        weights = 0.01 + 0.99 * self._uniform((n, 2), x, g)
        w_self = torch.where(chosen, weights[:, 0], torch.ones_like(weights[:, 0]))
        w_other = torch.where(chosen, weights[:, 1], torch.zeros_like(weights[:, 1]))
        shape = (n, 1, 1, 1, 1)
        return ((w_self.view(shape) * x + w_other.view(shape) * x[partner])
                / (w_self + w_other).view(shape))


def same_class_partners(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each label in `y`, the index of another, randomly chosen, element with the same label
    (itself when it is the only one)."""
    n = len(y)
    device = y.device
    order = torch.randperm(n, generator=g, device=device)
    order = order[torch.argsort(y[order], stable=True)]  # grouped by class, random within
    grouped = y[order]
    _, sizes = torch.unique_consecutive(grouped, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    size = torch.repeat_interleave(sizes, sizes)
    position = torch.arange(n, device=device) - starts
    # a step of 1 .. size - 1 places along the group (0 for a group of one)
    others = (size - 1).clamp(min=1)
    step = 1 + torch.minimum((torch.rand(n, generator=g, device=device) * others).long(), others - 1)
    step = torch.where(size > 1, step, torch.zeros_like(step))
    partner_sorted = starts + (position + step) % size
    partner = torch.empty_like(order)
    partner[order] = order[partner_sorted]
    return partner
