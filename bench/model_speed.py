"""Training and inference speed of networks on the CPU, side by side, as ratios to HybridSN.

    python bench/model_speed.py [--models hybridsn hybridsn_lite hybridsn_fast] [--threads 1]
                                [--bands 30] [--patch 25] [--classes 16] [--rounds 5]

One process, one run: every network (conf/model/<name>.yaml's `net`; `name:key=value,...`
overrides keys, e.g. `hybridsn_fast:width=0.5`) is built for the same window and measured in
interleaved rounds (each round times every network in turn), so a load that comes and goes on a
shared machine hits them alike. Reported per network:
- params, MACs per window (hsi.models.cost);
- train windows/s: forward, cross-entropy, backward and an Adam step on a batch of
  `--train-batch` (32, the recipe's) random windows, train mode; median step time;
- infer windows/s: eval and inference mode, a batch of `--infer-batch` (256) windows; median;
- each throughput divided by the first model's (HybridSN by default) in the same run.
fp32; `--threads` CPU threads (1 by default: comparable ratios while other jobs share the CPU).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from hsi.models.cost import count_macs, count_parameters, evaluating, window_shape
from hsi.run.config import CONFIG_DIR
from hsi.studies.profiling import build_net

DEFAULT_MODELS = ["hybridsn", "hybridsn_lite", "hybridsn_fast"]


def net_config(spec: str):
    """`name` or `name:key=value,key=value` -> the model's `net` config with the overrides."""
    name, _, overrides = spec.partition(":")
    cfg = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(re.split(r",(?=[\w.]+=)", overrides)))
    return cfg


class Trainer:
    """One network, its Adam optimizer and a fixed random batch; `step()` times one training step
    (fp32, or bf16-mixed as Lightning runs it: autocast around the forward pass and the loss)."""

    def __init__(self, net: torch.nn.Module, bands: int, patch: int, classes: int, batch: int,
                 bf16: bool = False) -> None:
        self.net = net.train()
        self.bf16 = bf16  # the forward pass and the loss under bf16 autocast (trainer.precision=bf16-mixed)
        self.optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        self.x = torch.randn(batch, *window_shape(bands, patch))
        self.y = torch.randint(0, classes, (batch,))

    def step(self) -> float:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = F.cross_entropy(self.net(self.x), self.y)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


def infer_time(net: torch.nn.Module, x: torch.Tensor) -> float:
    with evaluating(net):
        start = time.perf_counter()
        net(x)
        return time.perf_counter() - start


def measure(specs: list[str], bands: int, patch: int, classes: int, train_batch: int, infer_batch: int,
            rounds: int, warmup: int = 1) -> list[dict]:
    torch.manual_seed(0)
    nets = {spec: build_net(net_config(spec), bands, patch, classes) for spec in specs}
    trainers = {spec: Trainer(net, bands, patch, classes, train_batch) for spec, net in nets.items()}
    x = torch.randn(infer_batch, *window_shape(bands, patch))
    train_s: dict[str, list[float]] = {spec: [] for spec in specs}
    infer_s: dict[str, list[float]] = {spec: [] for spec in specs}
    for spec in specs:  # warm-up: allocator, oneDNN primitives
        for _ in range(warmup):
            trainers[spec].step()
            infer_time(nets[spec], x)
    for _ in range(rounds):
        for spec in specs:
            train_s[spec].append(trainers[spec].step())
            infer_s[spec].append(infer_time(nets[spec], x))
    rows = []
    for spec in specs:
        net = nets[spec]
        rows.append({"model": spec, "params": count_parameters(net),
                     "macs": count_macs(net, window_shape(bands, patch)),
                     "train": train_batch / statistics.median(train_s[spec]),
                     "infer": infer_batch / statistics.median(infer_s[spec])})
    base = rows[0]
    for row in rows:
        row["train_ratio"] = row["train"] / base["train"]
        row["infer_ratio"] = row["infer"] / base["infer"]
        row["macs_ratio"] = row["macs"] / base["macs"]
    return rows


def table(rows: list[dict], train_batch: int, infer_batch: int) -> str:
    base = rows[0]["model"]
    lines = [f"| model | params | MACs / window | MACs vs {base} | train windows/s (batch {train_batch}) | "
             f"train vs {base} | infer windows/s (batch {infer_batch}) | infer vs {base} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | {r['macs_ratio']:.3f} | "
                     f"{r['train']:.1f} | {r['train_ratio']:.2f}x | {r['infer']:.1f} | "
                     f"{r['infer_ratio']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="conf/model names (the first is the reference), optionally name:key=value,...")
    parser.add_argument("--bands", type=int, default=30)
    parser.add_argument("--patch", type=int, default=25)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (each times every model once)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.models, args.bands, args.patch, args.classes, args.train_batch, args.infer_batch,
                   args.rounds)
    print(f"Windows of {args.bands} bands x {args.patch}x{args.patch} pixels, {args.classes} classes; fp32, "
          f"CPU, {args.threads} thread{'s' * (args.threads != 1)}, torch {torch.__version__}; "
          f"median of {args.rounds} interleaved rounds.\n")
    print(table(rows, args.train_batch, args.infer_batch))


if __name__ == "__main__":
    main()
