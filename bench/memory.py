"""Peak memory of our data pipeline vs the notebook's materialised windows, side by side.

    python bench/memory.py [--cube ../shared/data/indian_pines_8bit/IP_200_M.mat]
                           [--gt ../shared/data/indian_pines/Indian_pines_gt.mat]

Each way runs in its own fresh process (same imports, same recipe: PCA 30 whitened, 25x25
windows, test ratio 0.9, batch 32) and reports its peak resident memory (ru_maxrss) and the
part of it above the process's footprint right after the imports.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PATCH, COMPONENTS, TEST_RATIO, SEED, BATCH = 25, 30, 0.9, 345, 32


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def ours(cube: str, gt: str) -> None:
    """Build the datamodule and iterate one training epoch (the scene is held once).

    Test batches (eval_batch_size=256 windows, 19 MB each) come and go the same way; the
    notebook's test windows are already in its materialised array.
    """
    from hsi.data import HSIDataModule
    from hsi.data.splits.random import RandomSplit

    dm = HSIDataModule("custom", cube_path=cube, gt_path=gt, pca={"components": COMPONENTS},
                       patch_size=PATCH, split=RandomSplit(test_ratio=TEST_RATIO, val_ratio=0.0),
                       split_seed=SEED, batch_size=BATCH)
    dm.setup()
    windows = sum(x.shape[0] for x, _ in dm.train_dataloader())
    print(f"# ours: iterated {windows} windows", file=sys.stderr)


def notebook(cube: str, gt: str) -> None:
    """The notebook's pipeline: every window of every pixel in float64, then filtered."""
    import numpy as np
    import scipy.io as sio
    import torch
    from sklearn.decomposition import PCA
    from sklearn.model_selection import train_test_split

    X = next(v for k, v in sio.loadmat(cube).items() if not k.startswith("__"))
    y = next(v for k, v in sio.loadmat(gt).items() if not k.startswith("__"))
    newX = np.reshape(X, (-1, X.shape[2]))
    newX = PCA(n_components=COMPONENTS, whiten=True).fit_transform(newX)
    X = np.reshape(newX, (X.shape[0], X.shape[1], COMPONENTS))
    margin = PATCH // 2
    padded = np.zeros((X.shape[0] + 2 * margin, X.shape[1] + 2 * margin, X.shape[2]))
    padded[margin:-margin, margin:-margin] = X
    patches = np.zeros((X.shape[0] * X.shape[1], PATCH, PATCH, X.shape[2]))
    labels = np.zeros(X.shape[0] * X.shape[1])
    index = 0
    for r in range(margin, padded.shape[0] - margin):
        for c in range(margin, padded.shape[1] - margin):
            patches[index] = padded[r - margin:r + margin + 1, c - margin:c + margin + 1]
            labels[index] = y[r - margin, c - margin]
            index += 1
    patches = patches[labels > 0]  # removeZeroLabels
    labels = labels[labels > 0] - 1
    Xtrain, Xtest, ytrain, ytest = train_test_split(patches, labels, test_size=TEST_RATIO,
                                                    random_state=SEED, stratify=labels)
    Xtrain = torch.from_numpy(Xtrain.reshape(-1, PATCH, PATCH, COMPONENTS, 1)
                              .transpose(0, 4, 3, 1, 2)).float()
    Xtest = torch.from_numpy(Xtest.reshape(-1, PATCH, PATCH, COMPONENTS, 1)
                             .transpose(0, 4, 3, 1, 2)).float()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xtrain, torch.from_numpy(ytrain)),
                                         batch_size=BATCH, shuffle=True)
    windows = sum(x.shape[0] for x, _ in loader)
    print(f"# notebook: iterated {windows} windows", file=sys.stderr)


def worker(way: str, cube: str, gt: str) -> None:
    import numpy  # noqa: F401  same imports in both ways before the baseline
    import scipy.io  # noqa: F401
    import sklearn.decomposition  # noqa: F401
    import torch  # noqa: F401

    import hsi.data  # noqa: F401

    baseline = peak_mb()
    {"ours": ours, "notebook": notebook}[way](cube, gt)
    print(json.dumps({"way": way, "baseline_mb": baseline, "peak_mb": peak_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube", default=str(SHARED / "indian_pines_8bit" / "IP_200_M.mat"))
    parser.add_argument("--gt", default=str(SHARED / "indian_pines" / "Indian_pines_gt.mat"))
    parser.add_argument("--worker", choices=["ours", "notebook"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.cube, args.gt)
        return
    results = {}
    for way in ("ours", "notebook"):
        out = subprocess.run([sys.executable, __file__, "--worker", way, "--cube", args.cube,
                              "--gt", args.gt], check=True, capture_output=True, text=True,
                             cwd=ROOT)
        results[way] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'pipeline':<10} {'peak RSS MB':>12} {'after imports':>14} {'added MB':>9}")
    for way, r in results.items():
        print(f"{way:<10} {r['peak_mb']:>12.0f} {r['baseline_mb']:>14.0f} "
              f"{r['peak_mb'] - r['baseline_mb']:>9.0f}")
    ours_r, nb = results["ours"], results["notebook"]
    added = {way: r["peak_mb"] - r["baseline_mb"] for way, r in results.items()}
    print(f"peak RSS ratio notebook/ours: {nb['peak_mb'] / ours_r['peak_mb']:.1f}x; "
          f"added-memory ratio: {added['notebook'] / max(added['ours'], 1):.0f}x")


if __name__ == "__main__":
    main()
