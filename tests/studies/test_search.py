"""`hparams_search=<name>`: an Optuna search on validation OA (the `search` extra).

A search of 2 trials on the small synthetic scene stores its study in its multirun folder
(optuna.db); resumed from a new folder with that storage it grows to 3 trials without training the
first two again; each trial's objective is its metrics.json `val_oa`; `python -m hsi.summarize`
prints the best trial as a `python -m hsi.train` command that composes as one run.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

optuna = pytest.importorskip("optuna", reason="install the project's `search` extra")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="install the project's `search` extra")

from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from tests.conftest import FAST_SYNTHETIC, PROJECT_ROOT, compose_train  # noqa: E402

STUDY = "synthetic_optuna"
# one epoch per trial, a validation set to optimise, nothing but metrics written
SEARCH = [f"hparams_search={STUDY}", *FAST_SYNTHETIC, "trainer.max_epochs=1", "logger=none", "map=false",
          "data.split.val_ratio=0.1"]
ENV = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


def run(module: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *arguments], cwd=PROJECT_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=900)


def storage(folder: Path) -> str:
    return f"sqlite:///{folder / 'optuna.db'}"


def trials(folder: Path) -> list[Any]:
    return optuna.load_study(study_name=STUDY, storage=storage(folder)).get_trials(deepcopy=False)


def snapshot(trial: Any) -> tuple:
    return trial.number, trial.state, trial.params, trial.values, trial.datetime_complete


def val_oa(job: Path) -> float:
    return json.loads((job / "metrics.json").read_text())["val_oa"]


def job_lr(job: Path) -> float:
    lines = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    return float(next(line for line in lines if line.startswith("model.optimizer.lr=")).split("=", 1)[1])


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """2 trials into `first`, then the same study resumed for 1 trial into `second`."""
    root = tmp_path_factory.mktemp("search")
    first, second = root / "first", root / "second"
    started = run("hsi.train", *SEARCH, f"hydra.sweep.dir={first}", "hydra.sweeper.n_trials=2")
    assert started.returncode == 0, started.stderr[-3000:]
    before = [snapshot(t) for t in trials(first)]
    resumed = run("hsi.train", *SEARCH, f"hydra.sweep.dir={second}", "hydra.sweeper.n_trials=1",
                  f"hydra.sweeper.storage={storage(first)}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"first": first, "second": second, "before": before, "resumed_log": resumed.stdout}


def first_job_overrides(cfg: Any) -> list[str]:
    """One value of every key of a config's search space (a choice's first, an interval's low end)."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    out = []
    for override in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]):
        value = (override.value().start if override.is_interval_sweep()
                 else next(override.sweep_string_iterator()))
        out.append(f"{override.get_key_element()}={value}")
    return out


@pytest.mark.parametrize("name", ["honest_optuna", "synthetic_optuna"])
def test_search_config_optimises_val_oa_into_its_folder(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"hparams_search={name}", f"hydra.sweep.dir={tmp_path}"], tmp_path)
    sweeper = cfg.hydra.sweeper
    assert cfg.optimized_metric == "val_oa"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert sweeper._target_.startswith("hydra_plugins.hydra_optuna_sweeper")
    assert sweeper.direction == "maximize" and sweeper.study_name == name and sweeper.n_jobs == 1
    assert sweeper.storage == f"sqlite:///{tmp_path}/optuna.db"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == cfg.seed
    assert cfg.hydra.callbacks.prepare_search._target_ == "hsi.search.PrepareSearch"
    # every key of the search space is a real key (or group) of a training run
    single = compose_train(first_job_overrides(cfg), tmp_path)
    OmegaConf.to_container(single.model, resolve=True, throw_on_missing=True)
    OmegaConf.to_container(single.data, resolve=True, throw_on_missing=True)


def test_the_study_is_stored_in_the_multirun_folder(search: dict[str, Any]) -> None:
    first = search["first"]
    assert (first / "optuna.db").is_file()
    before = search["before"]
    assert [(number, state) for number, state, *_ in before] == [
        (0, optuna.trial.TrialState.COMPLETE), (1, optuna.trial.TrialState.COMPLETE)]
    assert sorted(p.name for p in first.iterdir() if p.is_dir()) == ["0", "1"]
    for number, _, params, values, _ in before:
        job = first / str(number)  # trial n is job folder n of a fresh study
        # the objective is the best validation OA recorded in the trial's metrics.json, never test
        assert values == [pytest.approx(val_oa(job), rel=1e-12)]
        assert params["model.optimizer.lr"] == pytest.approx(job_lr(job), rel=1e-12)


