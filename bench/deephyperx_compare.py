"""hsi beside DeepHyperX's own code on the same scene, split, epochs and threads.

    python bench/deephyperx_compare.py --deephyperx /tmp/dhx_ref [--models hamida li]
        [--seeds 0 1 2] [--epochs 20] [--train-share 0.1] [--threads 1] [--out /tmp/dhx_bench]

`--deephyperx` is a scratch folder holding nshaud/DeepHyperX's `models.py`, `utils.py` and
`datasets.py` as fetched (`git --git-dir=<fetch of github:nshaud/DeepHyperX> show HEAD:<file>`);
they are imported from there, never copied into hsi. Their display-only imports (seaborn,
spectral, visdom) are stubbed, and torch's ReduceLROnPlateau is given back the `verbose`
argument DeepHyperX passes (torch 2.13 dropped it). DeepHyperX's `main.py` needs a visdom server,
so its steps are run one by one as main.py runs them: `get_model(name, ...)` (its optimizer,
learning rate, batch, loss and ReduceLROnPlateau with patience epochs // 4), `HyperX` datasets,
`train(...)` with its per-epoch validation, and `test(...)` over every pixel of the scene. The
cube is min-max scaled over all its values as DeepHyperX's `get_dataset` scales it.

hsi runs `experiment=paper/<name>` (the same settings: all bands, `data.pca.rescale=minmax`) on
the same masks (`data/split=mask`), with validation on its windows (`data.eval_path=window`,
as DeepHyperX validates) and the last epoch's weights tested; its whole-scene map is
`hsi.run.inference.predict_labels` (dense where the network allows).

The split, per seed: the labelled pixels more than patch_size // 2 from the scene's edge
(DeepHyperX's HyperX trains on no other), `--train-share` of each class drawn for
training (sklearn, stratified, seeded), 5% of those for validation (DeepHyperX's
`sample_gt(train_gt, 0.95)`), the rest tested. OA is counted on those test pixels for both.
Prints one row per network and seed, then means, and hsi's training and map time as ratios to
DeepHyperX's (below 1: hsi is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import scipy.io
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from hsi.run.checkpoint import load_checkpoint
from hsi.run.config import CONFIG_DIR
from hsi.run.inference import predict_labels

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CUBE = SHARED / "indian_pines_8bit" / "IP_200_M.mat"
GT = SHARED / "indian_pines" / "Indian_pines_gt.mat"
WINDOW = {"hamida": 5, "li": 5, "he": 7, "lee": 5, "chen": 27, "mou": 1, "hu": 1}


def load_deephyperx(folder: Path) -> types.SimpleNamespace:
    """DeepHyperX's models and datasets modules, imported from the scratch `folder`."""
    for name in ("seaborn", "spectral", "visdom"):  # display only: not used by what runs here
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, str(folder))
    try:
        modules = types.SimpleNamespace(models=importlib.import_module("models"),
                                        datasets=importlib.import_module("datasets"))
    finally:
        sys.path.remove(str(folder))
    modules.models.tqdm = modules.datasets.tqdm = QuietProgress
    return modules


