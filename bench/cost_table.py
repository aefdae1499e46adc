"""The cost table: every network of conf/model at its own window, training, inference, dense maps
and ONNX fp32 / int8, each network's variants measured back to back in one process.

    OMP_NUM_THREADS=1 python bench/cost_table.py [--models li hybridsn ...] [--seconds 3] [--json out.json]

Per network (the walk of `hsi.models.zoo.network_configs`, as `hsi.profile all=true` walks it):

- its window: the leaderboard's (conf/leaderboard/*.yaml; of several rows, the window nearest its
  reference's, else nearest 9x9), else its reference's window, else 9x9; 1x1 for the networks
  that read only the centre pixel's spectrum; never below its smallest window;
- `--bands` (30, the PCA components of the recipe) bands, or the network's smallest band count
  where that is more (chen: 94), `--classes` (16) classes;
- params and MACs per window (`hsi.models.cost`);
- train windows/s: bench/model_speed.py's training step (forward, cross-entropy, backward, Adam) on a
  batch of 32, fp32 and bf16-mixed (autocast, as Lightning's `bf16-mixed`), interleaved;
- infer windows/s: eval and inference mode, torch fp32, a batch of 256 windows;
- dense-map pixels/s where the network declares a dense form (`hsi.run.inference.scene_logits` on a
  48x48 scene, tile rows 16), and its ratio to the window path;
- ONNX fp32 and int8: the graph `hsi.export` writes (`hsi.deploy.graphs.network_graphs`: the dense
  scene graph over a 48x48 tile where the network is dense, else the window graph over 256
  windows), quantized by `hsi.deploy.quantize.quantize_int8` (what `hsi.export quantize=int8` calls)
  calibrated on random windows / tiles (speed only: the weights are random), onnxruntime with one
  intra-op thread, fp32 and int8 interleaved; a refusal is printed instead (its one line).

Each figure is the median over repeats that fill `--seconds` per measurement (at least 2, after a
warm-up): the slow networks (hit, mambahsi, spectralformer, gaht) get fewer repeats, the count is in
the JSON. Random weights and inputs: speed only, no accuracy. Absolute numbers depend on the load of
the machine (printed with the CPU); the ratios within a row are measured back to back.
"""

from __future__ import annotations

import argparse
import os

if __name__ == "__main__":  # before torch / numpy start their thread pools
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_speed import Trainer, infer_time  # noqa: E402

from hsi.errors import HsiError, first_line  # noqa: E402
from hsi.models.cost import count_macs, count_parameters, window_shape  # noqa: E402
from hsi.models.zoo import build_network, network_class, network_configs, smallest_input  # noqa: E402
from hsi.run.config import CONFIG_DIR  # noqa: E402
from hsi.utils.hardware import cpu_flags  # noqa: E402

SCENE = 48  # side of the dense-map scene and of the ONNX dense tile
DEFAULT_WINDOW = 9


# -- which window ----------------------------------------------------------------------------
def leaderboard_windows(folder: Path = CONFIG_DIR / "leaderboard") -> dict[str, set[int]]:
    """{model name: the windows of its leaderboard rows} (rows that set data.patch_size)."""
    windows: dict[str, set[int]] = {}
    for path in sorted(folder.glob("*.yaml")):
        row = OmegaConf.load(path)
        model = next((item["override /model"] for item in row.get("defaults", [])
                      if isinstance(item, DictConfig) and "override /model" in item), None)
        patch = OmegaConf.select(row, "data.patch_size")
        if model is not None and patch is not None:
            windows.setdefault(model, set()).add(int(patch))
    return windows


def cost_window(name: str, net_cfg: DictConfig, board: dict[str, set[int]]) -> tuple[int, str]:
    """(window, where it comes from) of network `name` for the cost table."""
    cls = network_class(net_cfg)
    smallest = smallest_input(net_cfg)[1]
    if cls.takes == "spectrum":
        return max(1, smallest), "spectrum (1x1)"
    reference = cls.reference.settings.get("patch_size") if cls.reference else None
    target = reference or DEFAULT_WINDOW
    if name in board:
        window = min(board[name], key=lambda w: (abs(w - target), w))
        return max(window, smallest), "leaderboard"
    if reference:
        return max(reference, smallest), "reference"
    return max(DEFAULT_WINDOW, smallest), "9x9"


