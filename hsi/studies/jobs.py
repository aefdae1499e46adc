"""The jobs of a multirun (or of a search): each job folder's overrides, metrics and split audit
read back, and the keys that tell its settings apart. `hsi.studies.summaries` tabulates them."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from hsi.data.compat import upgrade_metrics
from hsi.data.splits.leakage import AUDIT_WINDOWS, audit_split_file
from hsi.utils.files import LOCK_NAME
from hsi.utils.run_files import METRICS_FILE, MODEL_METADATA, PREDICTION_SUMMARY, SPLIT_FILE

log = logging.getLogger("hsi.summarize")

METRICS = ("oa", "aa", "kappa")
# the best validation OA of a job (the objective of a search), shown when recorded
VAL_METRIC = "val_oa"
# metrics.json `status` of a search's trial that did not run to its end on purpose or was cut off
# with its search (hsi.studies.search): listed apart, never counted as a failed job
STOPPED = {"pruned": "stopped early by the search's pruner",
           "interrupted": "its worker was killed; the resumed search did not count it"}
# the split audit (hsi.data.splits.leakage.split_audit): shares of test / validation pixels inside a
# training window of the run's size and of 7x7, 9x9, 25x25 (results.csv: all; results.md: these)
AUDIT_KEYS = tuple(f"{subset}_in_{w}" for subset in ("test", "val")
                   for w in ("window", *(f"{n}x{n}" for n in AUDIT_WINDOWS)))
@dataclass
class Job:
    """One job folder of a multirun."""

    name: str
    overrides: dict[str, Any]
    metrics: dict[str, Any] | None = None
    problem: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None  # the job's folder
    lines: list[str] = field(default_factory=list)  # its .hydra/overrides.yaml, as written
    setting_known: bool = True  # False: overrides.yaml missing or damaged (kept out of the table)

    @property
    def ok(self) -> bool:
        return self.metrics is not None and self.metrics.get("status") not in STOPPED

    @property
    def status(self) -> str:
        """`ok`, `failed`, or why a search stopped it (`pruned`, `interrupted`)."""
        if self.metrics is not None and self.metrics.get("status") in STOPPED:
            return self.metrics["status"]
        return "ok" if self.ok else "failed"


def _job_sort_key(path: Path) -> tuple[int, int | str]:
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def scalar(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


def parse_overrides(lines: list[str], config: dict[str, Any] | None) -> dict[str, Any]:
    """A job's overrides (Hydra's own parser) as {key: value}; deletions (`~key`) are skipped and
    values are taken from the job's config where it has them (interpolations resolved)."""
    out: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        if override.is_delete():
            continue
        key = override.key_or_group
        value: Any = override.value()
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, (int, float, str, bool)):
            value = node
        out[key] = scalar(value)
    return out


def read_job(folder: Path) -> Job:
    """A job's overrides and metrics; a missing or unreadable metrics.json marks it failed."""
    hydra_dir = folder / ".hydra"
    try:
        config = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        config = None
    damaged = ""
    try:
        lines = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise ValueError("not a list of overrides")
        overrides = parse_overrides(lines, config)
    except (OSError, yaml.YAMLError, ValueError, Exception) as error:  # noqa: BLE001 - any damage
        lines, overrides = [], {}
        damaged = (f".hydra/overrides.yaml is missing or damaged ({type(error).__name__}), so its setting "
                   f"is unknown; left out of the table")
    job = Job(folder.name, overrides, folder=folder, lines=list(lines), setting_known=not damaged)
    metrics_file = folder / METRICS_FILE
    if not metrics_file.is_file():
        job.problem = damaged or "no metrics.json (the job crashed, was killed or is still running)"
        return job
    try:
        metrics = upgrade_metrics(json.loads(metrics_file.read_text()))  # older runs' key names too
    except (OSError, json.JSONDecodeError) as error:
        job.problem = f"unreadable metrics.json: {error}"
        return job
    if damaged:
        job.problem = damaged
    elif isinstance(metrics, dict) and metrics.get("status") in STOPPED:
        job.metrics = metrics  # stopped by its search on purpose: listed apart, not a failure
    elif not isinstance(metrics, dict) or not all(is_number(metrics.get(m)) for m in METRICS):
        job.problem = f"metrics.json lacks a number for {', '.join(METRICS)} (not written by hsi.train?)"
    elif any(math.isnan(float(metrics[m])) for m in METRICS):
        job.problem = "metrics.json holds NaN metrics (the run diverged?)"
    else:
        job.metrics = metrics
        job.metrics.update(_audit(folder, job.metrics, config))
    return job


