"""The engine of `python -m hsi.search`: an Optuna study of training runs on validation OA.

One search is one folder, `search.dir` (default `outputs/search/<study_name>`), and one study in
`search.storage` (default: a journal file in that folder, `optuna.journal`):

- every trial is one training run in `<search.dir>/<trial number>/`, composed from the command's
  config plus the sampled overrides, with the files of any run (`.hydra/overrides.yaml`,
  `metrics.json`, ...), so `python -m hsi.summarize <search.dir>` reads it like a multirun;
- the objective is the trial's best validation OA (`val_oa`), never a test metric;
- after each epoch the trial reports its validation OA; the configured pruner (`search/pruner=
  median|hyperband|none`) may stop it: the trial is PRUNED in the study, its folder's
  metrics.json says `"status": "pruned"` and its partial checkpoints are deleted;
- any number of worker processes (here, `search.workers=n`, or on other machines with the same
  command) share the study through the storage: a lock file in `search.dir` hands out trial
  numbers, so none is repeated, and the search stops at exactly `search.n_trials` finished
  (complete or pruned) trials, whichever worker finishes them;
- a killed search resumes with the same command: a RUNNING trial whose worker process is gone
  (same machine) is marked FAIL (`interrupted`), and new trials fill the count;
- the sampler is re-seeded for each trial with `search.sampler.seed + trial number`, so that
  workers and resumed starts never replay the same random settings, and a fresh search is
  reproducible.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra._internal.callbacks import Callbacks
from hydra.core.config_loader import ConfigLoader
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job
from hydra.types import HydraContext, RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import fail_stale_trials, get_heartbeat_thread, is_heartbeat_enabled
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hsi.data.datamodule import split_strategy
from hsi.errors import ConfigError, HsiError, MissingDependencyError, first_line
from hsi.run.training import train
from hsi.studies.pruning import ReportToTrial, build_pruner
from hsi.studies.space import override_line, search_space
from hsi.studies.summaries import summarize
from hsi.utils.files import (
    atomic_write_json,
    atomic_write_text,
    claim_run_folder,
    process_alive,
    release_run_folder,
)
from hsi.utils.reporting import deliberate_cause
from hsi.utils.run_files import METRICS_FILE, OPTUNA_RESULTS

log = logging.getLogger(__name__)

__all__ = ["SearchFailed", "check_validation_pixels", "open_storage", "run_search", "trial_overrides"]

JOURNAL = "optuna.journal"
LOCK = ".search.lock"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# a RUNNING trial with no worker recorded this long after it started was killed while being asked
UNCLAIMED_SECONDS = 120


class SearchFailed(HsiError):
    """A trial failed: the search stops (a bad setting should be seen, not averaged away)."""


def check_validation_pixels(cfg: DictConfig) -> None:
    """A search optimises validation OA: the split must keep validation pixels (the strategy's
    `no_validation` names the setting that leaves none)."""
    split = OmegaConf.select(cfg, "data.split")
    if split is None:
        return
    problem = split_strategy(split).no_validation()
    if problem is not None:
        setting, fix = problem
        raise ConfigError(f"{setting}: a search optimises validation OA, so {fix}.")


def open_storage(spec: str | None, folder: Path) -> BaseStorage:
    """`search.storage`: null (a journal file in the search folder), a journal file's path,
    `sqlite:///<file>` (one machine) or a database URL (`postgresql://...`, a cluster)."""
    if spec and "://" in spec:
        return _database(spec)
    path = Path(spec) if spec else folder / JOURNAL
    if path.is_dir():
        raise ConfigError(f"search.storage={spec} is a folder: name a journal file in it (e.g. "
                          f"search.storage={path / JOURNAL}), sqlite:///<file> or a database URL.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


# the driver SQLAlchemy needs for a database URL's scheme
DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "PyMySQL (and a mysql+pymysql:// URL)"}


def _database(spec: str) -> RDBStorage:
    """An Optuna database storage; a URL that cannot work is one line naming the fix."""
    import sqlalchemy.exc

    options: dict[str, Any] = {"heartbeat_interval": 60, "grace_period": 180}
    if spec.startswith("sqlite:///"):
        file = Path(spec.removeprefix("sqlite:///"))
        if file.is_dir():
            raise ConfigError(f"search.storage={spec} names a folder: give a database file, e.g. "
                              f"sqlite:///{file / 'study.db'}.")
        file.parent.mkdir(parents=True, exist_ok=True)
        options = {}
    scheme = spec.split("://", 1)[0]
    try:
        return RDBStorage(spec, **options)
    except ImportError:
        driver = DRIVERS.get(scheme.split("+", 1)[0], "its driver")
        raise MissingDependencyError(f"search.storage={spec}: SQLAlchemy has no driver for {scheme}:// here; "
                                     f"install {driver}, or leave search.storage unset for a journal "
                                     f"file in the search folder.") from None
    except sqlalchemy.exc.ArgumentError as error:  # an unknown scheme (NoSuchModuleError) or a bad URL
        raise ConfigError(f"search.storage={spec} is not a storage hsi can open ({first_line(error)}): give "
                          f"a journal file's path, sqlite:///<file> or a database URL such as "
                          f"postgresql://<user>@<host>/<database>.") from None
    except sqlalchemy.exc.OperationalError as error:
        raise ConfigError(f"search.storage={spec}: cannot open the database ({first_line(error)}); check "
                          f"the URL and that the server runs and lets you in.") from None


def describe_storage(spec: str | None, folder: Path) -> str:
    """What `optuna-dashboard` takes for this storage."""
    if spec and "://" in spec:
        return spec
    return str(Path(spec) if spec else folder / JOURNAL)


def _key(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~")


def trial_overrides(task_overrides: list[str]) -> list[str]:
    """The command's overrides every trial gets: its own, less the search's (`hparams_search`,
    `search.*`, `search/pruner`, `optimized_metric`), so that a trial composes exactly as
    `python -m hsi.train <its overrides>` does."""
    return [line for line in task_overrides
            if _key(line) not in ("hparams_search", "optimized_metric")
            and not _key(line).startswith(("search.", "search/"))]


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the search folder (released by the system if the process dies)."""
    with open(folder / LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(worker: str) -> bool | None:
    """Whether the worker `host:pid` runs (None: on another machine, cannot tell)."""
    host, _, pid = worker.rpartition(":")
    return process_alive(host, int(pid)) if pid.isdigit() else None


@dataclass
class Search:
    """One worker's view of the search: the study, its folder, what each trial is composed from."""

    cfg: DictConfig
    study: optuna.Study
    folder: Path
    space: dict[str, BaseDistribution]
    fixed: list[str]
    hydra_overrides: list[str]
    config_name: str
    loader: ConfigLoader
    hydra_cfg: DictConfig
    counts: dict[str, int] = field(default_factory=dict)
    failure: str = ""  # the last failed trial's error

    @property
    def n_trials(self) -> int:
        return int(self.cfg.search.n_trials)

    # --- handing out trials -------------------------------------------------------------
    def reap(self) -> None:
        """Mark FAIL the RUNNING trials whose worker died (a killed search), and note it in
        their folders."""
        if is_heartbeat_enabled(self.study._storage):  # a database: trials whose worker stopped beating
            for number in fail_stale_trials_of(self.study):
                mark_unfinished(self.folder / str(number), "interrupted", "its worker stopped beating")
        now = time.time()
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker")
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            dead = (_alive(worker) is False) if worker else now - started > UNCLAIMED_SECONDS
            if not dead:
                continue
            reason = f"interrupted: worker {worker or '(none recorded)'} is gone"
            self.study._storage.set_trial_user_attr(trial._trial_id, "interrupted", reason)
            self.study.tell(trial.number, state=TrialState.FAIL)
            log.warning("Trial %d: %s; marked FAIL, its setting is not counted", trial.number, reason)
            mark_unfinished(self.folder / str(trial.number), "interrupted", reason)

    def ask(self) -> optuna.Trial | None:
        """The next trial, or None when finished + running trials reach `search.n_trials`."""
        with locked(self.folder):
            self.reap()
            trials = self.study.get_trials(deepcopy=False)
            busy = sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials)
            if busy >= self.n_trials:
                return None
            self.study.sampler = build_sampler(self.cfg.search.sampler, len(trials))
            trial = self.study.ask(self.space)
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            return trial

    # --- running one ----------------------------------------------------------------------
    def compose(self, trial: optuna.Trial) -> DictConfig:
        """The trial's config: the command's config with the sampled values, in its folder."""
        sampled = [override_line(key, trial.params[key]) for key in self.space]
        config = self.loader.load_configuration(
            config_name=self.config_name,
            overrides=[*self.hydra_overrides, f"hydra.sweep.dir={self.folder}",
                       f"hydra.sweep.subdir={trial.number}", "hydra.job.name=train",
                       *self.fixed, *sampled],
            run_mode=RunMode.RUN)
        with open_dict(config):
            config.hydra.job.num = trial.number
            config.hydra.job.id = str(trial.number)
        return config

    def run(self, trial: optuna.Trial) -> TrialState:
        """Train the trial in its folder; tell the study how it ended."""
        folder = self.folder / str(trial.number)
        reporter = ReportToTrial(trial)
        log.info("Trial %d: %s", trial.number,
                 " ".join(override_line(k, v) for k, v in trial.params.items()))
        claim_run_folder(folder)
        try:
            config = self.compose(trial)
            with get_heartbeat_thread(trial._trial_id, self.study._storage):
                outcome = run_job(task_function=lambda task_cfg: train_trial(task_cfg, reporter),
                                  config=config, job_dir_key="hydra.sweep.dir",
                                  job_subdir_key="hydra.sweep.subdir",
                                  hydra_context=HydraContext(config_loader=self.loader,
                                                             callbacks=Callbacks()))
        except Exception as error:  # composing failed: no job ran
            outcome = JobReturn(status=JobStatus.FAILED, _return_value=error)
        finally:
            release_run_folder(folder)
            configure_log(self.hydra_cfg.hydra.job_logging, self.hydra_cfg.hydra.verbose)
        return self.tell(trial, outcome, reporter, folder)

    def tell(self, trial: optuna.Trial, outcome: JobReturn, reporter: ReportToTrial,
             folder: Path) -> TrialState:
        try:
            if outcome.status != JobStatus.COMPLETED:  # Hydra's getter would log it as an error
                raise outcome._return_value
            metrics = outcome.return_value
        except optuna.TrialPruned:
            epochs = (reporter.pruned_at or 0) + 1
            trial.set_user_attr("epochs", epochs)
            mark_unfinished(folder, "pruned", f"pruned after {epochs} epoch(s)", epochs=epochs,
                            val_oa=reporter.best, val_oa_per_epoch=list(reporter.reported.values()))
            self.study.tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d pruned after %d epoch(s), best val_oa %.4f", trial.number, epochs,
                     reporter.best or float("nan"))
            return TrialState.PRUNED
        except Exception as error:  # noqa: BLE001 - any failure of the run fails the trial
            message = first_line(deliberate_cause(error) or error)
            trial.set_user_attr("error", message)
            self.failure = message
            self.study.tell(trial, state=TrialState.FAIL)
            log.error("Trial %d failed: %s", trial.number, message)
            return TrialState.FAIL
        value = (metrics or {}).get("val_oa")
        if value is None:
            trial.set_user_attr("error", "no val_oa in metrics.json")
            self.study.tell(trial, state=TrialState.FAIL)
            log.error("Trial %d recorded no val_oa (no validation pixels?)", trial.number)
            return TrialState.FAIL
        trial.set_user_attr("epochs", metrics.get("epochs"))
        self.study.tell(trial, float(value))
        log.info("Trial %d: val_oa %.4f after %s epoch(s)", trial.number, value, metrics.get("epochs"))
        return TrialState.COMPLETE

    def write_results(self) -> dict[str, Any]:
        """optimization_results.yaml in the search folder: the best trial and the counts."""
        trials = self.study.get_trials(deepcopy=False)
        counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
        results: dict[str, Any] = {"name": self.study.study_name, "n_trials": self.n_trials, **counts}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            best = self.study.best_trial
            results |= {"best_trial": best.number, "best_value": best.value, "best_params": best.params}
        atomic_write_text(self.folder / OPTUNA_RESULTS, OmegaConf.to_yaml(OmegaConf.create(results)))
        self.counts = counts
        return results


