"""Whether this machine computes bf16 natively: the CPU's instruction flags, a CUDA device's
compute capability. Each check takes its evidence as an argument (tests inject it); left out,
it is read from the machine."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

import torch

# CPU instructions that compute bf16 products (AVX-512 BF16: Cooper Lake, Zen 4 and later; AMX:
# Sapphire Rapids and later); without them oneDNN converts bf16 to fp32 and back, slower than fp32
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# CUDA compute capability from which tensor cores compute bf16 (Ampere, 8.0); older GPUs emulate it
BF16_CUDA_CAPABILITY = (8, 0)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's instruction flags: torch's own query (`torch.cpu.get_capabilities`, where this
    torch has it) and the kernel's `/proc/cpuinfo` (Linux), together."""
    flags: set[str] = set()
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        with suppress(RuntimeError):  # a torch built without cpuinfo
            flags |= {name for name, present in capabilities().items() if present is True}
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
                break
    except OSError:  # not Linux
        pass
    return frozenset(flags)


def cpu_computes_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether a CPU with these instruction flags (default: this one's) computes bf16 natively."""
    return bool(BF16_CPU_FLAGS & set(cpu_flags() if flags is None else flags))


def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of the current CUDA device, or None without one."""
    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability())  # type: ignore[return-value]


def cuda_computes_bf16(capability: tuple[int, int] | None = None) -> bool:
    """Whether a CUDA device of this compute capability (default: the current one's) computes bf16
    natively (tensor cores, 8.0 and later); False without a device. `torch.cuda.is_bf16_supported`
    also says True where bf16 is only emulated, so the capability decides."""
    if capability is None:
        capability = cuda_capability()
    return capability is not None and tuple(capability) >= BF16_CUDA_CAPABILITY
