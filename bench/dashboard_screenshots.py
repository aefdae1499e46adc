"""The TensorBoard dashboard as a user sees it: a 2 x 2 sweep, TensorBoard on localhost, headless
Chromium screenshots of Time Series and HPARAMS, and checks through TensorBoard's own HTTP data
API that the HPARAMS table lists the swept keys with their values and the run's metrics.

    python bench/dashboard_screenshots.py [--epochs 6] [--out docs/img] [--keep DIR]

Runs `python -m hsi.train -m data=synthetic model=cnn2d data.patch_size=9,11 data.pca.components=8,10`
(tiny epochs) into `<DIR>/outputs/train/multiruns/<timestamp>`, starts
`tensorboard --logdir <DIR>/outputs` (as a user would, on all of `outputs`), and writes
`dashboard_time_series.png` and `dashboard_hparams.png` to `--out`. Needs Debian's `chromium`
(`apt-get install chromium`). Exits 1 with the failed checks listed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["data=synthetic", "model=cnn2d", "data.patch_size=9,11", "data.pca.components=8,10"]
TINY = ["data.height=32", "data.width=32", "data.bands=40", "trainer=cpu",
        "callbacks.progress_bar.refresh_rate=0", "map=true"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base: str, path: str, request: dict | None = None) -> object:
    url = base + path + ("?request=" + urllib.parse.quote(json.dumps(request)) if request else "")
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def run_sweep(outputs: Path, epochs: int) -> Path:
    sweep_dir = outputs / "train" / "multiruns" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    cmd = [sys.executable, "-m", "hsi.train", "-m", *SWEEP, *TINY, f"trainer.max_epochs={epochs}",
           f"hydra.sweep.dir={sweep_dir}"]
    print("$", " ".join(cmd[1:]), flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"the sweep failed:\n{result.stderr[-3000:]}")
    print(f"sweep: 4 jobs in {time.perf_counter() - start:.0f} s -> {sweep_dir}")
    return sweep_dir


def start_tensorboard(logdir: Path, port: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
           "--port", str(port), "--reload_interval", "1"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if get(base, "/data/runs"):
                return process, base
        except OSError:
            pass
        time.sleep(1)
    process.kill()
    sys.exit("TensorBoard did not answer within 120 s")


def check_api(base: str) -> list[str]:
    """What the HPARAMS table and Time Series show, read from TensorBoard's data API; the
    failed checks."""
    failed: list[str] = []
    experiment = get(base, "/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = experiment.get("hparamInfos", [])
    names = [i["name"] for i in infos]
    shown = names[:5]  # the HPARAMS frontend ticks the first five (differing ones first)
    print("HPARAMS columns ticked by default:", shown)
    for key in ("data.patch_size", "data.pca.components"):
        if key not in shown:
            failed.append(f"{key} is not among the columns shown by default ({shown})")
    by_name = {i["name"]: i for i in infos}
    patch = by_name.get("data.patch_size", {})
    if patch.get("domainInterval") != {"minValue": 9, "maxValue": 11} or not patch.get("differs"):
        failed.append(f"data.patch_size's domain is {patch}")
    strings = [i for i in infos if i.get("type") == "DATA_TYPE_STRING"]
    undomained = [i["name"] for i in strings if "domainDiscrete" not in i]
    if undomained:
        failed.append(f"string hparams without discrete values (HPARAMS cannot filter them): {undomained}")
    for key in ("data_dir", "num_workers", "pin_memory", "download", "data.pca.cache"):
        if any(n == key or n.endswith("." + key) for n in names):
            failed.append(f"bookkeeping key {key} among the hparams")
    metrics = [m["name"]["tag"] for m in experiment.get("metricInfos", [])]
    print("HPARAMS metric columns:", metrics)
    if "summary/OA_test" not in metrics[:5] or "summary/OA_val_best" not in metrics[:5]:
        failed.append(f"OA is not among the metric columns shown by default ({metrics[:5]})")

    groups = get(base, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": n} for n in names] + [{"metric": {"tag": m}} for m in metrics]})
    rows = groups.get("sessionGroups", [])
    values = sorted({(g["hparams"].get("data.patch_size"), g["hparams"].get("data.pca.components"))
                     for g in rows})
    print(f"HPARAMS rows: {len(rows)}; (data.patch_size, data.pca.components): {values}")
    if values != [(9, 8), (9, 10), (11, 8), (11, 10)]:
        failed.append(f"the table's rows hold {values}, not the sweep's 2 x 2")
    for group in rows:
        got = {m["name"]["tag"] for s in group["sessions"] for m in s.get("metricValues", [])}
        if not {"summary/OA_test", "summary/OA_val_best", "summary/AA_test", "summary/kappa_test"} <= got:
            failed.append(f"session group {group['name']} lacks metric values: {sorted(got)}")
    for group in rows[:4]:
        session = group["sessions"][0]
        oa = {m["name"]["tag"]: m["value"] for m in session.get("metricValues", [])}.get("summary/OA_test")
        print(f"  {session['name']}: test OA {oa}")

    tags = get(base, "/data/plugin/scalars/tags")
    runs = [r for r in tags if "curves/OA_val" in tags[r]]
    print(f"Time Series: {len(runs)} runs with curves/OA_val, e.g. {runs[:1]}")
    if len(runs) != 4:
        failed.append(f"{len(runs)} runs with learning curves, not 4")
    for run in runs:
        if "/tensorboard/" not in run or "patch_size=" not in run or "components=" not in run:
            failed.append(f"run name {run!r} does not say its overrides")
    text = get(base, "/data/plugin/text/tags")
    if not any({"run/config/text_summary", "run/sweep/text_summary"} <= set(t) for t in text.values()):
        failed.append("no run with the config and sweep text")
    return failed


def screenshot(chromium: str, url: str, path: Path, profile: Path, wait_ms: int, size: str) -> list[str]:
    """Save the page as PNG; return the page's console warnings about hparams domains."""
    cmd = [chromium, *CHROMIUM_FLAGS, f"--window-size={size}", f"--user-data-dir={profile}",
           f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if not path.is_file():
        sys.exit(f"chromium wrote no screenshot of {url}:\n{result.stderr[-2000:]}")
    print(f"{url} -> {path}")
    return [line for line in result.stderr.splitlines() if "cannot process domain type" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--wait-ms", type=int, default=20000, help="virtual time for the page to render")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium: apt-get install chromium")
    work = args.keep or Path(tempfile.mkdtemp(prefix="hsi_dashboard_"))
    outputs = work / "outputs"
    run_sweep(outputs, args.epochs)
    process, base = start_tensorboard(outputs, free_port())
    try:
        time.sleep(3)  # one more reload, so every event file is read
        failed = check_api(base)
        args.out.mkdir(parents=True, exist_ok=True)
        profile = Path(tempfile.mkdtemp(prefix="chromium_"))
        # SVG line charts: the default WebGL ones render in a worker that headless Chromium
        # sometimes screenshots before it has drawn
        screenshot(chromium, f"{base}/?forceSVG=true#timeseries", args.out / "dashboard_time_series.png",
                   profile, args.wait_ms, "1600,1250")
        warnings = screenshot(chromium, f"{base}/#hparams", args.out / "dashboard_hparams.png", profile,
                              args.wait_ms, "2300,640")
        if warnings:  # what the issue saw in the console: string hparams HPARAMS cannot filter
            failed.append(f"the HPARAMS page warns: {warnings[:3]}")
        shutil.rmtree(profile, ignore_errors=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print("FAILED:\n  " + "\n  ".join(failed))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