def train_trial(cfg: DictConfig, reporter: ReportToTrial) -> dict[str, Any]:
    """One trial's run; a failure goes to its own train.log with the traceback."""
    try:
        return train(cfg, [reporter])
    except optuna.TrialPruned:
        raise
    except Exception as error:
        cause = deliberate_cause(error)
        if cause is not None:
            log.error("Error: %s", cause)
        else:
            log.exception("The trial failed")
        raise


def fail_stale_trials_of(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose heartbeat stopped (database storages); their numbers."""
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - after)


def build_sampler(cfg: DictConfig, number: int) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded with its seed + the number of the trial it will sample."""
    seed = cfg.get("seed")
    if seed is None:
        return instantiate(cfg)
    return instantiate(cfg, seed=int(seed) + number)


def mark_unfinished(folder: Path, status: str, reason: str, **extra: Any) -> None:
    """A trial that did not finish: metrics.json says so, and its partial checkpoints go (they
    would pose as a finished run's)."""
    if not folder.is_dir():
        return
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    if (folder / METRICS_FILE).exists() and status == "interrupted":
        return  # it finished its run before the worker died
    atomic_write_json(folder / METRICS_FILE, {"status": status, "reason": reason, "checkpoint": None,
                                                **extra})


def open_study(cfg: DictConfig, folder: Path, space: dict[str, BaseDistribution],
               fixed: list[str]) -> optuna.Study:
    """Create or load the study; a study started with other fixed settings or space is refused."""
    storage = open_storage(cfg.search.storage, folder)
    study = optuna.create_study(storage=storage, study_name=str(cfg.search.study_name),
                                direction="maximize", load_if_exists=True,
                                pruner=build_pruner(cfg.search.get("pruner")))
    described = {key: repr(value) for key, value in space.items()}
    stored_fixed = study.user_attrs.get("fixed_overrides")
    if stored_fixed is None:
        study.set_user_attr("fixed_overrides", sorted(fixed))
        study.set_user_attr("space", described)
        study.set_user_attr("objective", "val_oa")
        for params in cfg.search.get("enqueue") or []:  # settings to try first, in order
            study.enqueue_trial(enqueued(params, space))
        return study
    differ = sorted(set(stored_fixed) ^ set(fixed))
    if differ or study.user_attrs.get("space") != described:
        what = (f"fixed overrides differ ({', '.join(differ)})" if differ else
                "the search space differs")
        raise ConfigError(f"Study {study.study_name!r} in {describe_storage(cfg.search.storage, folder)} "
                          f"was started with other settings: {what}. Resume it with its own command, "
                          f"or start a new study with search.study_name=<new name>.")
    return study


def enqueued(params: Any, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """One `search.enqueue` entry ({key: value}) checked against the space."""
    values = OmegaConf.to_container(params) if isinstance(params, DictConfig) else dict(params)
    unknown = sorted(set(values) - set(space))
    if unknown or set(values) != set(space):
        extra = f"; not searched: {', '.join(unknown)}" if unknown else ""
        raise ConfigError(f"search.enqueue entry {values}: give a value for each searched key "
                          f"({', '.join(space)}){extra}.")
    for key, value in values.items():
        if not space[key]._contains(space[key].to_internal_repr(value)):
            raise ConfigError(f"search.enqueue: {key}={value} is outside its range {space[key]}.")
    return values


def start_workers(count: int, argv: list[str]) -> list[subprocess.Popen]:
    """`count` more worker processes running the same search command."""
    command = [sys.executable, "-m", "hsi.search", *argv, "search.workers=1"]
    return [subprocess.Popen(command) for _ in range(count)]


def run_search(cfg: DictConfig, hydra_cfg: DictConfig, loader: ConfigLoader, argv: list[str],
               sweeps: list[str]) -> dict[str, Any]:
    """One worker of the search `cfg.search` (and `search.workers - 1` more processes)."""
    check_validation_pixels(cfg)
    search = cfg.search
    if search.get("n_trials") is None or int(search.n_trials) < 1:
        raise ConfigError(f"search.n_trials={search.get('n_trials')}: give the number of finished trials "
                          f"the study should reach, e.g. search.n_trials=20.")
    folder = Path(str(search.dir)).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    task = list(hydra_cfg.hydra.overrides.task)
    fixed = trial_overrides(task)
    space = search_space(search.get("params"), [*fixed, *sweeps])
    fixed = [line for line in fixed if _key(line) not in space]
    with locked(folder):
        study = open_study(cfg, folder, space, fixed)
    hydra_overrides = [line for line in hydra_cfg.hydra.overrides.hydra
                       if not _key(line).startswith(("hydra.run.", "hydra.sweep.", "hydra.job.name"))]
    worker = Search(cfg, study, folder, space, fixed, hydra_overrides, hydra_cfg.hydra.job.config_name,
                    loader, hydra_cfg)
    others = start_workers(int(search.get("workers") or 1) - 1, argv)
    log.info("Search %s in %s (storage %s): %d finished trials wanted, pruner %s, %d worker(s)",
             study.study_name, folder, describe_storage(search.storage, folder), worker.n_trials,
             type(study.pruner).__name__, len(others) + 1)
    failed = None
    while (trial := worker.ask()) is not None:
        state = worker.run(trial)
        worker.write_results()
        if state == TrialState.FAIL:
            failed = trial
            break
    codes = [process.wait() for process in others]
    results = worker.write_results()
    summary = summarize(folder) if any(p.is_dir() and p.name.isdigit() for p in folder.iterdir()) else {}
    results["best_command"] = summary.get("best_command")
    results["folder"] = str(folder)
    if failed is not None:
        raise SearchFailed(failure_advice(failed.number, worker.failure, failed.params, folder))
    if any(codes):
        raise SearchFailed(f"{sum(1 for c in codes if c)} of the other worker process(es) failed; run the "
                           f"same command to continue the study.")
    return results


def failure_advice(number: int, error: str, params: dict[str, Any], folder: Path) -> str:
    """Why the search stopped and how to go on: a trial whose error names a searched key failed on
    a setting the space can give again (running the same command would repeat it)."""
    head = f"Trial {number} failed: {error} (its log: {folder / str(number)}/train.log). The search stops"
    named = [key for key in params if key in error]
    if named:
        sampled = " ".join(override_line(key, params[key]) for key in named)
        return (f"{head}: the space gave {sampled}, and can give it again, so running the same command would "
                f"fail the same way. Narrow the range of {', '.join(named)} (search.params or the command "
                f"line) and start a new study (search.study_name=<new name>: a study keeps its space).")
    return f"{head}; fix the cause and run the same command to continue the study."


def describe(results: dict[str, Any]) -> str:
    """The end of a search in a few lines: counts, best value, the best trial's command."""
    lines = [f"Study {results['name']}: {results.get('complete', 0)} complete, {results.get('pruned', 0)} "
             f"pruned, {results.get('fail', 0)} failed trial(s) in {results['folder']}"]
    if "best_value" in results:
        lines.append(f"best val_oa {results['best_value']:.4f} (trial {results['best_trial']})")
    if results.get("best_command"):
        lines.append(f"best trial: {results['best_command']}")
    return "\n".join(lines)


def to_json(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2, default=str)