def _audit(folder: Path, metrics: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    """The job's split audit (`test_in_7x7`, ...): metrics.json's `audit`, or for runs written before
    it held one, computed from the run's split.npz and window (nothing when neither is there)."""
    audit = metrics.get("audit")
    if isinstance(audit, dict):
        return _audited(audit, metrics)
    patch_size = (config or {}).get("data", {}).get("patch_size") if isinstance(config, dict) else None
    if not (folder / SPLIT_FILE).is_file() or not isinstance(patch_size, int):
        return {}
    try:
        audit = audit_split_file(folder / SPLIT_FILE, patch_size)
    except (OSError, KeyError, ValueError) as error:
        log.warning("%s: no split audit (%s)", folder, error)
        return {}
    return _audited(audit, metrics)


def _audited(audit: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The audit's shares; none for validation when the run had no validation pixels."""
    no_val = metrics.get("n_val") == 0
    return {k: v for k, v in audit.items() if k != "window" and not (no_val and k.startswith("val_"))}


def find_jobs(multirun: Path) -> list[Job]:
    """Every job folder (one holding `.hydra/` or `metrics.json`) of `multirun`, by job number."""
    folders = [p for p in multirun.iterdir()
               if p.is_dir() and ((p / ".hydra").is_dir() or (p / METRICS_FILE).is_file())]
    other = [p for p in folders if not (p / METRICS_FILE).is_file()
             and any((p / name).is_file() for name in NOT_TRAINING)]
    if other:  # e.g. a folder of single runs holding export or predict runs: not failed trainings
        log.info("Left out %d folders of other commands (export / predict): %s", len(other),
                 ", ".join(sorted(p.name for p in other)))
    folders = [p for p in folders if p not in other]
    return [read_job(p) for p in sorted(folders, key=_job_sort_key)]


# files that mark the folder of another command than hsi.train (hsi.export, hsi.predict)
NOT_TRAINING = (MODEL_METADATA, PREDICTION_SUMMARY)


# overrides that name where a job went or which grid launched it, not what it trained: jobs of
# several starts of one grid (`--with`) that differ only in these are the same setting
BOOKKEEPING = ("task_name", "sweep", "hparams_search", "paths.log_dir", "paths.output_dir")


def is_bookkeeping(key: str) -> bool:
    return key in BOOKKEEPING or key.startswith("hydra.")


def varying_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs (or that only some jobs have), in order seen;
    bookkeeping keys (`task_name`, `sweep`, `hparams_search`, where outputs go: `paths.log_dir`,
    `paths.output_dir`, and `hydra.*`) left out."""
    return [k for k in all_keys(jobs) if not is_bookkeeping(k)
            and len({json.dumps(j.overrides.get(k)) for j in jobs}) > 1]


def all_keys(jobs: list[Job]) -> list[str]:
    """Every override key of any job, in order seen."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    return keys


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)




def unfinished_notes(multirun: Path, found: int) -> list[str]:
    """What says a multirun is not finished: its lock file (the sweep still runs, or was killed)
    and, for a grid (Hydra's basic sweeper), jobs of multirun.yaml's grid never started."""
    notes = []
    lock = multirun / LOCK_NAME
    if lock.exists():
        notes.append(f"its lock file {LOCK_NAME} is there (the sweep is still running, or was killed)")
    expected = expected_jobs(multirun)
    if expected is not None and found < expected:
        notes.append(f"{expected - found} of its {expected} jobs never started")
    return notes


def expected_jobs(multirun: Path) -> int | None:
    """The number of jobs of a grid sweep from multirun.yaml (None: unknown, e.g. a search)."""
    try:
        config = yaml.safe_load((multirun / "multirun.yaml").read_text())
        hydra_cfg = config["hydra"]
        if "BasicSweeper" not in str(hydra_cfg["sweeper"].get("_target_", "")):
            return None
        lines = list(hydra_cfg["overrides"]["task"] or [])
        params = hydra_cfg["sweeper"].get("params") or {}
        lines += [f"{key}={value}" for key, value in params.items()]
        count = 1
        for override in OverridesParser.create().parse_overrides(lines):
            if override.is_sweep_override():
                count *= len(list(override.sweep_string_iterator()))
        return count
    except Exception:  # noqa: BLE001 - no or an unreadable multirun.yaml: nothing to compare
        return None