class QuietProgress(tqdm):
    """tqdm without bars: DeepHyperX's loops draw one per batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "disable": True})


@contextlib.contextmanager
def scheduler_with_verbose():
    """torch's ReduceLROnPlateau accepting (and ignoring) DeepHyperX's `verbose=True`."""
    original = torch.optim.lr_scheduler.ReduceLROnPlateau

    class Compatible(original):
        def __init__(self, *args, verbose: bool = False, **kwargs) -> None:
            super().__init__(*args, **kwargs)

    torch.optim.lr_scheduler.ReduceLROnPlateau = Compatible
    try:
        yield
    finally:
        torch.optim.lr_scheduler.ReduceLROnPlateau = original


def make_split(gt: np.ndarray, margin: int, share: float, seed: int) -> dict[str, np.ndarray]:
    """Train / val / test label maps (0 elsewhere) over the pixels DeepHyperX's HyperX takes:
    margin < row < height - margin, likewise for columns."""
    inner = np.zeros_like(gt, dtype=bool)
    inner[margin + 1:gt.shape[0] - margin, margin + 1:gt.shape[1] - margin] = True
    rows, cols = np.nonzero((gt > 0) & inner)
    labels = gt[rows, cols]
    index = np.arange(len(rows))
    train, test = train_test_split(index, train_size=share, stratify=labels, random_state=seed)
    train, val = train_test_split(train, train_size=0.95, stratify=labels[train], random_state=seed)
    split = {}
    for name, chosen in (("train", train), ("val", val), ("test", test)):
        out = np.zeros_like(gt)
        out[rows[chosen], cols[chosen]] = labels[chosen]
        split[name] = out
    return split


def run_deephyperx(dhx, name: str, cube01: np.ndarray, split: dict, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    hyper = {"dataset": "IndianPines8bit", "n_classes": 17, "n_bands": cube01.shape[-1],
             "ignored_labels": [0], "device": torch.device("cpu"), "epoch": epochs, "test_stride": 1}
    with scheduler_with_verbose():
        model, optimizer, loss, hyper = dhx.models.get_model(name, **hyper)
    loader = torch.utils.data.DataLoader
    train_loader = loader(dhx.datasets.HyperX(cube01, split["train"], **hyper),
                          batch_size=hyper["batch_size"], shuffle=True)
    val_loader = loader(dhx.datasets.HyperX(cube01, split["val"], **hyper), batch_size=hyper["batch_size"])
    start = time.perf_counter()
    dhx.models.train(model, optimizer, loss, train_loader, hyper["epoch"], scheduler=hyper["scheduler"],
                     device=hyper["device"], supervision=hyper["supervision"], val_loader=val_loader,
                     display_iter=0)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    probabilities = dhx.models.test(model, cube01, hyper)
    map_s = time.perf_counter() - start
    prediction = probabilities.argmax(-1)
    test = split["test"] > 0
    return {"oa": float((prediction[test] == split["test"][test]).mean()), "train_s": train_s,
            "map_s": map_s, "params": sum(p.numel() for p in model.parameters())}


def run_hsi(name: str, split: dict, epochs: int, seed: int, threads: int, cube: Path, gt: Path,
            folder: Path) -> dict:
    masks = {}
    for subset in ("train", "val", "test"):
        masks[subset] = folder / f"{subset}_mask.npy"
        np.save(masks[subset], split[subset] > 0)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            f"experiment=paper/{name}", "data=custom", f"data.cube_path={cube}", f"data.gt_path={gt}",
            "data/split=mask", f"data.split.train_mask_path={masks['train']}",
            f"data.split.val_mask_path={masks['val']}", f"data.split.test_mask_path={masks['test']}",
            f"trainer.max_epochs={epochs}", f"model.scheduler.patience={max(1, epochs // 4)}",
            f"seed={seed}", f"threads={threads}", "trainer=cpu", "logger=none", "map=false",
            "data.eval_path=window", "data.pca.cache=false", "callbacks.progress_bar.refresh_rate=0"])
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder / "run")
    from hsi.run.training import train

    metrics = train(cfg)
    checkpoint = load_checkpoint(metrics["checkpoint"])
    net = checkpoint.classifier("cpu").net
    reduced = checkpoint.reduce(load_cube(cube))
    start = time.perf_counter()
    labels, path = predict_labels(net, reduced, checkpoint.data_state["patch_size"], "auto")
    map_s = time.perf_counter() - start
    test = split["test"] > 0
    map_oa = float((labels[test] == split["test"][test]).mean())
    return {"oa": float(metrics["oa"]), "map_oa": map_oa, "train_s": float(metrics["train_seconds"]),
            "map_s": map_s, "map_path": path, "params": int(metrics["params"])}


def load_cube(path: Path) -> np.ndarray:
    return next(v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__") and v.ndim == 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deephyperx", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["hamida", "li"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train-share", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cube", type=Path, default=CUBE)
    parser.add_argument("--gt", type=Path, default=GT)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dhx = load_deephyperx(args.deephyperx.resolve())
    cube = load_cube(args.cube)
    cube01 = np.asarray(cube, dtype="float32")
    cube01 = (cube01 - np.min(cube01)) / (np.max(cube01) - np.min(cube01))  # DeepHyperX's get_dataset
    gt = next(v for k, v in scipy.io.loadmat(args.gt).items() if not k.startswith("__"))
    out = args.out or Path(tempfile.mkdtemp(prefix="dhx_bench_"))
    rows = []
    print(f"8-bit Indian Pines, {args.epochs} epochs, {args.threads} thread(s), "
          f"train share {args.train_share}; load average at start {os.getloadavg()[0]:.1f}")
    print("| model | seed | train / val / test px | OA DeepHyperX | OA hsi | train s DeepHyperX "
          "| train s hsi | map s DeepHyperX | map s hsi (path) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        for seed in args.seeds:
            folder = out / f"{name}_seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            split = make_split(gt, WINDOW[name] // 2, args.train_share, seed)
            cwd = Path.cwd()
            os.chdir(folder)  # DeepHyperX saves its checkpoints under ./checkpoints
            try:
                reference = run_deephyperx(dhx, name, cube01, split, args.epochs, seed)
            finally:
                os.chdir(cwd)
            ours = run_hsi(name, split, args.epochs, seed, args.threads, args.cube.resolve(),
                           args.gt.resolve(), folder)
            sizes = " / ".join(str(int((split[s] > 0).sum())) for s in ("train", "val", "test"))
            rows.append({"model": name, "seed": seed, "deephyperx": reference, "hsi": ours})
            print(f"| {name} | {seed} | {sizes} | {reference['oa']:.4f} | {ours['oa']:.4f} | "
                  f"{reference['train_s']:.1f} | {ours['train_s']:.1f} | {reference['map_s']:.1f} | "
                  f"{ours['map_s']:.1f} ({ours['map_path']}) |", flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n| model | OA DeepHyperX (mean ± sd) | OA hsi (mean ± sd) | hsi / DeepHyperX train time "
          "| hsi / DeepHyperX map time | params DeepHyperX / hsi |")
    print("|---|---:|---:|---:|---:|---|")
    for name in args.models:
        mine = [r for r in rows if r["model"] == name]
        oa = {k: np.array([r[k]["oa"] for r in mine]) for k in ("deephyperx", "hsi")}
        ratio = {key: sum(r["hsi"][key] for r in mine) / sum(r["deephyperx"][key] for r in mine)
                 for key in ("train_s", "map_s")}
        print(f"| {name} | {oa['deephyperx'].mean():.4f} ± {oa['deephyperx'].std(ddof=1):.4f} | "
              f"{oa['hsi'].mean():.4f} ± {oa['hsi'].std(ddof=1):.4f} | {ratio['train_s']:.2f}x | "
              f"{ratio['map_s']:.2f}x | {mine[0]['deephyperx']['params']:,} / {mine[0]['hsi']['params']:,} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; run files: {out}")


if __name__ == "__main__":
    main()
