"""What a network costs: parameters, multiply-accumulates, weight size and CPU latency.

Shapes are of one input without the batch dimension, e.g. (1, bands, patch, patch) for a window.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require gradients)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def weights_mb(net: nn.Module) -> float:
    """Size of the state dict's tensors (parameters and buffers) in megabytes (10^6 bytes)."""
    return sum(t.numel() * t.element_size() for t in net.state_dict().values()) / 1e6


@contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and inference mode inside the block; the module's previous mode after it."""
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            yield net
    finally:
        net.train(was_training)


def _example(net: nn.Module, input_shape: Sequence[int], batch: int) -> torch.Tensor:
    first = next(net.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    return torch.randn(batch, *input_shape, device=device)


def count_macs(net: nn.Module, input_shape: Sequence[int], batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass over `batch` inputs of `input_shape`.

    Counted by torch's FlopCounterMode (convolutions, matrix products; MACs = FLOPs / 2);
    normalisation, activations, pooling and element-wise products are not counted.
    """
    x = _example(net, input_shape, batch)
    with evaluating(net), FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops() // 2


def measure_latency(net: nn.Module, input_shape: Sequence[int], batch: int = 1, repeats: int = 20,
                    warmup: int = 2) -> float:
    """Median wall-clock seconds of one forward pass over a batch (eval and inference mode)."""
    x = _example(net, input_shape, batch)
    times = []
    with evaluating(net):
        for i in range(warmup + repeats):
            start = time.perf_counter()
            net(x)
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def window_shape(bands: int, patch: int) -> tuple[int, int, int, int]:
    """Shape of one window as the networks take it: (1, bands, patch, patch)."""
    return (1, bands, patch, patch)


def model_cost(net: nn.Module, bands: int, patch: int) -> dict[str, int]:
    """{"params": parameters, "macs": multiply-accumulates per window}."""
    return {"params": count_parameters(net), "macs": count_macs(net, window_shape(bands, patch))}
