"""Where a bf16 training step spends its time on this CPU, against fp32 (torch.profiler).

    python bench/bf16_profile.py [--threads 1] [--rows 8]

One HybridSN training step (30 bands, 25x25 windows, 16 classes, batch 32, Adam), same weights
and batch, fp32 then bf16 autocast: seconds per step (median of 3 after a warm-up) and the
operators that take the most time in each, plus the CPU's bf16 instruction flags and the matmul
throughput of both dtypes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from hsi.models import HybridSN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
    print("CPU flags:", " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags))
    a = torch.randn(2048, 2048)
    for dtype in (torch.float32, torch.bfloat16):
        b = a.to(dtype)
        b @ b
        start = time.perf_counter()
        for _ in range(5):
            b @ b
        print(f"matmul {dtype}: {5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9:.0f} GFLOP/s")
    torch.manual_seed(0)
    net = HybridSN(30, 25, 16)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.randn(32, 1, 30, 25, 25), torch.randint(0, 16, (32,))

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for bf16 in (False, True):
        step(bf16)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            step(bf16)
            times.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(bf16)
        print(f"\n{'bf16 autocast' if bf16 else 'fp32'}: {statistics.median(times):.3f} s per step")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
