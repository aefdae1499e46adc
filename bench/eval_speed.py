"""Test-phase time of the HybridSN recipe: window-by-window vs dense evaluation (`data.eval_path`).

    python bench/eval_speed.py [--threads 1] [--train-batches 0] [--cube <file>] [--gt <file>]

One process, one untrained but fixed HybridSN (seeded), the recipe's data (`experiment=seed_recipe`:
PCA 30 whitened on the scene, 25x25 windows, the stratified 10% / 90% split of random state 345)
on the 8-bit Indian Pines cube beside the repository (9,225 test pixels). `trainer.test` runs
twice on the same weights: with `data.eval_path=window` (every test pixel's window, batches of
`data.eval_batch_size`) and with `data.eval_path=dense` (row tiles of the padded scene, the trunk
once per tile, the head as convolutions). It prints both times, their ratio and whether the
test reports (predictions, OA, AA, kappa, confusion matrix) are identical. An untrained HybridSN
may predict one class everywhere; `--train-batches N` first takes N Adam steps on training
windows, so that the comparison covers varied labels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from hsi.run.config import CONFIG_DIR
from hsi.run.training import build_datamodule, build_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CUBE = SHARED / "indian_pines_8bit" / "IP_200_M.mat"
GT = SHARED / "indian_pines" / "Indian_pines_gt.mat"
REPORT_KEYS = ("oa", "aa", "kappa", "per_class_accuracy", "confusion_matrix")


def recipe_config(cube: Path, gt: Path, output_dir: Path):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            "experiment=seed_recipe", "data=custom", f"data.cube_path={cube}", f"data.gt_path={gt}",
            "logger=none", "map=false", "data.pca.cache=false"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def timed_test(model: L.LightningModule, datamodule, dense: bool) -> tuple[dict, float]:
    datamodule.use_dense_evaluation(dense)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    start = time.perf_counter()
    trainer.test(model, datamodule=datamodule, verbose=False)
    return model.test_report, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--train-batches", type=int, default=0)
    parser.add_argument("--cube", type=Path, default=CUBE)
    parser.add_argument("--gt", type=Path, default=GT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.cube.is_file() or not args.gt.is_file():
        raise SystemExit(f"needs {args.cube} and {args.gt} (see ../shared/data/README.md)")

    with tempfile.TemporaryDirectory() as tmp:
        cfg = recipe_config(args.cube, args.gt, Path(tmp))
        datamodule = build_datamodule(cfg)
        L.seed_everything(cfg.seed)
        model = build_model(cfg, datamodule)  # fixed: the same weights for both paths
        if args.train_batches:
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            for _, (x, y) in zip(range(args.train_batches), datamodule.train_dataloader()):
                optimizer.zero_grad()
                model.criterion(model(x), y).backward()
                optimizer.step()
        n_test = len(datamodule.datasets["test"])
        print(f"HybridSN ({args.train_batches} training batches), recipe split of 8-bit Indian "
              f"Pines: {n_test} test pixels, {torch.get_num_threads()} threads")
        dense, t_dense = timed_test(model, datamodule, True)
        tiles = datamodule.tile_dataset("test")
        window, t_window = timed_test(model, datamodule, False)

    same = (torch.equal(dense["preds"], window["preds"]) and torch.equal(dense["targets"], window["targets"])
            and all(dense[k] == window[k] for k in REPORT_KEYS))
    print("\n| path | seconds |\n|---|---:|")
    print(f"| window (batches of {cfg.data.eval_batch_size}) | {t_window:.1f} |")
    print(f"| dense ({len(tiles)} tiles of <= {tiles.tile_rows} rows) | {t_dense:.1f} |")
    print(f"\nspeed-up {t_window / t_dense:.1f}x; OA {window['oa']:.4f} (window) vs {dense['oa']:.4f} "
          f"(dense), {len(torch.unique(window['preds']))} classes predicted; reports identical: {same}")


if __name__ == "__main__":
    main()
