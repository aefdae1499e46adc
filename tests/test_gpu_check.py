"""bench/gpu_check.sh, the GPU check of issue 33, runs its steps on the CPU with --dry-run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsi.run.config import PROJECT_ROOT


@pytest.mark.slow
def test_gpu_check_dry_run_writes_its_table(tmp_path: Path) -> None:
    env = os.environ | {"PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    script = PROJECT_ROOT / "bench" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script), "--dry-run", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = (tmp_path / "gpu_check.md").read_text()
    for step in ("train_fp32", "train_bf16", "train_auto", "ddp_auto", "map_fp32", "map_bf16"):
        assert f"| {step} |" in table
    assert "| train_auto | auto -> " in table and "labels equal the fp32 labels" in table
