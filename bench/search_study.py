"""Pruning and workers of `python -m hsi.search`, measured side by side on one machine.

Runs the same search (same space, sampler seed, fixed settings) three times, one after another:

- `none`:    every trial to its end, 1 worker;
- `median`:  the median pruner (search/pruner=median), 1 worker;
- `hyperband`: the Hyperband pruner (search/pruner=hyperband), 1 worker (`--cases hyperband`);
- `2 workers`: no pruning, `search.workers=2` (two processes sharing the journal storage);

and prints, per search, the trials complete / pruned, the training epochs spent (sum over the
trials of the epochs each trained), the best validation OA and the wall time, with the ratios the
issue asks for (epochs median/none, wall 2 workers / 1 worker). Each process uses one thread
(OMP_NUM_THREADS=1).

    python bench/search_study.py --trials 16 --out /tmp/search_bench   # cnn2d, honest_fields, IP
    python bench/search_study.py --trials 6 --epochs 5 --out /tmp/b -- <more overrides>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCENE = ["data=custom", f"data.cube_path={DATA / 'indian_pines_8bit' / 'IP_200_M.mat'}",
         f"data.gt_path={DATA / 'indian_pines' / 'Indian_pines_gt.mat'}"]
SEARCH = ["hparams_search=honest_optuna", "experiment=honest_fields", "model=cnn2d", *SCENE, "seed=0",
          "data.patch_size=choice(7,9)", "logger=none", "trainer=cpu",
          "callbacks.progress_bar.refresh_rate=0"]
CASES = {"none": ["search/pruner=none"], "median": ["search/pruner=median"],
         "hyperband": ["search/pruner=hyperband"],
         "2 workers": ["search/pruner=none", "search.workers=2"]}


def run_case(name: str, folder: Path, trials: int, epochs: int, extra: list[str]) -> dict:
    arguments = [*SEARCH, f"search.n_trials={trials}", f"search.sampler.n_startup_trials={trials // 2}",
                 f"trainer.max_epochs={epochs}", f"search.dir={folder}", *CASES[name], *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    with open(folder.parent / f"{folder.name}.log", "w") as log:
        subprocess.run([sys.executable, "-m", "hsi.search", *arguments], cwd=ROOT, env=env, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    wall = time.perf_counter() - start
    storage = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    study = optuna.load_study(study_name="honest_optuna", storage=storage)
    done = study.get_trials(deepcopy=False)
    return {"case": name, "complete": sum(t.state == TrialState.COMPLETE for t in done),
            "pruned": sum(t.state == TrialState.PRUNED for t in done),
            "distinct": len({t.number for t in done}),
            "epochs": sum(int(t.user_attrs.get("epochs") or 0) for t in done),
            "best": study.best_value, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", default="none,median,2 workers")
    parser.add_argument("extra", nargs="*", help="more overrides for every search")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.cases.split(","):
        folder = args.out / name.replace(" ", "_")
        rows.append(run_case(name, folder, args.trials, args.epochs, args.extra))
        row = rows[-1]
        print(f"| {row['case']} | {row['complete']} | {row['pruned']} | {row['distinct']} | "
              f"{row['epochs']} | {row['best']:.4f} | {row['wall']:.0f} |", flush=True)
    by = {row["case"]: row for row in rows}
    print(f"\n{args.trials} trials x up to {args.epochs} epochs each")
    for pruner in ("median", "hyperband"):
        if "none" in by and pruner in by:
            print(f"epochs {pruner} / none: {by[pruner]['epochs'] / by['none']['epochs']:.2f}; best val OA "
                  f"{pruner} - none: {by[pruner]['best'] - by['none']['best']:+.4f}")
    if "none" in by and "2 workers" in by:
        print(f"wall 2 workers / 1 worker: {by['2 workers']['wall'] / by['none']['wall']:.2f}")


if __name__ == "__main__":
    main()
