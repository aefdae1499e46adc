"""Prediction cost against scene size: in memory vs streamed, side by side.

Tiled copies (n x n) of the real 8-bit Indian Pines cube (145 x 145 x 200) are written as float32
GeoTIFFs (UTM, in strips) and classified by the same network and PCA (cnn2d, 9-pixel windows, 30
components, fitted on the cube; random weights: the cost does not depend on training) through
`hsi.run.raster_driver`: the whole raster in memory, then streamed block by block. Each run is its own
process, which reports its peak resident memory (ru_maxrss); the two maps are compared pixel by
pixel. Prints a markdown table.

    OMP_NUM_THREADS=1 python bench/scale.py --tiles 1 2 4 8 --stream-only 11 --work /tmp/scale
    OMP_NUM_THREADS=1 python bench/scale.py --tiles 2x3 --stream-only 11 --work /tmp/scale  # 0.10 vs 2 GB

`--train`: a short training run instead (cnn2d, 9-pixel windows, PCA 30 fitted on a 100,000-pixel
sample, 1 epoch of 5 batches, 2 validation and 2 test batches, no map) on the same rasters with
the tiled Indian Pines ground truth as a label raster: the scene read in memory (`data.stream=false`)
vs built block by block with its reduced cube memory-mapped (`data.stream=true
data.memmap_above_mb=0`). Peak RSS and seconds of the whole run, each in its own process.

    OMP_NUM_THREADS=1 python bench/scale.py --train --tiles 1 2 4 8 --stream-only 11 --work /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CUBE = ROOT.parent / "shared" / "data" / "indian_pines_8bit" / "IP_200_M.mat"
GT = ROOT.parent / "shared" / "data" / "indian_pines" / "Indian_pines_gt.mat"
PATCH, COMPONENTS, CLASSES = 9, 30, 16


def tiles(text: str) -> tuple[int, int]:
    """`n` (n x n copies) or `RxC` (R rows by C columns of copies, e.g. 2x3 for a ~100 MB scene)."""
    rows, _, cols = text.lower().partition("x")
    return int(rows), int(cols or rows)


def label(grid: tuple[int, int]) -> str:
    return f"{grid[0]}x{grid[1]}"


def write_tiled(path: Path, cube: np.ndarray, grid: tuple[int, int]) -> Path:
    """R x C copies of `cube` as a float32 GeoTIFF, written one row of copies at a time."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    h, w, b = cube.shape
    n, m = grid
    if path.is_file():
        return path
    tmp = path.with_suffix(".part.tif")
    profile = {"driver": "GTiff", "height": h * n, "width": w * m, "count": b, "dtype": "float32",
               "crs": "EPSG:32616", "transform": from_origin(500000.0, 4500000.0, 20.0, 20.0),
               "BIGTIFF": "YES", "nodata": -1.0}  # strips (untiled): the file is the scene's size
    band_first = np.ascontiguousarray(np.moveaxis(cube, -1, 0).astype(np.float32))
    row = np.tile(band_first, (1, 1, m))
    with rasterio.open(tmp, "w", **profile) as ds:
        for i in range(n):
            ds.write(row, window=Window(0, i * h, w * m, h))
    tmp.rename(path)
    return path


def write_tiled_labels(path: Path, grid: tuple[int, int]) -> Path:
    """R x C copies of the Indian Pines ground truth as a uint8 label raster on the cube's grid."""
    import rasterio
    from rasterio.transform import from_origin

    from hsi.data.readers.io import read_array

    gt = np.tile(read_array(GT, None, 2, "ground truth").astype(np.uint8), grid)
    with rasterio.open(path, "w", driver="GTiff", height=gt.shape[0], width=gt.shape[1], count=1,
                       dtype="uint8", crs="EPSG:32616",
                       transform=from_origin(500000.0, 4500000.0, 20.0, 20.0)) as ds:
        ds.write(gt, 1)
    return path


