"""bf16 against fp32, network by network: test OA over seeds, and the whole-scene map's labels
of the same weights inferred in both precisions.

    OMP_NUM_THREADS=1 python bench/precision_accuracy.py [--epochs 10] [--seeds 0 1 2]
        [--models cnn1d cnn2d ...] [--scene salinas_a] [--results /tmp/hsi_precision/results.jsonl]

The comparison recipe, sized for two shared CPU cores: `experiment=random_leaderboard` (10% /
5% / 85% stratified random split, PCA fitted on the training pixels, cosine schedule, the
checkpoint of the best validation OA) on Salinas-A with 9x9 windows and `--epochs` epochs,
one thread per run. Every (network, seed) trains twice, `trainer.precision=32-true` and
`bf16-mixed`, back to back (so both see the same load); within a seed both start from the same
split and weights. bf16 holds for a network when its mean test OA lies within the fp32 seeds'
spread (between their lowest and highest OA, or within 2 standard deviations of their mean).

Inference (issue 33 item 2): each run's tested checkpoint classifies every pixel of the scene
in fp32 and under bf16 autocast, the path `hsi.train`'s map takes (dense where the network
supports it); printed: the share of pixels whose label is the same.

Runs go to `--results` as JSON lines; a rerun skips what is there (delete the file to start
over). The table is printed at the end (`--table` prints it from the file alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MODELS = ["cnn1d", "cnn2d", "cnn3d", "hybridsn", "hybridsn_se", "hybridsn_lite", "hybridsn_fast", "ssftt"]
PRECISIONS = ("32-true", "bf16-mixed")


def run_dir(out: Path, model: str, precision: str, seed: int) -> Path:
    return out / f"{model}_{precision}_{seed}"


def train_once(model: str, precision: str, seed: int, args: argparse.Namespace) -> dict:
    """`python -m hsi.train` with the comparison recipe; its metrics.json."""
    folder = run_dir(args.results.parent, model, precision, seed)
    command = [sys.executable, "-m", "hsi.train", "experiment=random_leaderboard", f"data={args.scene}",
               f"paths.data_dir={args.data_dir}", f"model={model}", f"data.patch_size={args.patch_size}",
               f"trainer.max_epochs={args.epochs}", f"trainer.precision={precision}", f"seed={seed}",
               "threads=1", "logger=none", "map=false", "callbacks.progress_bar.refresh_rate=0",
               "data.pca.cache=false", f"hydra.run.dir={folder}"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # a run that diverges is a result (the row says so), not the bench's end
        lines = [line for line in done.stderr.splitlines() if line.startswith("Error")] or \
            done.stderr.strip().splitlines()[-1:] or ["failed"]
        return {"failed": lines[-1], "wall_seconds": round(time.perf_counter() - start, 1)}
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["wall_seconds"] = round(time.perf_counter() - start, 1)
    return metrics


def map_agreement(checkpoint: str, data_dir: str) -> dict:
    """The same weights over every pixel of their scene in fp32 and bf16 autocast: the share of
    identical labels, and each map's OA on the labelled pixels."""
    import torch

    from hsi.run.checkpoint import load_checkpoint, reduce_cube
    from hsi.run.inference import predict_labels
    from hsi.run.outputs import labelled_accuracy

    torch.set_num_threads(1)
    ckpt = load_checkpoint(checkpoint)
    net = ckpt.classifier("cpu").net
    datamodule = ckpt.datamodule(data_dir=data_dir)
    datamodule.setup()
    scene = datamodule.scene
    cube = reduce_cube(ckpt.data_state, scene.cube)
    patch = ckpt.data_state["patch_size"]
    fp32, path = predict_labels(net, cube, patch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16, _ = predict_labels(net, cube, patch)
    classes = scene.num_classes
    return {"map_path": path, "map_pixels": int(fp32.size), "map_same": float((fp32 == bf16).mean()),
            "map_oa_fp32": labelled_accuracy(fp32, scene.labels, classes)["oa"],
            "map_oa_bf16": labelled_accuracy(bf16, scene.labels, classes)["oa"]}


def load(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(rows: list[dict]) -> None:
    print("| network | seeds | fp32 OA (mean ± std) | fp32 range | bf16 OA (mean ± std) | bf16 - fp32 | "
          "holds | "
          "fp32 train s | bf16 train s | map labels same (fp32-trained) | (bf16-trained) |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {p: [r for r in rows if r["model"] == model and r["precision"] == p] for p in PRECISIONS}
        if not by["32-true"] or not by["bf16-mixed"]:
            continue
        failed = {p: sum("failed" in r for r in by[p]) for p in PRECISIONS}
        if any(failed.values()):
            why = "; ".join(f"{p}: {n} of {len(by[p])} runs failed" for p, n in failed.items() if n)
            print(f"| `{model}` | {len(by['32-true'])} | {why} | | | | **no** | | | | |")
            continue
        fp32 = [r["oa"] for r in by["32-true"]]
        bf16 = [r["oa"] for r in by["bf16-mixed"]]
        (m32, s32), (m16, s16) = spread(fp32), spread(bf16)
        holds = min(fp32) <= m16 <= max(fp32) or abs(m16 - m32) <= 2 * s32
        verdict = "– (one seed has no spread)" if len(fp32) < 2 else "yes" if holds else "**no**"
        seconds = {p: statistics.mean(r["train_seconds"] for r in by[p]) for p in PRECISIONS}
        same = {p: min(r["map_same"] for r in by[p]) for p in PRECISIONS}
        print(f"| `{model}` | {len(fp32)} | {m32:.4f} ± {s32:.4f} | {min(fp32):.4f}–{max(fp32):.4f} | "
              f"{m16:.4f} ± {s16:.4f} | {m16 - m32:+.4f} | {verdict} | "
              f"{seconds['32-true']:.0f} | {seconds['bf16-mixed']:.0f} | {100 * same['32-true']:.2f}% | "
              f"{100 * same['bf16-mixed']:.2f}% |")
    print("\nseeds: the fp32 runs of the row (as many bf16); map labels: the lowest share over the seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patch-size", type=int, default=9)
    parser.add_argument("--scene", default="salinas_a")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--results", type=Path, default=Path("/tmp/hsi_precision/results.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the table from --results and stop")
    args = parser.parse_args()
    if args.table:
        return table(load(args.results))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["model"], r["precision"], r["seed"]) for r in load(args.results)}
    for seed in args.seeds:
        for model in args.models:
            for precision in PRECISIONS:
                if (model, precision, seed) in done:
                    continue
                metrics = train_once(model, precision, seed, args)
                if "failed" in metrics:
                    row = {"model": model, "precision": precision, "seed": seed, **metrics}
                    with args.results.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
                    continue
                row = {"model": model, "precision": precision, "seed": seed, "oa": metrics["oa"],
                       "val_oa": metrics.get("val_oa"), "train_seconds": metrics["train_seconds"],
                       "epochs": metrics.get("epochs"), "wall_seconds": metrics["wall_seconds"],
                       **map_agreement(metrics["checkpoint"], args.data_dir)}
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    table(load(args.results))


if __name__ == "__main__":
    main()
