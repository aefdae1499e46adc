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

# dense: validation and test on row tiles (5 rows each: 5 tiles for 24 rows, so the sampler
# repeats one on the second process)
EVAL_PATHS = {"window": ["data.eval_path=window"],
              "dense": ["data.eval_path=dense", "data.eval_tile_rows=5"]}


@pytest.mark.slow
@pytest.mark.parametrize("eval_path", list(EVAL_PATHS))
def test_ddp_cpu_test_metrics_equal_a_single_process_evaluation(tmp_path: Path, eval_path: str) -> None:
    run = tmp_path / "run"
    overrides = [o for o in FAST_SYNTHETIC if not o.startswith("trainer=")]
    cmd = [sys.executable, "-m", "hsi.train", *overrides, *EVAL_PATHS[eval_path], "trainer=ddp_cpu",
           "trainer.max_epochs=4", "map=false", "logger=none", "seed=3", f"hydra.run.dir={run}"]
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

    # the same weights tested window by window in one process: the same predictions
    import lightning as L

    from hsi.run.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(trained["checkpoint"])
    assert checkpoint.data["eval_path"] == eval_path
    model = checkpoint.classifier("cpu")
    windows = checkpoint.datamodule(eval_path="window")
    L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False).test(
        model, datamodule=windows, verbose=False)
    for key in ("oa", "aa", "kappa"):
        assert model.test_report[key] == pytest.approx(trained[key]), key
    assert np.array_equal(np.array(model.test_report["confusion_matrix"]), confusion)