# -- timing ----------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], Any]], seconds: float, min_reps: int = 2,
                max_reps: int = 50) -> tuple[dict[str, float], int]:
    """Median seconds of each callable, run in turn (one warm-up each) until `seconds` are spent."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    reps = 0
    while reps < min_reps or (time.perf_counter() - start < seconds and reps < max_reps):
        for key, fn in fns.items():
            times[key].append(timed(fn))
        reps += 1
    return {k: statistics.median(v) for k, v in times.items()}, reps


# -- the measurements -------------------------------------------------------------------------
def torch_costs(net_cfg: DictConfig, bands: int, patch: int, classes: int, seconds: float) -> dict[str, Any]:
    """Params, MACs, train fp32 / bf16 and inference windows/s, dense-map pixels/s."""
    from hsi.run.inference import scene_logits

    torch.manual_seed(0)
    nets = {p: build_network(net_cfg, bands, patch, classes) for p in ("fp32", "bf16")}
    nets["bf16"].load_state_dict(nets["fp32"].state_dict())
    row: dict[str, Any] = {"params": count_parameters(nets["fp32"]),
                           "macs": count_macs(nets["fp32"], window_shape(bands, patch))}
    trainers = {p: Trainer(net, bands, patch, classes, 32, bf16=p == "bf16") for p, net in nets.items()}
    train, reps = interleaved({p: t.step for p, t in trainers.items()}, seconds)
    row |= {"train_fp32": 32 / train["fp32"], "train_bf16": 32 / train["bf16"], "train_reps": reps}
    net = nets["fp32"].eval()
    x = torch.randn(256, *window_shape(bands, patch))
    runs: dict[str, Callable[[], Any]] = {"window": lambda: infer_time(net, x)}
    if network_class(net_cfg).dense:
        padded = torch.randn(bands, SCENE + patch - 1, SCENE + patch - 1)
        runs["dense"] = lambda: scene_logits(net, padded, patch, "dense", tile_rows=16)
    infer, reps = interleaved(runs, seconds)
    row |= {"infer": 256 / infer["window"], "infer_reps": reps}
    if "dense" in infer:
        row["dense"] = SCENE * SCENE / infer["dense"]
    return row


def _calibration(example: np.ndarray, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield rng.standard_normal(example.shape).astype(np.float32)


def onnx_costs(net_cfg: DictConfig, bands: int, patch: int, classes: int, seconds: float,
               folder: Path) -> dict[str, Any]:
    """ONNX fp32 and int8 windows (pixels) per second of the graph hsi.export writes, or why not."""
    import onnxruntime as ort

    from hsi.deploy.graphs import FILES, network_graphs
    from hsi.deploy.quantize import Int8Settings, quantize_int8

    torch.manual_seed(0)
    net = build_network(net_cfg, bands, patch, classes).eval()
    dense = network_class(net_cfg).dense
    try:
        files = network_graphs(net, bands, patch, None, classes, folder)
    except HsiError as error:
        return {"onnx_refused": first_line(error)}
    example = (np.zeros((1, bands, SCENE, SCENE), np.float32) if dense
               else np.zeros((256, *window_shape(bands, patch)), np.float32))
    calibration = (np.zeros((1, bands, patch, patch), np.float32) if dense
                   else np.zeros((32, *window_shape(bands, patch)), np.float32))
    out: dict[str, Any] = {"onnx_graph": "dense tile" if dense else "windows"}
    graphs = {"fp32": folder / files["fp32"]}
    try:
        quantize_int8(graphs["fp32"], folder / FILES["int8"], _calibration(calibration, 16 if dense else 4),
                      Int8Settings(), dense)
        graphs["int8"] = folder / FILES["int8"]
    except HsiError as error:
        out["int8_refused"] = first_line(error)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.log_severity_level = 3
    sessions = {}
    for key, path in graphs.items():
        try:
            sessions[key] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # an int8 graph its quantizer wrote invalid
            out[f"{key}_refused"] = f"onnxruntime cannot load the {key} graph: {first_line(error)}"
    x = np.random.default_rng(1).standard_normal(example.shape).astype(np.float32)
    name = sessions["fp32"].get_inputs()[0].name
    runs = {k: (lambda s=s: s.run(None, {name: x})) for k, s in sessions.items()}
    medians, reps = interleaved(runs, seconds)
    items = SCENE * SCENE if dense else 256
    out |= {f"onnx_{k}": items / v for k, v in medians.items()} | {"onnx_reps": reps}
    return out


def measure(name: str, net_cfg: DictConfig, board: dict[str, set[int]], args: argparse.Namespace) -> dict:
    patch, source = cost_window(name, net_cfg, board)
    bands = max(args.bands, smallest_input(net_cfg)[0])
    row: dict[str, Any] = {"model": name, "window": patch, "window_from": source, "bands": bands}
    start = time.perf_counter()
    try:
        row |= torch_costs(net_cfg, bands, patch, args.classes, args.seconds)
    except HsiError as error:
        row["refused"] = first_line(error)
    if "refused" not in row and not args.no_onnx:
        with tempfile.TemporaryDirectory(prefix="cost_table_") as folder:
            row |= onnx_costs(net_cfg, bands, patch, args.classes, args.seconds, Path(folder))
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


# -- the table ---------------------------------------------------------------------------------
def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _macs(value: int) -> str:
    return f"{value / 1e6:,.2f} M" if value >= 1e6 else f"{value / 1e3:,.1f} K"


def _ratio(num: float | None, den: float | None) -> str:
    return "—" if num is None or den is None else f"{num / den:.2f}x"


def table(rows: list[dict]) -> str:
    lines = ["| model | window | bands | params | MACs / window | train w/s fp32 | train w/s bf16 | "
             "bf16 / fp32 | infer w/s (torch fp32) | dense-map px/s | dense / window | ONNX graph | "
             "ONNX fp32 w/s | ONNX int8 w/s | int8 / fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['model']} | {r['window']} | {r['bands']} | refused: {r['refused']} |" +
                         " |" * 11)
            continue
        onnx = (f"refused: {r['onnx_refused']} | — | — | —" if "onnx_refused" in r else
                f"{r.get('onnx_graph', '—')} | {_rate(r.get('onnx_fp32'))} | " +
                (f"refused: {r['int8_refused']} | —" if "int8_refused" in r else
                 f"{_rate(r.get('onnx_int8'))} | {_ratio(r.get('onnx_int8'), r.get('onnx_fp32'))}"))
        lines.append(
            f"| {r['model']} | {r['window']}x{r['window']} | {r['bands']} | {r['params']:,} | "
            f"{_macs(r['macs'])} | {_rate(r['train_fp32'])} | {_rate(r['train_bf16'])} | "
            f"{_ratio(r['train_bf16'], r['train_fp32'])} | {_rate(r['infer'])} | {_rate(r.get('dense'))} | "
            f"{_ratio(r.get('dense'), r['infer'])} | {onnx} |")
    return "\n".join(lines)


def machine() -> str:
    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "avx512f", "avx2"})
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, flags "
            f"{' '.join(flags) or 'none of avx2/avx512'}; load average (1/5/15 min) {load}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="conf/model names (default: every network)")
    parser.add_argument("--bands", type=int, default=30)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (median of repeats)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX columns")
    parser.add_argument("--json", default=None, help="write the rows here too (after each network)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    networks = network_configs(CONFIG_DIR / "model")
    names = args.models or sorted(networks)
    board = leaderboard_windows()
    before = machine()
    print(f"start: {before}", flush=True)
    rows = []
    for name in names:
        rows.append(measure(name, networks[name], board, args))
        print(json.dumps(rows[-1]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine_start": before, "rows": rows}, indent=1) + "\n")
    print(f"\nend: {machine()}\n")
    print(f"{args.bands} bands (or the network's minimum), {args.classes} classes; train batch 32, infer "
          f"batch 256, dense map {SCENE}x{SCENE}; median of repeats filling {args.seconds:g} s each.\n")
    print(table(rows))


if __name__ == "__main__":
    main()
