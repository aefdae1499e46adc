"""Learning curves of a multirun's jobs, per setting: where validation OA peaks and how far the
training OA has gone by then (read from each job's TensorBoard events).

    python bench/learning_curves.py outputs/train/multiruns/<timestamp> [--key leaderboard]
    python bench/learning_curves.py <multirun> --per-class [--with <multirun>]

For every setting (the value of `--key` among the job's overrides; all jobs without it), the mean
over its jobs of: the epoch of the best validation OA (0-based, the checkpoint tested), the
number of epochs run, the training OA of the epoch of the best validation OA and of the last
epoch, the best validation OA and the validation OA of the last epoch; and the test OA from
metrics.json. A large gap between training and validation OA from the first epochs on says the
network fits its training fields and does not carry over to other fields (more epochs would not
help); a validation OA still rising at the last epoch says the schedule was too short.

`--per-class`: instead, each class's test accuracy (mean over the setting's jobs; classes without
test pixels left out) and its share of the test pixels, so a class that caps the OA shows.
`--with` adds the jobs of another multirun (a grid run in several starts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hsi.studies.jobs import find_jobs


def curves(job: Path) -> dict[str, list[float]]:
    """Per-epoch scalars of a job's TensorBoard events (the training run's file)."""
    out: dict[str, list[float]] = {}
    for events in sorted(job.glob("tensorboard/**/events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        # `*/oa` before the dashboard layout (hsi.run.dashboard), `curves/oa_*` since
        for tag, older in (("val/oa", "curves/OA_val"), ("train/oa", "curves/OA_train")):
            for name in (tag, older):
                if name in accumulator.Tags()["scalars"]:
                    out[tag] = [e.value for e in accumulator.Scalars(name)]
    return out


def row(values: list[dict[str, float]]) -> list[str]:
    keys = ("best_epoch", "epochs", "train_at_best", "train_last", "val_best", "val_last", "test")
    means = {k: np.mean([v[k] for v in values]) for k in keys}
    return [f"{means['best_epoch']:.1f}", f"{means['epochs']:.1f}", f"{means['train_at_best']:.3f}",
            f"{means['train_last']:.3f}", f"{means['val_best']:.3f}", f"{means['val_last']:.3f}",
            f"{means['test']:.3f}"]


def per_class(jobs: list, key: str) -> None:
    """Each class's test accuracy per setting (mean over its jobs) and its share of test pixels."""
    accuracy: dict[str, dict[str, list[float]]] = {}
    share: dict[str, list[float]] = {}
    for job in jobs:
        metrics = job.metrics
        setting = accuracy.setdefault(str(job.overrides.get(key, "all")), {})
        for name, value in metrics["per_class_accuracy"].items():
            if value is not None:
                setting.setdefault(name, []).append(value)
        confusion = np.loadtxt(job.folder / "confusion_matrix.csv", delimiter=",", skiprows=1,
                               usecols=range(1, len(metrics["class_names"]) + 1), ndmin=2)
        counts = confusion.sum(axis=1)
        for name, count in zip(metrics["class_names"], counts):
            share.setdefault(name, []).append(count / counts.sum())
    names = list(share)
    header = ["class", "test share", *accuracy]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in names:
        cells = [f"{np.mean(accuracy[s][name]):.2f}" if accuracy[s].get(name) else "–" for s in accuracy]
        print("| " + " | ".join([name, f"{np.mean(share[name]):.3f}", *cells]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun", type=Path)
    parser.add_argument("--key", default="leaderboard", help="the override that names a setting")
    parser.add_argument("--per-class", action="store_true", help="per-class test accuracy instead")
    parser.add_argument("--with", dest="more", type=Path, action="append", default=[])
    args = parser.parse_args()
    jobs = [job for folder in [args.multirun, *args.more] for job in find_jobs(folder) if job.ok]
    if args.per_class:
        per_class(jobs, args.key)
        return
    settings: dict[str, list[dict[str, float]]] = {}
    for job in jobs:
        folder = job.folder
        scalars = curves(folder)
        val, train = scalars.get("val/oa", []), scalars.get("train/oa", [])
        if not val or len(train) < len(val):
            continue  # no network training (an estimator) or an unfinished log
        best = int(np.argmax(val))
        settings.setdefault(str(job.overrides.get(args.key, "all")), []).append(
            {"best_epoch": best, "epochs": len(val), "train_at_best": train[best],
             "train_last": train[len(val) - 1], "val_best": val[best], "val_last": val[-1],
             "test": job.metrics["oa"]})
    header = [args.key, "jobs", "best val epoch", "epochs", "train OA at best", "train OA last",
              "val OA best", "val OA last", "test OA"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, values in settings.items():
        print("| " + " | ".join([name, str(len(values)), *row(values)]) + " |")
    overrides = args.multirun / "multirun.yaml"
    if overrides.is_file():
        task = yaml.safe_load(overrides.read_text()).get("hydra", {}).get("overrides", {}).get("task")
        print(f"\n{args.multirun}: {' '.join(task or [])}")


if __name__ == "__main__":
    main()