def test_a_resumed_search_continues_the_same_study(search: dict[str, Any]) -> None:
    first, second = search["first"], search["second"]
    study = trials(first)
    assert len(study) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study)
    # the first two trials are kept as they were, not trained again
    assert [snapshot(t) for t in study[:2]] == search["before"]
    assert sorted(p.name for p in first.iterdir() if p.is_dir()) == ["0", "1"]
    # the third trial ran in the new folder, with a new setting (the sampler was re-seeded)
    assert sorted(p.name for p in second.iterdir() if p.is_dir()) == ["0"]
    assert not (second / "optuna.db").exists()
    third = study[2]
    assert third.number == 2 and third.values == [pytest.approx(val_oa(second / "0"), rel=1e-12)]
    assert third.params["model.optimizer.lr"] == pytest.approx(job_lr(second / "0"), rel=1e-12)
    assert third.params not in [t.params for t in study[:2]]
    assert "holds 2 trials: resuming it with sampler seed" in search["resumed_log"]
    best = yaml.safe_load((second / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t.value for t in study), rel=1e-12)


def test_a_finished_search_folder_is_never_reused(search: dict[str, Any]) -> None:
    first = search["first"]
    again = run("hsi.train", *SEARCH, f"hydra.sweep.dir={first}", "hydra.sweeper.n_trials=1")
    assert again.returncode == 1 and "already holds files" in again.stderr
    assert len(trials(first)) == 3


@pytest.mark.parametrize("folder", ["first", "second"])
def test_summary_prints_the_best_trial_ready_to_rerun(search: dict[str, Any], folder: str,
                                                      tmp_path: Path) -> None:
    multirun = search[folder]
    result = run("hsi.summarize", str(multirun))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in multirun.iterdir() if p.is_dir())
    with open(multirun / "results.csv", newline="") as f:
        rows = {row["job"]: row for row in csv.DictReader(f)}
    for job in jobs:
        assert float(rows[job.name]["val_oa"]) == pytest.approx(val_oa(job))
    assert "| val OA |" in (multirun / "results.md").read_text()

    results = yaml.safe_load((multirun / "optimization_results.yaml").read_text())
    lines = [line for line in result.stdout.splitlines() if line.startswith("best trial: ")]
    assert len(lines) == 1
    tokens = shlex.split(lines[0].removeprefix("best trial: "))
    assert tokens[:3] == ["python", "-m", "hsi.train"]
    overrides = tokens[3:]
    assert not any(o.startswith(("hparams_search=", "hydra.")) for o in overrides)
    lr = [float(o.split("=", 1)[1]) for o in overrides if o.startswith("model.optimizer.lr=")]
    assert lr == [pytest.approx(results["best_params"]["model.optimizer.lr"], rel=1e-12)]
    # in the folder where the search started, the best trial is its best job
    if folder == "first":
        best = max(jobs, key=val_oa)
        assert results["best_value"] == pytest.approx(val_oa(best), rel=1e-12)
        assert lr == [pytest.approx(job_lr(best), rel=1e-12)]
    # it composes as a single training run with the search's fixed settings
    cfg = compose_train(overrides, tmp_path)
    assert cfg.optimized_metric is None and str(cfg.hydra.mode) != "RunMode.MULTIRUN"
    assert cfg.data.height == 24 and cfg.data.split.val_ratio == 0.1
    assert cfg.model.optimizer.lr == pytest.approx(results["best_params"]["model.optimizer.lr"])


def test_a_search_without_validation_pixels_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "no_validation"
    result = run("hsi.train", *SEARCH, "data.split.val_ratio=0", f"hydra.sweep.dir={folder}")
    assert result.returncode == 1 and "the split needs validation pixels" in result.stderr
    assert list(folder.iterdir()) == []  # refused before the study or any trial, lock released
