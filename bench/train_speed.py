"""Training speed, side by side in one process: the notebook's plain loop against hsi's Trainer.

    python bench/train_speed.py [--epochs 2] [--threads 2] [--models hybridsn hybridsn_fast]
                                [--precisions 32-true bf16-mixed]

One scene and split for every row: 8-bit Indian Pines beside the repository with the recipe
(PCA 30 whitened, 25x25 windows, 10% stratified training pixels, random state 345, batch 32,
Adam 1e-3). The notebook's way: every training window materialised in one tensor, a
`TensorDataset`, a plain PyTorch loop over HybridSN. hsi's way: `hsi.run.training`'s datamodule
(windows cut on the fly from the padded cube), LightningModule and Trainer with the default
callbacks and TensorBoard logger, exactly as `python -m hsi.train` builds them. Every row runs
the same epochs at the same thread count; the first epoch is warm-up, the others are timed.

Printed per row: seconds per epoch, training windows per second, the ratio to the notebook loop,
and the fraction of this machine's measured matmul peak (same dtype) that the network's
multiply-accumulates imply (forward + backward = 3 x forward).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CUBE = SHARED / "indian_pines_8bit" / "IP_200_M.mat"
GT = SHARED / "indian_pines" / "Indian_pines_gt.mat"


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matmul in `dtype` on this CPU."""
    a = torch.randn(n, n).to(dtype)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return repeats * 2 * n**3 / (time.perf_counter() - start) / 1e9


def cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return " ".join(f for f in wanted if f in flags) or "none of avx2/avx512"


class EpochTimer(L.Callback):
    """Wall-clock seconds of every training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def compose(overrides: list[str], output_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from hsi.run.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def recipe(model: str, precision: str, epochs: int, output_dir: Path) -> list[str]:
    return ["experiment=seed_recipe", "data=custom", f"data.cube_path={CUBE}", f"data.gt_path={GT}",
            f"model={model}", f"trainer.max_epochs={epochs}", f"trainer.precision={precision}",
            "trainer=cpu", "callbacks.progress_bar.refresh_rate=0", "data.pca.cache=false"]


def hsi_epochs(model: str, precision: str, epochs: int, output_dir: Path) -> tuple[list[float], int, int]:
    """hsi's Trainer as `python -m hsi.train` builds it: (epoch seconds, windows, MACs per window)."""
    from hydra.utils import instantiate

    from hsi.models.cost import count_macs, window_shape
    from hsi.run.config import instantiate_group
    from hsi.run.training import build_datamodule, build_model

    cfg = compose(recipe(model, precision, epochs, output_dir), output_dir)
    L.seed_everything(0)
    datamodule = build_datamodule(cfg)
    net_model = build_model(cfg, datamodule)
    timer = EpochTimer()
    callbacks = [*instantiate_group(cfg.callbacks), timer]
    loggers = instantiate_group(cfg.logger)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, limit_val_batches=0)
    trainer.fit(net_model, datamodule=datamodule)
    macs = count_macs(net_model.net, window_shape(datamodule.in_bands, datamodule.hparams.patch_size))
    return timer.seconds, len(datamodule.datasets["train"]), macs


def notebook_epochs(precision: str, epochs: int, output_dir: Path) -> tuple[list[float], int, int]:
    """The notebook's loop over materialised windows (the same training windows as hsi's)."""
    from hsi.models import HybridSN
    from hsi.models.cost import count_macs, window_shape
    from hsi.run.training import build_datamodule

    cfg = compose(recipe("hybridsn", precision, epochs, output_dir), output_dir)
    datamodule = build_datamodule(cfg)
    train_set = datamodule.datasets["train"]
    windows = torch.stack([train_set[i][0] for i in range(len(train_set))])  # materialised
    dataset = torch.utils.data.TensorDataset(windows, train_set.targets)
    torch.manual_seed(0)
    net = HybridSN(datamodule.in_bands, datamodule.hparams.patch_size, datamodule.num_classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)
    seconds = []
    bf16 = precision.startswith("bf16")
    for _ in range(epochs):
        start = time.perf_counter()
        net.train()
        for x, y in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    shape = window_shape(datamodule.in_bands, datamodule.hparams.patch_size)
    return seconds, len(dataset), count_macs(net, shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per row; the first is warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["hybridsn", "hybridsn_fast"])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--output", type=Path, default=Path("/tmp/hsi_train_speed"))
    args = parser.parse_args()
    if not CUBE.is_file():
        raise SystemExit(f"{CUBE} is not here: this benchmark needs ../shared/data beside the repository")
    torch.set_num_threads(args.threads)
    peaks = {"32-true": matmul_peak(torch.float32), "bf16-mixed": matmul_peak(torch.bfloat16)}
    rows = []
    for precision in args.precisions:
        rows.append(("notebook loop (hybridsn)", precision,
                     *notebook_epochs(precision, args.epochs, args.output)))
    for model in args.models:
        for precision in args.precisions:
            rows.append((f"hsi.train {model}", precision,
                         *hsi_epochs(model, precision, args.epochs, args.output / f"{model}_{precision}")))
    reference = {}
    print(f"\n{platform.processor() or platform.machine()}, CPU flags: {cpu_flags()}; torch "
          f"{torch.__version__}, {args.threads} thread(s); {args.epochs} epochs per row, first one "
          f"not timed; matmul peak fp32 {peaks['32-true']:.0f} GFLOP/s, bf16 {peaks['bf16-mixed']:.0f} "
          f"GFLOP/s\n")
    print("| way | precision | s / epoch | windows / s | vs notebook loop (same precision) | "
          "% of matmul peak |")
    print("|---|---|---:|---:|---:|---:|")
    for name, precision, seconds, windows, macs in rows:
        timed = seconds[1:] or seconds
        per_epoch = statistics.median(timed)
        rate = windows / per_epoch
        reference.setdefault(precision, per_epoch)
        peak = peaks.get(precision, peaks["32-true"])
        used = 3 * 2 * macs * rate / 1e9 / peak
        print(f"| {name} | {precision} | {per_epoch:.1f} | {rate:.0f} | "
              f"{reference[precision] / per_epoch:.2f}x | {100 * used:.0f}% |")


if __name__ == "__main__":
    main()
