"""How near this CPU's peak the networks run: GEMM rates, then each network's achieved GFLOP/s.

    OMP_NUM_THREADS=1 python bench/peak.py [--threads 1] [--models hybridsn cnn2d ...]
        [--steps 5] [--variants] [--dense]

1. The machine's matrix-product rate (`torch.matmul`, 2048 x 2048) in fp32 and bf16, at one
   thread and at every core's thread.
2. Per network of `conf/model/` on the seed recipe's windows (30 PCA bands, 25 x 25, 16 classes):
   one training step (batch 32, Adam; fp32, then bf16 autocast as `trainer.precision=bf16-mixed`
   runs it) and one inference batch (64 windows, eval, no grad), their GFLOP/s from the network's
   multiply-accumulates (`hsi.models.cost.count_macs`, what `hsi.profile` prints: training =
   3 x forward) and that as a fraction of the GEMM rate of the same dtype and threads.
3. `--variants`: HybridSN's training and inference again with channels-last (oneDNN's blocked
   layouts from `channels_last_3d` / `channels_last` tensors) and with `torch.compile` (inductor).
4. `--dense`: the dense whole-scene map of a 145 x 145 scene (Indian Pines' size) per network
   that supports it, FLOPs counted over the dense pass itself.
5. `--onnx`: one more column, the same inference batch through the torch-free runtime: the
   network's window graph, exported by the exporter `hsi.export` uses (`hsi.deploy.graphs.
   export_graph`; for a dense-capable network `hsi.export` writes its dense graph instead), run by
   onnxruntime with one intra-op thread, against the fp32 GEMM rate.

Timing is CPU seconds of this process (`time.process_time`) at one thread, so that other jobs on
a shared machine slow the wall clock but not the rates; the all-threads GEMM rate is wall time
(say how loaded the machine was). Medians over `--steps` after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
BANDS, PATCH, CLASSES, TRAIN_BATCH, EVAL_BATCH = 30, 25, 16, 32, 64
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_seconds(fn, steps: int) -> float:
    """Median CPU seconds of `fn()` over `steps` calls after one warm-up (one thread: wall-free)."""
    fn()
    times = []
    for _ in range(steps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def gemm_rate(dtype: torch.dtype, threads: int, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of n x n matmuls in `dtype` at `threads` threads (CPU time at 1 thread, else wall)."""
    torch.set_num_threads(threads)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    if threads == 1:
        seconds = cpu_seconds(lambda: a @ b, repeats)
    else:
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        seconds = (time.perf_counter() - start) / repeats
    return 2 * n**3 / seconds / 1e9


def build(model: str) -> torch.nn.Module:
    from hsi.studies.profiling import build_net

    cfg = OmegaConf.load(ROOT / "conf" / "model" / f"{model}.yaml")
    return build_net(cfg.net, BANDS, PATCH, CLASSES)


def autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def training_seconds(net: torch.nn.Module, dtype: str, steps: int, layout=None) -> float:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(TRAIN_BATCH, 1, BANDS, PATCH, PATCH)
    if layout is not None:
        x = x.contiguous(memory_format=layout)
    y = torch.randint(0, CLASSES, (TRAIN_BATCH,))
    net.train()

    def step() -> None:
        with autocast(dtype):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return cpu_seconds(step, steps)


def inference_seconds(net: torch.nn.Module, dtype: str, steps: int, layout=None) -> float:
    x = torch.randn(EVAL_BATCH, 1, BANDS, PATCH, PATCH)
    if layout is not None:
        x = x.contiguous(memory_format=layout)
    net.eval()

    def forward() -> None:
        with torch.no_grad(), autocast(dtype):
            net(x)

    return cpu_seconds(forward, steps)


def macs_per_window(net: torch.nn.Module) -> int:
    from hsi.models.cost import count_macs, window_shape

    return count_macs(net, window_shape(BANDS, PATCH))


def rates(net, macs: int, steps: int, peaks: dict[str, float], layout=None) -> list[str]:
    """Cells: training then inference GFLOP/s and % of peak, fp32 then bf16."""
    cells = []
    for dtype in DTYPES:
        train = 3 * 2 * macs * TRAIN_BATCH / training_seconds(net, dtype, steps, layout) / 1e9
        infer = 2 * macs * EVAL_BATCH / inference_seconds(net, dtype, steps, layout) / 1e9
        cells += [f"{train:.0f} ({100 * train / peaks[dtype]:.0f}%)",
                  f"{infer:.0f} ({100 * infer / peaks[dtype]:.0f}%)"]
    return cells


def onnx_inference_seconds(net: torch.nn.Module, steps: int, folder: Path) -> float:
    """CPU seconds of one batch of EVAL_BATCH windows through onnxruntime (1 thread)."""
    import onnxruntime

    from hsi.deploy.graphs import OPSET, export_graph

    path = folder / "windows.onnx"
    export_graph(net.eval(), torch.zeros(5, 1, BANDS, PATCH, PATCH), {0: torch.export.Dim("batch", min=1)},
                 path, "windows", "logits", OPSET)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = torch.randn(EVAL_BATCH, 1, BANDS, PATCH, PATCH).numpy()
    return cpu_seconds(lambda: session.run(None, {"windows": x}), steps)


