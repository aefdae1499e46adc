"""Whole-scene CPU time of an exported network: PyTorch eager vs onnxruntime fp32 vs onnxruntime int8.

    python bench/export_speed.py --ckpt <file> [--ckpt <file> ...] [--threads 1] [--repeats 5]
    python bench/export_speed.py --train hybridsn --train hybridsn_lite --epochs 5

Each checkpoint (or a short training run on the 8-bit Indian Pines cube,
../shared/data/indian_pines_8bit/IP_200_M.mat with ../shared/data/indian_pines/Indian_pines_gt.mat,
experiment=seed_recipe_cosine) is exported with `quantize=int8` (hsi.deploy.export, its checks
included), then its whole scene is classified from the raw cube by three engines, in one process,
with the same number of threads (`--threads`, default 1: torch.set_num_threads, onnxruntime's
intra-op threads, and the BLAS threads of the numpy PCA):

- torch: the checkpoint's PCA (numpy, float64) + hsi.run.inference.predict_labels (dense where the
  network allows it, else batched windows), what hsi.predict runs;
- onnx fp32 / onnx int8: hsi.deploy.runtime.OnnxClassifier.predict (PCA inside the graph on the dense
  path, pca.onnx + windows cut in numpy on the window path).

One warm-up run each, then `--repeats` rounds, the engines interleaved in each round; the best
time is kept (the median is printed too). Prints a Markdown table with the file sizes, OA on the
checkpoint's test pixels and whether the labels equal PyTorch's on every pixel; `--json` saves it.
"""

from __future__ import annotations

import argparse
import os
import sys


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", default=[], help="checkpoint to export and time")
    parser.add_argument("--train", action="append", default=[],
                        help="model config to train first on 8-bit Indian Pines (e.g. hybridsn)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of those training runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tile-rows", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256, help="windows per batch (window path)")
    parser.add_argument("--out", default=None, help="folder for the exports (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the results here too")
    return parser.parse_args()


ARGS = arguments() if __name__ == "__main__" else None
if ARGS is not None:  # before numpy is imported: the BLAS of the numpy PCA uses as many threads
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(ARGS.threads)

import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CUBE = SHARED / "indian_pines_8bit" / "IP_200_M.mat"
GT = SHARED / "indian_pines" / "Indian_pines_gt.mat"


