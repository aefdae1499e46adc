"""`sweep=patch_pca` composes a grid; `python -m hsi.summarize` (alias `hsi.report`) summarises a real
multirun."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from hsi.run.config import CONFIG_DIR
from hsi.studies.summaries import format_mean_std
from hsi.studies.summaries import summarize as report
from tests.conftest import FAST_SYNTHETIC, PROJECT_ROOT


def test_patch_pca_sweep_composes_a_multirun_grid() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["sweep=patch_pca"], return_hydra_config=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN
    params = cfg.hydra.sweeper.params
    assert [int(v) for v in params["data.patch_size"].split(",")] == [11, 15, 19, 25]
    assert [int(v) for v in params["data.pca.components"].split(",")] == [15, 20, 30, 40]


@pytest.fixture(scope="module")
def multirun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 patch sizes x 2 seeds, one epoch each, on the synthetic scene."""
    sweep_dir = tmp_path_factory.mktemp("multirun")
    overrides = [o for o in FAST_SYNTHETIC if not o.startswith(("trainer=", "data.patch_size="))]
    cmd = [sys.executable, "-m", "hsi.train", "-m", *overrides, "trainer=cpu", "trainer.max_epochs=1",
           "map=false", "logger=none", "data.patch_size=9,11", "seed=0,1",
           f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


def _metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("command", ["hsi.summarize", "hsi.report"])
def test_report_summarises_every_job(multirun: Path, command: str) -> None:
    for stale in ("results.csv", "results.md", "oa_plot.png"):
        (multirun / stale).unlink(missing_ok=True)
    result = subprocess.run([sys.executable, "-m", command, str(multirun)], cwd=PROJECT_ROOT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _rows(multirun)
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    for row in rows:
        metrics = _metrics(multirun / row["job"])
        assert float(row["oa"]) == pytest.approx(metrics["oa"])
        assert float(row["kappa"]) == pytest.approx(metrics["kappa"])
        assert int(row["seed"]) == metrics["seed"] and row["status"] == "ok"
    assert sorted((r["data.patch_size"], r["seed"]) for r in rows) == [
        ("11", "0"), ("11", "1"), ("9", "0"), ("9", "1")]

    markdown = (multirun / "results.md").read_text()
    for patch in ("9", "11"):
        jobs = [multirun / r["job"] for r in rows if r["data.patch_size"] == patch]
        oa = [_metrics(j)["oa"] for j in jobs]
        expected = f"{np.mean(oa):.4f} ± {np.std(oa, ddof=1):.4f}"
        assert format_mean_std(oa) == expected
        assert f"| {patch} | 2 | {expected} |" in markdown
        leakage = np.mean([_metrics(j)["leakage"] for j in jobs])
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {patch} | 2 |"))
        head = next(line for line in markdown.splitlines() if line.startswith("| data.patch_size |"))
        cells = dict(zip([c.strip() for c in head.strip("|").split("|")],
                         [c.strip() for c in row.strip("|").split("|")]))
        assert cells["leakage"] == f"{leakage:.3f}"
        n_test = np.mean([_metrics(j)["n_test"] for j in jobs])
        assert cells["test px"] == f"{n_test:.0f}"
    assert "failed job" not in markdown
    # only the patch size varies: a 1-D plot of mean OA ± std instead of a heatmap
    assert (multirun / "oa_plot.png").stat().st_size > 0
    assert not (multirun / "oa_heatmap.png").exists()


def test_a_job_without_metrics_is_flagged_failed(multirun: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(multirun, copy, ignore=shutil.ignore_patterns("results.*", "*.png"))
    (copy / "2" / "metrics.json").unlink()
    summary = report(copy)
    assert summary["failed"] == ["2"]
    assert "Job 2 failed" in caplog.text
    rows = _rows(copy)
    assert len(rows) == 4
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok"]
    assert rows[2]["oa"] == ""
    markdown = (copy / "results.md").read_text()
    assert "**1 failed job(s)**" in markdown and "- job 2 (" in markdown
    patch = rows[2]["data.patch_size"]
    ok = [_metrics(copy / r["job"])["oa"] for r in rows if r["data.patch_size"] == patch and r["job"] != "2"]
    assert f"| {patch} | 1 | {ok[0]:.4f} ± 0.0000 |" in markdown


def test_heatmap_when_patch_size_and_pca_both_vary(multirun: Path, tmp_path: Path) -> None:
    """Relabel the copied jobs' PCA override so both heatmap axes vary."""
    copy = tmp_path / "copy"
    shutil.copytree(multirun, copy, ignore=shutil.ignore_patterns("results.*", "*.png"))
    for job in ("1", "3"):
        overrides = copy / job / ".hydra" / "overrides.yaml"
        overrides.write_text(overrides.read_text().replace("data.pca.components=15",
                                                           "data.pca.components=20"))
        config = copy / job / ".hydra" / "config.yaml"
        config.write_text(config.read_text().replace("components: 15", "components: 20"))
    assert report(copy)["figure"] == "oa_heatmap.png"
    assert (copy / "oa_heatmap.png").stat().st_size > 0


def test_report_refuses_a_folder_without_jobs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No job folders"):
        report(tmp_path)


@pytest.mark.parametrize(("launcher", "plugin", "expected"), [
    ("parallel", "hydra_plugins.hydra_joblib_launcher", {"n_jobs": 2}),
    ("slurm", "hydra_plugins.hydra_submitit_launcher", {"gpus_per_node": 1, "tasks_per_node": 1}),
])
def test_launcher_configs_compose(launcher: str, plugin: str, expected: dict) -> None:
    pytest.importorskip(plugin, reason="install the project's `parallel` / `cluster` extras")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["sweep=patch_pca", f"hydra/launcher={launcher}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.startswith(plugin)
    assert {k: cfg.hydra.launcher[k] for k in expected} == expected
