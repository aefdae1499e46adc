"""Where `hsi.train` spends more than a plain loop: the same steps through each layer, one run.

    OMP_NUM_THREADS=1 python bench/train_tax.py [--model hybridsn] [--threads 1] [--steps 12]
        [--rounds 2] [--precision 32-true]

The recipe of bench/train_speed.py (8-bit Indian Pines, PCA 30, 25x25 windows, batch 32, Adam
1e-3). Each way trains `--steps` batches; the first two are warm-up. Ways, cheapest first:

- `plain, materialised`: the notebook's loop over a TensorDataset of materialised windows;
- `plain, hsi loader`: the same loop over hsi's training DataLoader (windows cut on the fly);
- `Lightning, bare`: hsi's LightningModule under a Trainer without logger, callbacks,
  checkpointing, progress bar or model summary (metrics and `self.log` still run);
- `hsi.train`: the Trainer exactly as `python -m hsi.train` builds it (callbacks, TensorBoard).

Printed per way, in CPU seconds of this process (`time.process_time`: on a machine shared with
other jobs, wall time measures the others' load as much as ours; one torch thread and no loader
workers keep all the work in this process): the median step (between consecutive batch starts:
data, forward, backward, optimizer, hooks), the fixed cost of the run (its time minus its steps:
setup, the epoch end, checkpoints, logger files), and the speed of one whole epoch of the recipe
(steps of a real epoch x the step + the fixed cost) against the plain loop's. Ways run in
interleaved rounds so that a change of load hits every way alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from train_speed import CUBE, compose, recipe


class StepTimer(L.Callback):
    """Seconds between consecutive training batch starts (the last step ends at the epoch end)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.starts.append(time.process_time())

    def on_train_epoch_end(self, trainer, module) -> None:
        self.starts.append(time.process_time())

    def steps(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:])]


def setup(model: str, precision: str, output: Path):
    from hsi.run.training import build_datamodule

    cfg = compose(recipe(model, precision, 1, output), output)
    datamodule = build_datamodule(cfg)
    return cfg, datamodule


def plain_loop(net: torch.nn.Module, loader, steps: int, bf16: bool) -> list[float]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    starts = []
    for step, (x, y) in enumerate(loader):
        if step == steps:
            break
        starts.append(time.process_time())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    starts.append(time.process_time())
    return [b - a for a, b in zip(starts, starts[1:])]


def way_plain(cfg, datamodule, steps: int, materialised: bool) -> tuple[list[float], float]:
    from hsi.run.training import build_model

    torch.manual_seed(0)
    net = build_model(cfg, datamodule).net
    train_set = datamodule.datasets["train"]
    if materialised:  # once per run, as the notebook does: not counted
        windows = torch.stack([train_set[i][0] for i in range(len(train_set))])
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(windows, train_set.targets),
                                             batch_size=cfg.data.batch_size, shuffle=True)
    else:
        loader = datamodule.train_dataloader()
    start = time.process_time()
    seconds = plain_loop(net, loader, steps, str(cfg.trainer.precision).startswith("bf16"))
    return seconds, time.process_time() - start - sum(seconds)


def way_lightning(cfg, datamodule, steps: int, full: bool) -> tuple[list[float], float]:
    from hydra.utils import instantiate

    from hsi.run.config import instantiate_group
    from hsi.run.training import build_model

    torch.manual_seed(0)
    model = build_model(cfg, datamodule)
    start = time.process_time()
    timer = StepTimer()
    if full:
        from hsi.run import dashboard

        loggers = instantiate_group(cfg.logger)
        callbacks = [*dashboard.callbacks(loggers, datamodule.class_names), *instantiate_group(cfg.callbacks),
                     timer]
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, limit_val_batches=0,
                              limit_train_batches=steps, max_epochs=1)
    else:
        trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=steps,
                            limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                            precision=cfg.trainer.precision)
    trainer.fit(model, datamodule=datamodule)
    seconds = timer.steps()
    return seconds, time.process_time() - start - sum(seconds)


WAYS = {
    "plain, materialised": lambda c, d, s: way_plain(c, d, s, True),
    "plain, hsi loader": lambda c, d, s: way_plain(c, d, s, False),
    "Lightning, bare": lambda c, d, s: way_lightning(c, d, s, False),
    "hsi.train": lambda c, d, s: way_lightning(c, d, s, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hybridsn")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ways", nargs="+", default=list(WAYS))
    parser.add_argument("--output", type=Path, default=Path("/tmp/hsi_train_tax"))
    args = parser.parse_args()
    if not CUBE.is_file():
        raise SystemExit(f"{CUBE} is not here: this benchmark needs ../shared/data beside the repository")
    torch.set_num_threads(args.threads)
    cfg, datamodule = setup(args.model, args.precision, args.output)
    steps: dict[str, list[float]] = {w: [] for w in args.ways}
    fixed: dict[str, list[float]] = {w: [] for w in args.ways}
    for _ in range(args.rounds):
        for way in args.ways:
            seconds, overhead = WAYS[way](cfg, datamodule, args.steps)
            steps[way] += seconds[2:]  # two warm-up steps
            fixed[way].append(overhead)
            print(f"{way}: {statistics.median(seconds[2:]):.3f} s/step", flush=True)
    per_epoch = len(datamodule.train_dataloader())

    def epoch(way: str) -> float:
        return per_epoch * statistics.median(steps[way]) + statistics.median(fixed[way])

    base = args.ways[0]
    print(f"\n{args.model}, {args.precision}, {args.threads} thread(s), {args.steps} steps x {args.rounds} "
          f"rounds (first 2 steps of each not counted); a recipe epoch is {per_epoch} steps; CPU seconds\n")
    print(f"| way | ms / step (median) | ms / step over {base} | step speed vs {base} | fixed s per run | "
          f"epoch speed vs {base} |")
    print("|---|---:|---:|---:|---:|---:|")
    for way in args.ways:
        median = statistics.median(steps[way])
        reference = statistics.median(steps[base])
        print(f"| {way} | {1e3 * median:.1f} | {1e3 * (median - reference):+.1f} | "
              f"{reference / median:.3f}x | {statistics.median(fixed[way]):.2f} | "
              f"{epoch(base) / epoch(way):.3f}x |")


if __name__ == "__main__":
    main()
