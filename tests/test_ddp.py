"""`trainer=ddp_cpu`: two processes train; rank zero alone writes; the test counts each pixel once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAST_SYNTHETIC, PROJECT_ROOT, compose_config


@pytest.mark.slow
def test_ddp_cpu_test_metrics_equal_a_single_process_evaluation(tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [o for o in FAST_SYNTHETIC if not o.startswith("trainer=")]
    cmd = [sys.executable, "-m", "hsi.train", *overrides, "trainer=ddp_cpu", "trainer.max_epochs=4",
           "map=false", "logger=none", "seed=3", f"hydra.run.dir={run}"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    assert (run / "train_ddp_process_1.log").is_file()  # the second rank ran, into the same folder
    assert (run / "train.log").read_text().count("Test OA") == 1  # only rank zero reported
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # and nothing else was written
    trained = json.loads((run / "metrics.json").read_text())
    confusion = np.loadtxt(run / "confusion_matrix.csv", delimiter=",", skiprows=1,
                           usecols=range(1, 5))
    assert confusion.sum() == trained["n_test"]  # the sampler's padding is not counted

    from hsi.evaluate import evaluate

    out = tmp_path / "evaluate"
    single = evaluate(compose_config("evaluate", [f"ckpt_path={trained['checkpoint']}", "logger=none",
                                                  "map=false", "trainer.accelerator=cpu"], out))
    for key in ("oa", "aa", "kappa", "per_class_accuracy", "n_test"):
        assert single[key] == pytest.approx(trained[key]), key
    assert (out / "confusion_matrix.csv").read_text() == (run / "confusion_matrix.csv").read_text()
