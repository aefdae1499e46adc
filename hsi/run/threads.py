"""Torch threads of one run: `threads=<n>`, or under `hydra/launcher=parallel` a share of the
cores (cores // n_jobs), so parallel jobs do not run more busy threads than there are cores."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from omegaconf import DictConfig

from hsi.errors import ConfigError

log = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_jobs(hydra_cfg: Any) -> int | None:
    """The number of jobs a joblib launcher runs at once (None: not a parallel launcher)."""
    launcher = (hydra_cfg or {}).get("launcher") or {}
    if "Joblib" not in str(launcher.get("_target_", "")):
        return None
    n_jobs = launcher.get("n_jobs")
    cores = available_cores()
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    return cores if n_jobs < 0 else n_jobs  # joblib: -1 is one job per core


def threads_for(cfg: DictConfig, hydra_cfg: Any = None) -> int | None:
    """`cfg.threads` if set; under a parallel launcher cores // n_jobs (at least 1); else None
    (torch's default)."""
    threads = cfg.get("threads")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads={threads!r} must be a whole number >= 1 (torch threads of this "
                              f"run), or null for the default.")
        return threads
    jobs = parallel_jobs(hydra_cfg)
    if jobs is None:
        return None
    return max(1, available_cores() // jobs)


def set_threads(cfg: DictConfig, hydra_cfg: Any = None) -> int:
    """Set torch's threads as `threads_for` says; return the number this run uses."""
    threads = threads_for(cfg, hydra_cfg)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        log.info("torch threads: %d (%s)", threads, "threads=" if cfg.get("threads") is not None
                 else f"{available_cores()} cores shared by the parallel launcher's jobs")
    return torch.get_num_threads()
