"""`trainer.precision=auto` (the default): bf16-mixed where the hardware computes bf16 natively
(`hsi.utils.hardware`), 32-true elsewhere; any other value is Lightning's and kept as given.

Inference (validation, test, the scene's map, `hsi.predict`, `hsi.evaluate`) runs in the
training precision, except under `auto` for the networks of `FP32_INFERENCE_NETWORKS`: they train
in bf16 and infer in fp32 (`inference_precision`, `trainer_precision`). Both lists come from
bench/precision_accuracy.py (docs/measurements.md#bf16-against-fp32-network-by-network)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from omegaconf import DictConfig, OmegaConf

from hsi.utils.hardware import cpu_computes_bf16, cuda_computes_bf16

log = logging.getLogger(__name__)

AUTO = "auto"
FP32 = "32-true"
BF16 = "bf16-mixed"
# networks whose bf16 test OA fell outside their fp32 seeds' spread (bench/precision_accuracy.py,
# docs/measurements.md): `auto` keeps them in fp32; an explicit trainer.precision still applies.
# The eight networks of the first table all held. HeEtAl (model=he): its training loss turns NaN
# at the second bf16 batch on 8-bit Indian Pines (the leaderboard's recipe, 7x7, seeds 0-2), where
# fp32 trains (docs/measurements.md)
FP32_NETWORKS: frozenset[str] = frozenset({"HeEtAl"})
# networks whose whole-scene map inferred in bf16 differs from the same weights' fp32 map on more
# than 0.1% of the pixels: under `auto` they infer in fp32 (they still train in bf16). HybridSNLite:
# 99.80-99.83% of Salinas-A's pixels kept their label; MouEtAl (model=mou, a GRU over the bands):
# 99.89% on one of three seeds (every other network measured >= 99.90%)
FP32_INFERENCE_NETWORKS: frozenset[str] = frozenset({"HybridSNLite", "MouEtAl"})


def accelerator_device(accelerator: Any) -> str:
    """The device a Trainer's `accelerator` setting lands on: cuda, cpu or mps."""
    name = str(accelerator or AUTO).lower()
    if name in ("gpu", "cuda"):
        return "cuda"
    if name in ("cpu", "mps"):
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def auto_precision(device: str, network: str | None = None, cpu_flags: Iterable[str] | None = None,
                   cuda_capability: tuple[int, int] | None = None) -> str:
    """What `auto` resolves to for `network` (its class name) on `device`: bf16-mixed where that
    device computes bf16 natively (CPU flags, CUDA capability: given, or read from this machine)
    and the network holds its accuracy in bf16, else 32-true."""
    if network in FP32_NETWORKS:
        return FP32
    if device == "cuda":
        return BF16 if cuda_computes_bf16(cuda_capability) else FP32
    if device == "cpu":
        return BF16 if cpu_computes_bf16(cpu_flags) else FP32
    return FP32  # mps and the rest: no bf16 autocast worth choosing unasked


def resolve_precision(asked: Any, accelerator: Any = AUTO, network: str | None = None,
                      **evidence: Any) -> Any:
    """`asked` unless it is `auto` (or unset); then `auto_precision` for the accelerator's device.
    `evidence`: cpu_flags / cuda_capability for `auto_precision` (tests)."""
    if asked is not None and str(asked).lower() != AUTO:
        return asked
    return auto_precision(accelerator_device(accelerator), network, **evidence)


def network_name(model_cfg: Any) -> str | None:
    """The class name of a model config's network (`model.net._target_`), None for an estimator."""
    net = OmegaConf.select(model_cfg, "net._target_") if isinstance(model_cfg, DictConfig) else \
        ((model_cfg or {}).get("net") or {}).get("_target_")
    return str(net).rsplit(".", 1)[-1] if net else None


def run_precision(cfg: DictConfig) -> tuple[Any, Any]:
    """(asked, used) trainer precision of a `hsi.train` config; used is None for an estimator."""
    trainer = cfg.get("trainer") or {}
    asked = trainer.get("precision", AUTO)
    network = network_name(cfg.get("model"))
    if network is None:
        return asked, None
    return asked, resolve_precision(asked, trainer.get("accelerator", AUTO), network)


def is_bf16(precision: Any) -> bool:
    return str(precision).startswith("bf16")


def inference_precision_of(asked: Any, used: Any, network: str | None) -> Any:
    """The precision validation, test and maps run in: the training precision `used`, but fp32 for
    a network of `FP32_INFERENCE_NETWORKS` when `asked` was auto."""
    auto = asked is None or str(asked).lower() == AUTO
    return FP32 if auto and is_bf16(used) and network in FP32_INFERENCE_NETWORKS else used


def checkpoint_inference_precision(asked: Any, accelerator: Any, network: str) -> Any:
    """The inference precision of `hsi.evaluate` / `hsi.predict` for a trained `network`: `asked`
    resolved as `hsi.train` resolves it on this machine, then `inference_precision_of`."""
    return inference_precision_of(asked, resolve_precision(asked, accelerator, network), network)


class BF16TrainingFP32Inference(MixedPrecision):
    """bf16-mixed training steps; validation, test and predict steps in fp32 (no autocast)."""

    def __init__(self, device: str) -> None:
        super().__init__(BF16, device)

    @contextmanager
    def val_step_context(self) -> Iterator[None]:
        yield

    @contextmanager
    def test_step_context(self) -> Iterator[None]:
        yield

    @contextmanager
    def predict_step_context(self) -> Iterator[None]:
        yield


def trainer_precision(used: Any, inference: Any, device: str) -> dict[str, Any]:
    """Keyword arguments of a Trainer that trains in `used` and infers in `inference`."""
    if is_bf16(used) and not is_bf16(inference) and str(used) == BF16:
        return {"precision": None, "plugins": [BF16TrainingFP32Inference(device)]}
    return {"precision": used}


@contextmanager
def inference_precision(precision: Any, device: str | torch.device = "cpu") -> Iterator[None]:
    """Autocast to bf16 for a bf16 precision (as Lightning runs validation and test), else as is:
    the scene's map and `hsi.predict` infer as the run's Trainer does."""
    device_type = torch.device(device).type
    context = torch.autocast(device_type, dtype=torch.bfloat16) if is_bf16(precision) and \
        device_type in ("cpu", "cuda") else nullcontext()
    with context:
        yield


def log_choice(asked: Any, used: Any, device: str) -> None:
    if used is not None and str(asked).lower() == AUTO:
        why = "bf16 computed natively" if is_bf16(used) else "no native bf16 here, or a network kept in fp32"
        log.info("trainer.precision=auto: %s on %s (%s)", used, device, why)
