"""Threads of parallel jobs: one multirun of N jobs run sequentially, in parallel with torch's
default threads per job, and in parallel with the thread budget (cores // n_jobs, the default of
`hydra/launcher=parallel`), measured side by side in one run.

    python bench/parallel_threads.py [--cube <IP_200_M.mat> --gt <Indian_pines_gt.mat>]
        [--jobs 4] [--n-jobs 2] [--epochs 3] [--model hybridsn_fast]

Each setting runs `python -m hsi.train -m` with seeds 1..jobs (logger and map off), timed from
start to end of the command; the threads each job recorded (metrics.json `threads`) are read back.
Without --cube the synthetic scene is used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(name: str, data: list[str], args: argparse.Namespace, launcher: list[str], out: Path) -> dict:
    folder = out / "".join(c if c.isalnum() else "_" for c in name)
    seeds = ",".join(str(s) for s in range(1, args.jobs + 1))
    cmd = [sys.executable, "-m", "hsi.train", "-m", *data, f"model={args.model}",
           f"trainer.max_epochs={args.epochs}", "trainer=cpu", "logger=none", "map=false",
           "callbacks.progress_bar.refresh_rate=0", f"seed={seeds}", *launcher,
           f"hydra.sweep.dir={folder}"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    metrics = [json.loads(p.read_text()) for p in sorted(folder.glob("*/metrics.json"))]
    return {"name": name, "seconds": seconds, "threads": sorted({m.get("threads") for m in metrics}),
            "oa": sum(m["oa"] for m in metrics) / len(metrics)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube")
    parser.add_argument("--gt")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="hybridsn_fast")
    args = parser.parse_args()
    data = (["data=custom", f"data.cube_path={args.cube}", f"data.gt_path={args.gt}"] if args.cube
            else ["data=synthetic"])
    cores = len(os.sched_getaffinity(0))
    parallel = ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={args.n_jobs}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = [sweep("sequential (torch default threads)", data, args, [], out),
                sweep(f"parallel, {args.n_jobs} at once, torch default threads", data, args,
                      [*parallel, f"threads={cores}"], out),
                sweep(f"parallel, {args.n_jobs} at once, budget cores // n_jobs (default)", data, args,
                      parallel, out)]
    base = rows[0]["seconds"]
    print(f"{args.jobs} jobs, model={args.model}, {args.epochs} epochs, {cores} cores, "
          f"{'custom cube ' + Path(args.cube).name if args.cube else 'synthetic scene'}")
    print("| setting | threads per job | wall s | vs sequential | mean OA |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['name']} | {', '.join(map(str, row['threads']))} | {row['seconds']:.1f} | "
              f"{base / row['seconds']:.2f}x | {row['oa']:.4f} |")


if __name__ == "__main__":
    main()
