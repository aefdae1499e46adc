"""A real Slurm: `bench/slurm_local.sh` starts a single-node Slurm (slurm-wlm, munge) and checks that
a 4-job multirun through `hydra/launcher=slurm` and a 4-trial search whose two workers are Slurm
jobs equal the same sweeps run locally. Needs root and the distribution's packages: slow, and
skipped where it cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytest.importorskip("optuna", reason="install the project's `search` extra")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="install the project's `cluster` extra")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="bench/slurm_local.sh installs packages and starts daemons")
def test_slurm_sweeps_equal_local_ones(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(PROJECT_ROOT / "bench" / "slurm_local.sh"), str(tmp_path)],
                            env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Slurm equals local: True" in result.stdout
    assert "4 local jobs, 4 Slurm jobs" in result.stdout and "4 trials by 2 Slurm workers" in result.stdout
