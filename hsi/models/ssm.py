"""The selective state-space (Mamba) block of Gu and Dao (2023), written in plain PyTorch so that
it trains on a CPU; the CUDA kernel of the `mamba-ssm` package is used instead only where it is
installed and the tensors are on a CUDA device (`selective_scan(..., kernel="auto")`).

Parameterisation and initialisation follow state-spaces/mamba's `Mamba` (mamba_ssm/modules/
mamba_simple.py), so a network built of these blocks has that code's parameter count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hsi.errors import ConfigError

KERNELS = ("auto", "torch", "cuda")


def _cuda_scan() -> Callable | None:
    """mamba-ssm's fused selective scan, or None where the package (or its CUDA build) is missing."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a CUDA build that fails to load
        return None
    return selective_scan_fn


Tensor = torch.Tensor


def selective_scan_torch(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                         delta_bias: Tensor) -> Tensor:
    """y = SSM(u) with input-dependent step, B and C (Mamba's S6), in float32:

    delta = softplus(delta + delta_bias); h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t (zero-order
    hold for A, Euler for B); y_t = C_t h_t + D u_t, gated by silu(z_t).

    Shapes as mamba-ssm's `selective_scan_fn`: u, delta, z (batch, d, L); A (d, n); B, C
    (batch, n, L); D, delta_bias (d,). The recurrence runs step by step over L, every channel
    and state at once.
    """
    dtype = u.dtype
    u, delta, B, C = u.float(), delta.float(), B.float(), C.float()
    delta = F.softplus(delta + delta_bias.float()[:, None])
    # time first, unbound once: indexing step t of a (b, d, L, n) tensor would make autograd
    # write a full-size gradient per step (quadratic in L)
    decay = torch.exp(delta.unsqueeze(-1) * A.float()[:, None]).permute(2, 0, 1, 3)   # (L, b, d, n)
    drive = ((delta * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)).permute(2, 0, 1, 3)
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    states = []
    for decay_t, drive_t in zip(decay.unbind(0), drive.unbind(0)):
        state = decay_t * state + drive_t
        states.append(state)
    y = torch.einsum("lbdn,bnl->bdl", torch.stack(states), C)
    y = (y + u * D.float()[:, None]) * F.silu(z.float())
    return y.to(dtype)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                   delta_bias: Tensor, kernel: str = "auto") -> Tensor:
    """`selective_scan_torch`, or mamba-ssm's CUDA kernel (`kernel="cuda"`, or `"auto"` on a CUDA
    device where mamba-ssm is installed): the same outputs within float32 tolerance."""
    if kernel not in KERNELS:
        raise ConfigError(f"model.net.scan={kernel!r}: choose one of {', '.join(KERNELS)}")
    fused = _cuda_scan() if kernel != "torch" and u.is_cuda else None
    if kernel == "cuda" and fused is None:
        raise ConfigError("model.net.scan=cuda needs the mamba-ssm package (pip install mamba-ssm) and "
                          "a CUDA device; use model.net.scan=auto or torch")
    if fused is None:
        return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias)
    return fused(u, delta, A, B.contiguous(), C.contiguous(), D.float(), z=z,
                 delta_bias=delta_bias.float(), delta_softplus=True)


class Mamba(nn.Module):
    """Mamba block over sequences (N, L, d_model) -> (N, L, d_model): a Linear to 2 x `expand` x
    d_model (x and the gate z), a causal depthwise convolution of `d_conv` taps and SiLU on x,
    input-dependent step (rank ceil(d_model / 16)), B and C from x, the selective scan with
    `d_state` states per channel, a Linear back to d_model. No biases on the two outer Linears."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4,
                 scan: str = "auto") -> None:
        super().__init__()
        if scan not in KERNELS:
            raise ConfigError(f"model.net.scan={scan!r}: choose one of {', '.join(KERNELS)}")
        self.d_inner, self.d_state, self.scan = expand * d_model, d_state, scan
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # the step's projection keeps the variance; softplus(bias) starts log-uniform in [dt_min, dt_max]
        bound = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1
        # S4D-real: A = -(1, 2, .., d_state) for every channel, stored as log(-A)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1).float().repeat(self.d_inner, 1)))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)            # (N, d_inner, L) each
        u = F.silu(self.conv1d(u)[..., :length])
        dt, B, C = self.x_proj(u.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # (N, d_inner, L); bias: in the scan
        y = selective_scan(u, delta, -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2),
                           self.D, z, self.dt_proj.bias, self.scan)
        return self.out_proj(y.transpose(1, 2))