def channels_last(net: torch.nn.Module) -> torch.nn.Module:
    """Convolution weights in channels-last layouts (3-D and 2-D), oneDNN's preferred ones."""
    for module in net.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
        elif isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return net


def dense_rate(net: torch.nn.Module, dtype: str, side: int = 145) -> tuple[float, float]:
    """(GFLOP/s, pixels/s) of the dense map of a side x side scene."""
    from hsi.run.inference import dense_logits

    padded = torch.randn(BANDS, side + PATCH - 1, side + PATCH - 1)
    with FlopCounterMode(display=False) as counter:
        dense_logits(net, padded, PATCH)
    flops = counter.get_total_flops()
    with torch.no_grad(), autocast(dtype):
        seconds = cpu_seconds(lambda: dense_logits(net, padded, PATCH), 2)
    return flops / seconds / 1e9, side * side / seconds


def zoo() -> list[str]:
    """Every network of conf/model (configs with a `net`)."""
    return sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")
                  if not p.stem.startswith("_") and "net" in OmegaConf.load(p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=zoo())
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--variants", action="store_true", help="HybridSN channels-last, torch.compile")
    parser.add_argument("--dense", action="store_true", help="dense whole-scene maps too")
    parser.add_argument("--no-networks", action="store_true", help="skip the per-network table")
    parser.add_argument("--onnx", action="store_true", help="inference through onnxruntime too")
    args = parser.parse_args()
    from hsi.utils.hardware import cpu_flags

    cores = len(os.sched_getaffinity(0))
    flags = " ".join(sorted({"avx2", "avx512f", "avx512_bf16", "amx_bf16"} & cpu_flags()))
    peaks = {d: gemm_rate(t, 1) for d, t in DTYPES.items()}
    wide = {d: gemm_rate(t, cores) for d, t in DTYPES.items()}
    torch.set_num_threads(1)
    print(f"\nCPU flags: {flags}; torch {torch.__version__}; load average {os.getloadavg()[0]:.1f} on "
          f"{cores} cores\n")
    print(f"| GEMM 2048^2 | 1 thread (CPU time) | {cores} threads (wall) |")
    print("|---|---:|---:|")
    for dtype in DTYPES:
        print(f"| {dtype} | {peaks[dtype]:.0f} GFLOP/s | {wide[dtype]:.0f} GFLOP/s |")
    print(f"\nPer network, 1 thread, {BANDS} bands x {PATCH}x{PATCH}, {CLASSES} classes; GFLOP/s (% of the "
          f"1-thread GEMM rate of the same dtype)\n")
    onnx = " infer ONNX fp32 |" if args.onnx else ""
    print("| network | MACs / window | train fp32 | infer fp32 | train bf16 | infer bf16 |" + onnx)
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if args.onnx else ""))
    for model in [] if args.no_networks else args.models:
        torch.manual_seed(0)
        net = build(model)
        macs = macs_per_window(net)
        cells = rates(net, macs, args.steps, peaks)
        if args.onnx:
            with tempfile.TemporaryDirectory() as folder:
                try:
                    rate = 2 * macs * EVAL_BATCH / onnx_inference_seconds(net, args.steps, Path(folder)) / 1e9
                    cells.append(f"{rate:.0f} ({100 * rate / peaks['fp32']:.0f}%)")
                except Exception as error:  # a network that cannot export is a row, not the bench's end
                    cells.append(f"refused: {str(error).splitlines()[0][:60]}")
        print(f"| `{model}` | {macs / 1e6:.1f} M | " + " | ".join(cells) + " |", flush=True)
    if args.variants:
        print("\nHybridSN variants, 1 thread (same columns)\n")
        print("| variant | train fp32 | infer fp32 | train bf16 | infer bf16 |")
        print("|---|---:|---:|---:|---:|")
        torch.manual_seed(0)
        macs = macs_per_window(build("hybridsn"))
        variants = {
            "as is": lambda: (build("hybridsn"), None),
            "channels-last": lambda: (channels_last(build("hybridsn")), torch.channels_last_3d),
            "torch.compile": lambda: (torch.compile(build("hybridsn")), None),
        }
        for name, make in variants.items():
            torch.manual_seed(0)
            net, layout = make()
            print(f"| {name} | " + " | ".join(rates(net, macs, args.steps, peaks, layout)) + " |", flush=True)
    if args.dense:
        from hsi.models.dense import supports_dense

        print("\nDense map of a 145 x 145 scene, 1 thread\n")
        print("| network | fp32 GFLOP/s (% peak) | fp32 pixels/s | bf16 GFLOP/s (% peak) | bf16 pixels/s |")
        print("|---|---:|---:|---:|---:|")
        for model in args.models:
            net = build(model).eval()
            if not supports_dense(net):
                continue
            cells = []
            for dtype in DTYPES:
                gflops, pixels = dense_rate(net, dtype)
                cells += [f"{gflops:.0f} ({100 * gflops / peaks[dtype]:.0f}%)", f"{pixels:.0f}"]
            print(f"| `{model}` | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
