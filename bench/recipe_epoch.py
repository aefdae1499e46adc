"""Seconds per training epoch of a paper recipe (conf/experiment/paper/<name>.yaml) on a scene.

    python bench/recipe_epoch.py spectralformer [--batches 3] [--threads 1] [override ...]

Composes `experiment=paper/<name>` on the 8-bit Indian Pines cube and ground truth of
../shared/data, then the overrides, builds the recipe's datamodule, network and optimizer,
times `--batches` real batches of the train loader (forward, cross-entropy, backward, optimizer
step; one warm-up batch first, not counted) and prints the time per window and that time the
number of training windows: one epoch, without validation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from hsi.run.config import CONFIG_DIR, PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared" / "data"
INDIAN_PINES_8BIT = ["data=custom", f"data.cube_path={SHARED / 'indian_pines_8bit' / 'IP_200_M.mat'}",
                     f"data.gt_path={SHARED / 'indian_pines' / 'Indian_pines_gt.mat'}", "data.download=false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides after 8-bit Indian Pines'")
    args = parser.parse_intermixed_args()
    torch.set_num_threads(args.threads)
    overrides = [*INDIAN_PINES_8BIT, *args.overrides]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"experiment=paper/{args.name}", *overrides,
                                f"paths.output_dir={Path('outputs') / 'bench'}"])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    loader = datamodule.train_dataloader()
    windows = len(datamodule.datasets["train"])
    shape = next(iter(loader))[0].shape
    net = instantiate(cfg.model.net, in_bands=shape[2], patch_size=shape[-1],
                      num_classes=len(datamodule.scene.class_names)).train()
    optimizer = instantiate(cfg.model.optimizer, params=net.parameters())
    seconds, timed = 0.0, 0
    for index, (x, y) in enumerate(loader):
        if index > args.batches:
            break
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
        if index:  # the first batch warms up
            seconds, timed = seconds + time.perf_counter() - start, timed + len(y)
    per_window = seconds / max(timed, 1)
    print(f"{args.name}: {shape[2]} bands, {shape[-1]}x{shape[-1]}, batch {cfg.data.batch_size}, "
          f"{windows} training windows; {per_window * 1000:.1f} ms / window, "
          f"{per_window * windows:.1f} s / epoch "
          f"({timed} windows timed, {args.threads} thread(s), "
          f"{sum(p.numel() for p in net.parameters()):,} parameters)")


if __name__ == "__main__":
    main()
