"""Full-scene prediction time on the CPU: dense vs batched windows vs the notebook.

    python bench/predict_speed.py [--size 145] [--bands 200] [--threads 2] [--model hybridsn_fast]

One run, one process, the same network (HybridSN or `--model`'s `conf/model/<name>.yaml` network
with its default settings, untrained, 30 PCA components, 25x25 windows,
16 classes, eval mode) on the same 145x145x200 cube (the 8-bit Indian Pines cube when
../shared/data has it, else a synthetic one of that size):
- dense: the trunk once over the padded scene, the classifier as convolutions (hsi.run.inference);
- windows: every pixel's window cut from the padded cube, batches of 64 (hsi.run.inference);
- notebook: every window materialised as float64 first (21,025 x 25 x 25 x 30), then
  predicted in batches of 32, as the notebook's map code does.
All three must give the same labels; the script checks and prints the ratios.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hsi.data.preprocessing import fit_pca
from hsi.data.sampling.patches import pad_cube
from hsi.run.config import CONFIG_DIR
from hsi.run.inference import dense_logits, window_logits

SHARED_CUBE = Path(__file__).resolve().parents[2] / "shared/data/indian_pines_8bit/IP_200_M.mat"
PATCH, COMPONENTS, CLASSES = 25, 30, 16


def load_cube(size: int, bands: int) -> tuple[np.ndarray, str]:
    if SHARED_CUBE.is_file() and (size, bands) == (145, 200):
        from hsi.data.readers.io import read_array

        return read_array(SHARED_CUBE, None, 3, "cube").astype(np.float32), "8-bit Indian Pines"
    rng = np.random.default_rng(0)
    return rng.standard_normal((size, size, bands)).astype(np.float32), "random"


def notebook_logits(net: torch.nn.Module, reduced: np.ndarray) -> torch.Tensor:
    """Materialise every window (float64), then predict batches of 32."""
    m = PATCH // 2
    padded = np.zeros((reduced.shape[0] + 2 * m, reduced.shape[1] + 2 * m, reduced.shape[2]))
    padded[m:-m, m:-m] = reduced
    h, w = reduced.shape[:2]
    windows = np.zeros((h * w, PATCH, PATCH, reduced.shape[2]))
    for i, (r, c) in enumerate(np.ndindex(h, w)):
        windows[i] = padded[r:r + PATCH, c:c + PATCH]
    out = []
    with torch.inference_mode():
        for start in range(0, len(windows), 32):
            batch = windows[start:start + 32].transpose(0, 3, 1, 2)[:, None]
            out.append(net(torch.from_numpy(batch).float()))
    return torch.cat(out)


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=145)
    parser.add_argument("--bands", type=int, default=200)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-notebook", action="store_true")
    parser.add_argument("--model", default="hybridsn",
                        help="a conf/model/<name>.yaml with a dense-capable net")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cube, source = load_cube(args.size, args.bands)
    reduced = fit_pca(cube.reshape(-1, cube.shape[2]), COMPONENTS)(cube)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    net_cfg = OmegaConf.load(CONFIG_DIR / "model" / f"{args.model}.yaml").net
    net = instantiate(net_cfg, in_bands=COMPONENTS, patch_size=PATCH, num_classes=CLASSES).eval()
    padded = pad_cube(reduced, PATCH)
    h, w = reduced.shape[:2]
    coords = np.stack(np.indices((h, w)).reshape(2, -1), axis=1)
    print(f"{type(net).__name__} on a {h}x{w}x{cube.shape[2]} cube ({source}), {h * w} pixels, "
          f"{torch.get_num_threads()} threads")

    dense, t_dense = timed(dense_logits, net, padded, PATCH)
    windows, t_windows = timed(window_logits, net, padded, coords, PATCH, 64)
    dense_labels = dense.argmax(0).reshape(-1)
    assert torch.equal(dense_labels, windows.argmax(1)), "dense and window labels differ"
    gap = (dense.reshape(CLASSES, -1).T - windows).abs().max()
    print(f"max |dense - window| logit difference: {gap:.2e}")
    rows = [("dense (hsi.run.inference.dense_logits)", t_dense),
            ("windows, batch 64 (hsi.run.inference.window_logits)", t_windows)]
    if not args.skip_notebook:
        notebook, t_notebook = timed(notebook_logits, net, reduced)
        assert torch.equal(dense_labels, notebook.argmax(1)), "dense and notebook labels differ"
        rows.append(("notebook: materialise windows, batch 32", t_notebook))
    print("\n| path | seconds | vs dense |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / t_dense:.1f}x |")


if __name__ == "__main__":
    main()
