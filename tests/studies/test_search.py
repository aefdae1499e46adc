"""`python -m hsi.search`: Optuna studies of training runs on validation OA (the `search` extra).

On the small synthetic scene, with runs of a few epochs:
- a 3-trial search whose second (enqueued) setting is hopeless (learning rate 0) prunes it after
  the warm-up epoch: PRUNED in the study, `"status": "pruned"` in its folder's metrics.json, no
  checkpoints left, `pruned` (not failed) in the summary; the best trial's command composes as one
  `python -m hsi.train` run;
- two worker processes on one journal storage share the study: distinct trial numbers and folders,
  exactly n_trials finished trials;
- a search killed with SIGKILL in the middle of a trial resumes with the same command and ends with
  exactly n_trials finished trials; the killed trial is marked FAIL (interrupted), not re-counted;
- the search spaces of conf/hparams_search/ parse into Optuna distributions whose keys are real keys.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna", reason="install the project's `search` extra")

from omegaconf import OmegaConf  # noqa: E402
from optuna.storages import JournalStorage  # noqa: E402
from optuna.storages.journal import JournalFileBackend  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hsi.studies.search import trial_overrides  # noqa: E402
from hsi.studies.space import distribution, search_space, split_sweeps  # noqa: E402
from tests.conftest import FAST_SYNTHETIC, PROJECT_ROOT, compose_train  # noqa: E402

STUDY = "synthetic_optuna"
# a few epochs per trial, a validation set to optimise, nothing but metrics written
SEARCH = [f"hparams_search={STUDY}", *FAST_SYNTHETIC, "trainer.max_epochs=3", "logger=none", "map=false",
          "data.split.val_ratio=0.1"]
ENV = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
# the first trial a good learning rate, the second a hopeless one (0: the weights never move)
PLANTED = ["model.optimizer.lr=choice(0.005,0.0)", "search.pruner.n_startup_trials=1",
           "search.pruner.n_warmup_steps=1",
           "search.enqueue=[{model.optimizer.lr: 0.005},{model.optimizer.lr: 0.0}]"]


def command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", *arguments]


def run(module: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(module, *arguments), cwd=PROJECT_ROOT, env=ENV, capture_output=True,
                          text=True, timeout=900)


def study_trials(folder: Path) -> list[Any]:
    storage = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)


def finished(trials: list[Any]) -> list[Any]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def metrics(job: Path) -> dict[str, Any]:
    return json.loads((job / "metrics.json").read_text())


@pytest.fixture(scope="module")
def pruned_search(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pruned") / "search"
    result = run("hsi.search", *SEARCH, *PLANTED, f"search.dir={folder}", "search.n_trials=3")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"folder": folder, "stdout": result.stdout, "stderr": result.stderr}


def test_a_hopeless_trial_is_pruned_and_marked_so(pruned_search: dict[str, Any]) -> None:
    folder = pruned_search["folder"]
    trials = study_trials(folder)
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert trials[1].params == {"model.optimizer.lr": 0.0}
    assert len(finished(trials)) == 3
    # the pruned trial stopped after the warm-up epoch and the one after it: 2 of 3 epochs
    pruned = metrics(folder / "1")
    assert pruned["status"] == "pruned" and pruned["epochs"] == 2 < 3 and pruned["checkpoint"] is None
    assert "oa" not in pruned  # never tested: no test metrics that could pass for a finished run
    assert not (folder / "1" / "checkpoints").exists()
    assert trials[1].intermediate_values == dict(enumerate(pruned["val_oa_per_epoch"]))
    # a complete trial's objective is its metrics.json val_oa, reported each epoch on the way
    complete = metrics(folder / "0")
    assert trials[0].value == pytest.approx(complete["val_oa"], rel=1e-12)
    assert max(trials[0].intermediate_values.values()) == pytest.approx(complete["val_oa"], rel=1e-6)
    assert (folder / "0" / "checkpoints" / "last.ckpt").is_file()
    lines = (folder / "0" / ".hydra" / "overrides.yaml").read_text()
    assert "model.optimizer.lr=0.005" in lines and "hparams_search" not in lines and "search." not in lines


def test_the_summary_shows_pruned_trials_apart_from_failures(pruned_search: dict[str, Any],
                                                              tmp_path: Path) -> None:
    folder = pruned_search["folder"]
    result = run("hsi.summarize", str(folder))
    assert result.returncode == 0, result.stderr[-3000:]  # a pruned trial is no failed job
    with open(folder / "results.csv", newline="") as f:
        status = {row["job"]: row["status"] for row in csv.DictReader(f)}
    assert status["1"] == "pruned" and status["0"] == "ok"
    text = (folder / "results.md").read_text()
    assert "- job 1 (model.optimizer.lr=0.0): pruned after 2 epoch(s)" in text
    assert "failed job" not in text
    # the best trial's command, printed by the search and the summary, trains it once
    best = [line for line in result.stdout.splitlines() if line.startswith("best trial: ")]
    assert best and best[0] in pruned_search["stdout"]
    tokens = shlex.split(best[0].removeprefix("best trial: "))
    assert tokens[:3] == ["python", "-m", "hsi.train"] and "model.optimizer.lr=0.005" in tokens
    cfg = compose_train(tokens[3:], tmp_path)
    assert cfg.get("search") is None and cfg.model.optimizer.lr == 0.005 and cfg.data.split.val_ratio == 0.1


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    """Two processes started at once with the same command (what `search.workers=2` does)."""
    folder = tmp_path / "search"
    arguments = [*SEARCH, f"search.dir={folder}", "search.n_trials=5", "trainer.max_epochs=2"]
    workers = [subprocess.Popen(command("hsi.search", *arguments), cwd=PROJECT_ROOT, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=900)
        assert worker.returncode == 0, stderr[-3000:]
    trials = study_trials(folder)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]  # no number twice, none lost
    assert len(finished(trials)) == 5
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes trained trials
    assert len(list((folder / "workers").iterdir())) == 2
    assert sorted(p.name for p in folder.iterdir() if p.name.isdigit()) == ["0", "1", "2", "3", "4"]
    # the sampler's seed is seed + trial number, so the two workers' random settings differ
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 5


def test_a_killed_search_resumes_with_the_same_command(tmp_path: Path) -> None:
    folder = tmp_path / "search"
    arguments = [*SEARCH, f"search.dir={folder}", "search.n_trials=3", "trainer.max_epochs=20",
                 "search/pruner=none", "model.optimizer.lr=choice(0.001,0.002,0.003)"]
    process = subprocess.Popen(command("hsi.search", *arguments), cwd=PROJECT_ROOT, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(folder.glob("1/checkpoints/*.ckpt")):  # trial 1 has trained an epoch
        assert process.poll() is None and time.monotonic() < deadline, "the search ended early"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = study_trials(folder)
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]

    resumed = run("hsi.search", *arguments[:-3], "trainer.max_epochs=1", "search/pruner=none",
                  "model.optimizer.lr=choice(0.001,0.002,0.003)")
    assert resumed.returncode != 0 and "other settings" in resumed.stderr  # max_epochs changed: refused
    resumed = run("hsi.search", *arguments)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = study_trials(folder)
    assert trials[0].datetime_complete == before[0].datetime_complete  # not trained again
    assert trials[1].state == TrialState.FAIL and "interrupted" in trials[1].user_attrs
    assert [t.number for t in finished(trials)] == [0, 2, 3]
    killed = metrics(folder / "1")
    assert killed["status"] == "interrupted" and not (folder / "1" / "checkpoints").exists()
    summary = run("hsi.summarize", str(folder))
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "- job 1 " in (folder / "results.md").read_text()


def test_hsi_train_refuses_a_search_config(tmp_path: Path) -> None:
    result = run("hsi.train", *SEARCH, f"search.dir={tmp_path / 'search'}")
    assert result.returncode == 1
    assert "run it with `python -m hsi.search" in result.stderr
    assert not list((tmp_path / "search" / "workers").glob("*"))  # the refused run left no folder


def test_a_search_without_validation_pixels_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "search"
    result = run("hsi.search", *SEARCH, "data.split.val_ratio=0", f"search.dir={folder}")
    assert result.returncode == 1 and "the split needs validation pixels" in result.stderr
    assert not (folder / "optuna.journal").exists()


@pytest.mark.parametrize("name", ["honest_optuna", "synthetic_optuna"])
def test_search_spaces_parse_into_real_keys(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"hparams_search={name}"], tmp_path)
    assert cfg.optimized_metric == "val_oa" and cfg.search.study_name == name
    assert cfg.search.pruner._target_ == "optuna.pruners.MedianPruner"
    space = search_space(cfg.search.params)
    assert set(space) == set(cfg.search.params)
    # one value of every searched key composes as a training run
    values = [f"{key}={d.choices[0] if hasattr(d, 'choices') else d.low}" for key, d in space.items()]
    single = compose_train(values, tmp_path)
    OmegaConf.to_container(single.model, resolve=True, throw_on_missing=True)
    OmegaConf.to_container(single.data, resolve=True, throw_on_missing=True)


def test_the_override_syntax_maps_to_optuna_distributions() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    assert distribution("a", "tag(log, interval(1e-4, 1e-2))") == FloatDistribution(1e-4, 1e-2, log=True)
    assert distribution("a", "interval(0.0, 0.6)") == FloatDistribution(0.0, 0.6)
    assert distribution("a", "choice(none, flips)") == CategoricalDistribution(["none", "flips"])
    assert distribution("a", "choice(9, 11)") == CategoricalDistribution([9, 11])
    assert distribution("a", "range(8, 64, 8)") == IntDistribution(8, 56, step=8)  # stop excluded
    sweeps, rest = split_sweeps(["a=1", "b=1,2", "c=interval(0,1)", "hydra.run.dir=x"])
    assert sweeps == ["b=1,2", "c=interval(0,1)"] and rest == ["a=1", "hydra.run.dir=x"]
    # the command line fixes a key (out of the space) or replaces its range
    space = search_space({"a": "choice(1,2)", "b": "choice(3,4)"}, ["a=1", "b=choice(5,6)"])
    assert space == {"b": CategoricalDistribution([5, 6])}
    assert trial_overrides(["hparams_search=x", "search.n_trials=3", "search/pruner=none", "seed=1"]) \
        == ["seed=1"]