def train_checkpoint(model: str, epochs: int, folder: Path) -> Path:
    """A short seed_recipe_cosine run of `model` on the 8-bit Indian Pines cube."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from hsi.run.config import CONFIG_DIR
    from hsi.train import train

    if not CUBE.is_file() or not GT.is_file():
        sys.exit(f"{CUBE} or {GT} is missing; give --ckpt instead.")
    overrides = ["experiment=seed_recipe_cosine", f"model={model}", "data=custom",
                 f"data.cube_path={CUBE}", f"data.gt_path={GT}", f"trainer.max_epochs={epochs}",
                 "logger=none", "map=false", "callbacks.progress_bar.refresh_rate=0"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    return Path(train(cfg)["checkpoint"])


def bench_one(ckpt: Path, out: Path, args: argparse.Namespace) -> dict:
    from hsi.deploy.checks import overall_accuracy
    from hsi.deploy.export import export_checkpoint
    from hsi.deploy.quantize import Int8Settings
    from hsi.deploy.runtime import OnnxClassifier
    from hsi.run.checkpoint import load_checkpoint
    from hsi.run.inference import predict_labels

    meta = export_checkpoint(ckpt, out, quantize="int8", threads=args.threads, tile_rows=args.tile_rows,
                             batch_size=args.batch_size, int8=Int8Settings(max_oa_drop=None))
    checkpoint = load_checkpoint(ckpt)
    net = checkpoint.classifier("cpu").net.eval()
    datamodule = checkpoint.datamodule()
    datamodule.setup()
    scene = datamodule.scene
    cube = scene.cube
    patch = checkpoint.data_state["patch_size"]
    fp32 = OnnxClassifier.load(out / "model.onnx", threads=args.threads)
    int8 = OnnxClassifier.load(out / "model.int8.onnx", threads=args.threads)

    def run_torch() -> np.ndarray:
        return predict_labels(net, checkpoint.reduce(cube), patch, "auto", args.batch_size,
                              args.tile_rows)[0]

    engines = {"torch": run_torch,
               "onnx fp32": lambda: fp32.predict(cube, args.tile_rows, args.batch_size),
               "onnx int8": lambda: int8.predict(cube, args.tile_rows, args.batch_size)}
    labels = {name: run() for name, run in engines.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.repeats):
        for name, run in engines.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    test = datamodule.split["test"]
    sizes = meta["sizes_bytes"]
    return {
        "network": meta["network"], "path": meta["eval_path"], "checkpoint": str(ckpt),
        "scene": scene.name, "shape": list(scene.shape), "bands": meta["bands"],
        "patch_size": patch, "best_s": {k: min(v) for k, v in times.items()},
        "median_s": {k: float(np.median(v)) for k, v in times.items()},
        "oa_test": {k: overall_accuracy(v, scene.labels, test) for k, v in labels.items()},
        "test_pixels": len(test),
        "fp32_labels_identical": bool(np.array_equal(labels["onnx fp32"], labels["torch"])),
        "int8_label_change_fraction": float(np.mean(labels["onnx int8"] != labels["onnx fp32"])),
        "sizes_mb": {"checkpoint": ckpt.stat().st_size / 1e6,
                     **{k: v / 1e6 for k, v in sizes.items()}},
        "verification": meta["verification"],
    }


def table(results: list[dict]) -> str:
    head = ("| network | path | torch s | onnx fp32 s | onnx int8 s | fp32 vs torch | int8 vs fp32 | "
            "OA torch | OA fp32 | OA int8 | labels fp32 = torch | int8 labels changed | "
            "model.onnx MB | model.int8.onnx MB |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        t, oa, mb = r["best_s"], r["oa_test"], r["sizes_mb"]
        rows.append(f"| {r['network']} | {r['path']} | {t['torch']:.3f} | {t['onnx fp32']:.3f} | "
                    f"{t['onnx int8']:.3f} | {t['torch'] / t['onnx fp32']:.2f}x | "
                    f"{t['onnx fp32'] / t['onnx int8']:.2f}x | {oa['torch']:.4f} | {oa['onnx fp32']:.4f} | "
                    f"{oa['onnx int8']:.4f} | {'yes' if r['fp32_labels_identical'] else 'NO'} | "
                    f"{r['int8_label_change_fraction']:.2%} | {mb['model.onnx']:.2f} | "
                    f"{mb['model.int8.onnx']:.2f} |")
    return "\n".join(rows)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="export_speed_"))
    checkpoints = [Path(c) for c in args.ckpt]
    for model in args.train:
        checkpoints.append(train_checkpoint(model, args.epochs, work / f"train_{model}"))
    if not checkpoints:
        sys.exit("give --ckpt <file> or --train <model>")
    import onnxruntime

    results = []
    for i, ckpt in enumerate(checkpoints):
        results.append(bench_one(ckpt, work / f"export_{i}", args))
        print(f"{results[-1]['network']}: best s {results[-1]['best_s']}, median s "
              f"{results[-1]['median_s']}", flush=True)
        if args.json:  # after each network, so a long run keeps what it measured
            Path(args.json).write_text(json.dumps({"threads": args.threads, "repeats": args.repeats,
                                                   "results": results}, indent=2) + "\n")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; threads {args.threads}; torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}; best of {args.repeats} (median in the JSON); scene "
          f"{results[0]['scene']} {results[0]['shape']}x{results[0]['bands']}\n")
    print(table(results))


if __name__ == "__main__":
    main(ARGS)