def train_worker(raster: Path, labels: Path, mode: str, out: Path) -> dict:
    """One short training run in this process (`hsi.train`'s code path): seconds and peak RSS."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from hsi.run.config import CONFIG_DIR
    from hsi.run.training import train

    overrides = ["data=custom", f"data.cube_path={raster}", f"data.gt_path={labels}",
                 f"data.patch_size={PATCH}",
                 f"data.pca.components={COMPONENTS}", "data.pca.sample=100000", "data.pca.cache=false",
                 f"data.stream={'true' if mode == 'stream' else 'false'}", "data.memmap_above_mb=0",
                 "model=cnn2d", "trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=5",
                 "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2", "logger=none", "map=false",
                 "callbacks.progress_bar.refresh_rate=0"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    start = time.perf_counter()
    metrics = train(cfg)
    done = resource.getrusage(resource.RUSAGE_SELF)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {"seconds": time.perf_counter() - start, "cpu_seconds": done.ru_utime + done.ru_stime,
            "rss_mb": done.ru_maxrss / 1024, "data": metrics["data"],
            # at the end: the process's own memory vs the mapped file's pages (page cache, reclaimable)
            "end_anon_mb": int(status["RssAnon"].split()[0]) / 1024,
            "end_file_mb": int(status["RssFile"].split()[0]) / 1024}


def train_table(args: argparse.Namespace, cube: np.ndarray) -> None:
    """--train: peak RSS of a short training run against scene size, in memory vs streamed."""
    rows = []
    for n in sorted({*args.tiles, *args.stream_only}, key=lambda g: g[0] * g[1]):
        raster = write_tiled(args.work / f"ip_{label(n)}.tif", cube, n)
        labels = write_tiled_labels(args.work / f"ip_gt_{label(n)}.tif", n)
        result = {}
        for mode in ("memory", "stream") if n in args.tiles else ("stream",):
            cmd = [sys.executable, __file__, "--train-worker", str(raster), str(labels), mode,
                   str(args.work / f"train_{label(n)}_{mode}"), "--work", str(args.work)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False,
                                  env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                       "PATH": "/usr/bin:/bin", "HSI_CACHE_DIR": str(args.work / "cache")})
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            result[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        row = {"n": label(n), "gb": raster.stat().st_size / 1e9, **result}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            raster.unlink()
    print("\n| tiles | GeoTIFF (GB, float32) | in memory: peak RSS (MB) | s "
          "| streamed + memmap: peak RSS (MB) | s | reduced cube (MB) | PCA fitted on (pixels) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["stream"]
        m = r.get("memory")
        memory = f"{m['rss_mb']:.0f} | {m['seconds']:.0f}" if m else "not run | -"
        print(f"| {r['n'].replace('x', ' x ')} | {r['gb']:.2f} | {memory} | "
              f"{s['rss_mb']:.0f} | {s['seconds']:.0f} | {s['data'].get('reduced_mb')} | "
              f"{s['data'].get('pca_fit_pixels')} |")


def setup(work: Path) -> Path:
    """The cube as float32 and its fitted PCA, saved for the workers."""
    from hsi.data.preprocessing import fit_pca
    from hsi.data.readers.io import read_array

    work.mkdir(parents=True, exist_ok=True)
    cube = read_array(CUBE, None, 3, "cube").astype(np.float32)
    np.save(work / "cube.npy", cube)
    pca = fit_pca(cube.reshape(-1, cube.shape[2]), COMPONENTS, seed=0)
    np.savez(work / "pca.npz", mean=pca.mean, components=pca.components, scale=pca.scale)
    return work / "cube.npy"


def worker(raster: Path, mode: str, out: Path, work: Path) -> dict:
    """One prediction in this process: seconds and peak RSS."""
    import torch

    from hsi.models import CNN2D
    from hsi.run.checkpoint_raster import NetworkBackend
    from hsi.run.raster_driver import RasterSettings, predict_raster

    pca = dict(np.load(work / "pca.npz"))
    state = {"raw_bands": 200, "scene": "indian_pines_8bit", "patch_size": PATCH,
             "pca": {k: torch.as_tensor(v) for k, v in pca.items()},
             "class_names": [f"class_{k}" for k in range(1, CLASSES + 1)]}
    torch.manual_seed(0)
    net = CNN2D(COMPONENTS, PATCH, CLASSES).eval()
    out.mkdir(parents=True, exist_ok=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = predict_raster(NetworkBackend(net, state), raster, out, mode != "memory",
                            RasterSettings(progress=False))
    seconds = time.perf_counter() - start
    done = resource.getrusage(resource.RUSAGE_SELF)
    cpu = done.ru_utime + done.ru_stime - usage.ru_utime - usage.ru_stime  # the machine is shared
    rss = done.ru_maxrss / 1024  # kB -> MB (Linux)
    return {"seconds": seconds, "cpu_seconds": cpu, "rss_mb": rss,
            "pixels": result.info.height * result.info.width,
            "block_rows": result.block_rows}


def run_worker(raster: Path, mode: str, out: Path, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(raster), mode, str(out), "--work", str(work)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_labels(a: Path, b: Path) -> bool:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(a) as x, rasterio.open(b) as y:
        for row in range(0, x.height, 512):
            window = Window(0, row, x.width, min(512, x.height - row))
            if not np.array_equal(x.read(1, window=window), y.read(1, window=window)):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=tiles, nargs="+", default=[(1, 1), (2, 2), (4, 4), (8, 8)],
                        help="n (n x n copies) or RxC, both paths")
    parser.add_argument("--stream-only", type=tiles, nargs="*", default=[],
                        help="n or RxC copies, streamed only (too large to read whole here)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hsi_scale"))
    parser.add_argument("--keep", action="store_true", help="keep the GeoTIFFs")
    parser.add_argument("--worker", nargs=3, metavar=("RASTER", "MODE", "OUT"))
    parser.add_argument("--train", action="store_true", help="a short training run instead of prediction")
    parser.add_argument("--train-worker", nargs=4, metavar=("RASTER", "LABELS", "MODE", "OUT"))
    args = parser.parse_args()
    if args.train_worker:
        raster, labels, mode, out = args.train_worker
        print(json.dumps(train_worker(Path(raster), Path(labels), mode, Path(out))))
        return
    if args.worker:
        raster, mode, out = args.worker
        print(json.dumps(worker(Path(raster), mode, Path(out), args.work)))
        return
    cube = np.load(setup(args.work))
    if args.train:
        train_table(args, cube)
        return
    rows = []
    for n in sorted({*args.tiles, *args.stream_only}, key=lambda g: g[0] * g[1]):
        raster = write_tiled(args.work / f"ip_{label(n)}.tif", cube, n)
        modes = ["memory", "stream"] if n in args.tiles else ["stream"]
        out = {m: args.work / f"out_{label(n)}_{m}" for m in modes}
        result = {m: run_worker(raster, m, out[m], args.work) for m in modes}
        same = (same_labels(out["memory"] / "prediction.tif", out["stream"] / "prediction.tif")
                if len(modes) == 2 else None)
        pixels = result["stream"]["pixels"]
        row = {"n": label(n), "shape": f"{145 * n[0]} x {145 * n[1]}", "gb": raster.stat().st_size / 1e9,
               "mpx": pixels / 1e6, "same": same,
               **{f"{m}_{k}": v for m, r in result.items() for k, v in r.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            raster.unlink()
    print("\n| tiles | pixels (H x W) | GeoTIFF (GB, float32) | in memory: s / Mpx (CPU s / Mpx) "
          "| in memory: peak RSS (MB) | streamed: s / Mpx (CPU s / Mpx) | streamed: peak RSS (MB) "
          "| block rows | labels identical |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        memory = (f"{r['memory_seconds'] / r['mpx']:.1f} ({r['memory_cpu_seconds'] / r['mpx']:.1f}) | "
                  f"{r['memory_rss_mb']:.0f}" if "memory_seconds" in r else "not run | not run")
        same = {True: "yes", False: "NO", None: "-"}[r["same"]]
        print(f"| {r['n'].replace('x', ' x ')} | {r['shape']} | {r['gb']:.2f} | {memory} | "
              f"{r['stream_seconds'] / r['mpx']:.1f} ({r['stream_cpu_seconds'] / r['mpx']:.1f}) | "
              f"{r['stream_rss_mb']:.0f} | {r['stream_block_rows']} | "
              f"{same} |")


if __name__ == "__main__":
    main()
