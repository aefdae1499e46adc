"""The paths users take, second round (issue 25): Lightning's own flags with dense evaluation,
early stopping without validation pixels, splits without test pixels, experiments combined with
other split strategies, deployed files edited by hand, estimators and checkpoints checked against
the data, resumes of scheduled runs, summaries of unfinished sweeps, threads of parallel jobs.

Each test fails on the behaviour the issue reported; runs are in-process on a small synthetic
scene, one or two epochs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hsi.errors import ConfigError, DataError, HsiError  # noqa: F401

TINY = ["trainer.max_epochs=1", "logger=none", "map=false"]


# -- 1. dense evaluation under Lightning's limit flags ----------------------------------------
@pytest.mark.parametrize("flag", ["+trainer.limit_test_batches=1", "+trainer.limit_test_batches=0.5",
                                  "+trainer.fast_dev_run=true", "debug=fast"])
def test_a_limited_dense_test_reports_the_pixels_it_evaluated(synthetic_cfg, flag: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from hsi.run.training import train

    cfg = synthetic_cfg(*TINY, "data.eval_path=dense", "data.eval_tile_rows=4", flag)
    metrics = train(cfg)
    assert 0 < metrics["n_test"] < metrics["n_test_split"]
    assert 0 <= metrics["oa"] <= 1
    assert "test pixels were evaluated" in caplog.text


def test_eval_tile_rows_alone_tests_every_pixel(synthetic_cfg) -> None:
    from hsi.run.training import train

    metrics = train(synthetic_cfg(*TINY, "data.eval_path=dense", "data.eval_tile_rows=4"))
    assert "n_test_split" not in metrics and metrics["n_test"] > 0


def test_evaluate_with_a_test_limit_reports_the_pixels_it_evaluated(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.evaluate import evaluate
    from hsi.run.training import train
    from tests.conftest import compose_config

    trained = train(synthetic_cfg(*TINY, "data.eval_path=dense", "data.eval_tile_rows=4"))
    metrics = evaluate(compose_config("evaluate", [f"ckpt_path={trained['checkpoint']}", "logger=none",
                                                   "map=false", "++trainer.limit_test_batches=1"],
                                      tmp_path / "evaluated"))
    assert 0 < metrics["n_test"] < metrics["n_test_split"] == trained["n_test"]


# -- 2. early stopping without validation pixels ----------------------------------------------
@pytest.mark.parametrize("flag", ["data.split.val_ratio=0", "++trainer.limit_val_batches=0"])
def test_early_stopping_without_validation_is_dropped_with_a_warning(
        synthetic_cfg, flag: str, caplog: pytest.LogCaptureFixture) -> None:
    from hsi.run.training import train

    metrics = train(synthetic_cfg("logger=none", "map=false", "trainer.max_epochs=2",
                                  "callbacks=[default,early_stopping]", flag))
    assert metrics["epochs"] == 2 and 0 <= metrics["oa"] <= 1
    assert "early stopping" in caplog.text and "val/oa" in caplog.text


# -- 3. a split without test pixels -----------------------------------------------------------
@pytest.mark.parametrize("flag", ["data.split.block_size=100", "data.split.margin=40"])
def test_a_disjoint_split_without_test_pixels_is_refused_before_training(synthetic_cfg, tmp_path: Path,
                                                                         flag: str) -> None:
    from hsi.run.training import train

    with pytest.raises(DataError, match="leaves no test pixel.*data.split.block_size"):
        train(synthetic_cfg(*TINY, "data/split=disjoint", flag))
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "split.npz").exists()


# -- 4. an experiment combined with another split strategy ------------------------------------
def test_an_experiment_with_a_mask_split_names_the_keys_and_the_fix(tmp_path: Path) -> None:
    import numpy as np

    from hsi.data.scenes.synthetic import make_synthetic_scene
    from hsi.run.training import train
    from tests.conftest import FAST_SYNTHETIC, compose_train

    scene = make_synthetic_scene(height=24, width=24, bands=30, classes=4)
    mask = np.zeros(scene.labels.shape, dtype=np.uint8)
    mask[::3, ::3] = 1
    np.save(tmp_path / "train_mask.npy", mask)
    common = [*FAST_SYNTHETIC, "experiment=seed_recipe_cosine", "data=synthetic", "model=svm",
              "data/split=mask", f"data.split.train_mask_path={tmp_path / 'train_mask.npy'}",
              "data.patch_size=9", "data.pca.components=15", "map=false"]
    with pytest.raises(ConfigError, match=r"data.split.test_ratio, data.split.val_ratio .*"
                                          r"~data.split.test_ratio ~data.split.val_ratio"):
        train(compose_train(common, tmp_path / "refused"))
    fixed = compose_train([*common, "~data.split.test_ratio", "~data.split.val_ratio"], tmp_path / "run")
    assert 0 <= train(fixed)["oa"] <= 1


# -- 5. deployed files are checked --------------------------------------------------------------
@pytest.fixture(scope="module")
def two_exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two exports of hybridsn on the synthetic scene: 9x9 windows (two seeds, same size graphs)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from hsi.deploy.export import export
    from hsi.run.training import train
    from tests.conftest import FAST_SYNTHETIC, compose_config, compose_train

    folders = []
    for seed in (1, 2):
        run = tmp_path_factory.mktemp(f"train_seed{seed}")
        metrics = train(compose_train([*FAST_SYNTHETIC, *TINY, f"seed={seed}", "model=cnn2d"], run))
        out = tmp_path_factory.mktemp(f"export_seed{seed}")
        export(compose_config("export", [f"ckpt_path={metrics['checkpoint']}"], out))
        folders.append(out)
    return folders[0], folders[1]


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "copy"))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m | {"patch_size": m["patch_size"] + 4}, "margin"),
    (lambda m: m | {"patch_size": m["patch_size"] + 4, "margin": m["margin"] + 2}, "reads another window"),
    (lambda m: {k: v for k, v in m.items() if k not in ("bands", "class_names")}, "lacks bands, class_names"),
    (lambda m: m | {"class_names": m["class_names"][:-1]}, "class_names but"),
])
def test_an_edited_model_json_is_refused_in_one_line(two_exports, tmp_path: Path, edit, message: str) -> None:
    import json

    from hsi.deploy.runtime import ModelFileError, OnnxClassifier

    folder = _copy(two_exports[0], tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(edit(meta)))
    with pytest.raises(ModelFileError, match=message):
        OnnxClassifier.load(folder)


def test_a_graph_swapped_for_another_exports_is_refused(two_exports, tmp_path: Path) -> None:
    import shutil

    from hsi.deploy.runtime import ModelFileError, OnnxClassifier

    folder = _copy(two_exports[0], tmp_path)
    OnnxClassifier.load(folder)  # as exported: fine
    shutil.copy(two_exports[1] / "model.onnx", folder / "model.onnx")
    with pytest.raises(ModelFileError, match="graph was replaced"):
        OnnxClassifier.load(folder)


# -- 6. pickled estimators checked against the data ----------------------------------------------
@pytest.fixture(scope="module")
def fitted_svm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    from hsi.run.training import train
    from tests.conftest import FAST_SYNTHETIC, compose_train

    run = tmp_path_factory.mktemp("svm")
    metrics = train(compose_train([*FAST_SYNTHETIC, "model=svm", "map=false", "logger=none"], run))
    return Path(metrics["checkpoint"]), metrics["oa"]


@pytest.mark.parametrize("flags, message", [
    (["data.height=30"], "another scene"),
    (["data.split.test_ratio=0.5"], "another split"),
    (["data.pca.components=10"], "features per pixel"),
])
def test_a_pickled_estimator_is_checked_against_the_data(fitted_svm, tmp_path: Path, flags: list[str],
                                                         message: str) -> None:
    from hsi.run.training import train
    from tests.conftest import FAST_SYNTHETIC, compose_train

    base = [*FAST_SYNTHETIC, "model=svm", "map=false", "logger=none", "train=false",
            f"ckpt_path={fitted_svm[0]}"]
    with pytest.raises(ConfigError, match=message):
        train(compose_train([*base, *flags], tmp_path / "refused"))
    assert not (tmp_path / "refused" / "split.npz").exists()
    assert train(compose_train(base, tmp_path / "same"))["oa"] == pytest.approx(fitted_svm[1])


def test_a_lightning_checkpoint_given_to_the_estimator_route_is_named(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.run.checkpoint import CheckpointError
    from hsi.run.training import train
    from tests.conftest import FAST_SYNTHETIC, compose_train

    trained = train(synthetic_cfg(*TINY))
    with pytest.raises(CheckpointError, match="is a Lightning checkpoint"):
        train(compose_train([*FAST_SYNTHETIC, "model=svm", "train=false",
                             f"ckpt_path={trained['checkpoint']}"], tmp_path / "svm"))


# -- 7. hsi.predict compares classes by name and label value -------------------------------------
def test_predict_refuses_its_own_scene_loaded_with_other_classes(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.predict import predict
    from hsi.run.training import train
    from tests.conftest import compose_config

    trained = train(synthetic_cfg(*TINY, "data.ignore_labels=[1]"))
    scene = ["data=synthetic", "data.height=24", "data.width=24", "data.bands=30", "data.classes=4",
             "data.patch_size=9", "data.pca.components=15"]
    base = [f"ckpt_path={trained['checkpoint']}", *scene]
    with pytest.raises(DataError, match="loaded here with"):
        predict(compose_config("predict", [*base, "data.ignore_labels=[2]"], tmp_path / "other"))
    same = predict(compose_config("predict", [*base, "data.ignore_labels=[1]"], tmp_path / "same"))
    assert 0 <= same["oa"] <= 1


# -- 8. resuming a scheduled run to more epochs ---------------------------------------------------
def test_resuming_a_cosine_run_to_more_epochs_is_refused_with_how(tmp_path: Path) -> None:
    from hsi.run.training import train
    from tests.conftest import FAST_SYNTHETIC, compose_train

    cosine = ["+model.scheduler._target_=torch.optim.lr_scheduler.CosineAnnealingLR",
              "+model.scheduler.T_max=${trainer.max_epochs}", "logger=none", "map=false"]
    first = compose_train([*FAST_SYNTHETIC, *cosine, "trainer.max_epochs=2"], tmp_path / "first")
    train(first)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    longer = compose_train([*FAST_SYNTHETIC, *cosine, "trainer.max_epochs=4", f"ckpt_path={last}"],
                           tmp_path / "longer")
    with pytest.raises(ConfigError, match=r"model.scheduler.T_max \(checkpoint 2, here 4\).*cannot be "
                                          r"lengthened"):
        train(longer)


# -- 9. summaries that tell the truth -----------------------------------------------------------
def _job(folder: Path, overrides: list[str] | str, metrics: dict | None) -> Path:
    import json

    import yaml

    (folder / ".hydra").mkdir(parents=True)
    text = overrides if isinstance(overrides, str) else yaml.safe_dump(overrides)
    (folder / ".hydra" / "overrides.yaml").write_text(text)
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _metrics(oa: float) -> dict:
    return {"oa": oa, "aa": oa, "kappa": oa, "val_oa": oa, "train_seconds": 1.0}


def _sweep(folder: Path, seeds: str = "0,1,2", done: int = 3,
           fixed: tuple[str, ...] = ("trainer.max_epochs=3",), split: str = "data/split=random") -> Path:
    import yaml

    folder.mkdir(parents=True)
    (folder / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": [f"seed={seeds}", *fixed, split]}}}))
    for k, seed in enumerate(seeds.split(",")[:done]):
        _job(folder / str(k), [f"seed={seed}", *fixed, split], _metrics(0.8 + 0.01 * k))
    return folder


def test_summarize_an_unfinished_sweep_exits_1_and_names_what_is_missing(tmp_path: Path, capsys) -> None:
    from hsi.studies.summaries import cli
    from hsi.utils.files import LOCK_NAME

    sweep = _sweep(tmp_path / "sweep", done=1)
    (sweep / LOCK_NAME).write_text("pid 1")
    assert cli([str(sweep)]) == 1
    text = (sweep / "results.md").read_text()
    assert "Unfinished sweep" in text and "2 of its 3 jobs never started" in text and LOCK_NAME in text
    complete = _sweep(tmp_path / "complete")
    assert cli([str(complete)]) == 0


def test_summarize_with_the_same_folder_counts_each_job_once(tmp_path: Path) -> None:
    from hsi.studies.summaries import summarize

    sweep = _sweep(tmp_path / "sweep")
    assert summarize(sweep, more=[sweep, tmp_path / "sweep" / "."])["jobs"] == 3


def test_summarize_beside_refuses_other_fixed_settings(tmp_path: Path) -> None:
    from hsi.studies.summaries import SummaryError, summarize

    ours = _sweep(tmp_path / "honest", split="data/split=disjoint")
    same = _sweep(tmp_path / "random")
    assert summarize(ours, beside=same)["jobs"] == 3
    other = _sweep(tmp_path / "short", fixed=("trainer.max_epochs=1", "+trainer.limit_train_batches=2"))
    with pytest.raises(SummaryError, match=r"trainer.max_epochs \(3 here, 1 beside\)"):
        summarize(ours, beside=other)


@pytest.mark.parametrize("damage, problem", [
    ("overrides", "overrides.yaml is missing or damaged"),
    ("no_oa", "lacks a number for oa"),
    ("nan", "NaN"),
])
def test_summarize_reports_damaged_jobs_instead_of_pooling_them(tmp_path: Path, damage: str,
                                                                 problem: str) -> None:
    from hsi.studies.summaries import summarize

    sweep = _sweep(tmp_path / "sweep")
    job = sweep / "1"
    if damage == "overrides":
        (job / ".hydra" / "overrides.yaml").write_text("- seed=[unclosed\n  : {")
    elif damage == "no_oa":
        (job / "metrics.json").write_text('{"aa": 0.5}')
    else:
        (job / "metrics.json").write_text('{"oa": NaN, "aa": NaN, "kappa": NaN}')
    summary = summarize(sweep)
    assert summary["failed"] == ["1"]
    text = (sweep / "results.md").read_text()
    assert problem in text and "None" not in text.split("**")[0]


def test_summarize_never_overwrites_a_users_results_md(tmp_path: Path) -> None:
    from hsi.studies.summaries import SummaryError, summarize

    sweep = _sweep(tmp_path / "sweep")
    summarize(sweep)
    summarize(sweep)  # its own file: rewritten
    (sweep / "results.md").write_text("my notes\n")
    with pytest.raises(SummaryError, match="not written by hsi.summarize"):
        summarize(sweep)
    assert (sweep / "results.md").read_text() == "my notes\n"


# -- threads of parallel jobs ------------------------------------------------------------------
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def test_parallel_jobs_share_the_cores_by_default() -> None:
    from omegaconf import OmegaConf

    from hsi.run.threads import available_cores, threads_for

    cores = available_cores()
    plain = OmegaConf.create({"threads": None})
    assert threads_for(plain, {"launcher": {"_target_": "basic"}}) is None
    assert threads_for(plain, {"launcher": {"_target_": JOBLIB, "n_jobs": 2}}) == max(1, cores // 2)
    assert threads_for(plain, {"launcher": {"_target_": JOBLIB, "n_jobs": -1}}) == 1
    assert threads_for(OmegaConf.create({"threads": 3}), {"launcher": {"_target_": JOBLIB, "n_jobs": 2}}) == 3
    with pytest.raises(ConfigError, match="threads=0"):
        threads_for(OmegaConf.create({"threads": 0}))


def test_the_thread_count_is_recorded(synthetic_cfg) -> None:
    import torch

    from hsi.run.training import train

    before = torch.get_num_threads()
    try:
        metrics = train(synthetic_cfg(*TINY, "model=svm", "threads=1"))
        assert metrics["threads"] == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_parallel_multirun_gives_each_job_its_share(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from hsi.run.config import PROJECT_ROOT
    from hsi.run.threads import available_cores
    from tests.conftest import FAST_SYNTHETIC

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-m", "hsi.train", "-m", *FAST_SYNTHETIC, *TINY, "model=svm",
                           "seed=1,2", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    threads = [json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())["threads"]
               for job in ("0", "1")]
    assert threads == [max(1, available_cores() // 2)] * 2


# -- poor patterns: one line each -------------------------------------------------------------
def test_trainer_gpu_without_a_gpu_is_one_line(synthetic_cfg) -> None:
    import torch

    from hsi.run.training import train

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="sees no CUDA GPU.*trainer=cpu"):
        train(synthetic_cfg(*TINY, "trainer=gpu"))


def test_half_precision_on_the_cpu_is_warned(synthetic_cfg, caplog: pytest.LogCaptureFixture) -> None:
    from hsi.run.validation import check_accelerator

    check_accelerator(synthetic_cfg("trainer.precision=16-mixed"))
    assert "looks hung" in caplog.text


def test_predict_with_both_a_checkpoint_and_a_model_is_refused(tmp_path: Path) -> None:
    from hsi.predict import predict
    from tests.conftest import compose_config

    cfg = compose_config("predict", ["ckpt_path=a.ckpt", "model_path=b/model.onnx"], tmp_path)
    with pytest.raises(ConfigError, match="give one"):
        predict(cfg)


def test_evaluate_with_data_keys_names_what_applies(tmp_path: Path) -> None:
    from hsi.evaluate import evaluate
    from tests.conftest import compose_config

    cfg = compose_config("evaluate", ["ckpt_path=a.ckpt", "+data.split.test_ratio=0.5"], tmp_path)
    with pytest.raises(ConfigError, match=r"data\.\* keys do not apply"):
        evaluate(cfg)


@pytest.mark.slow
def test_a_run_interrupted_after_its_metrics_leaves_no_lock(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from hsi.run.config import PROJECT_ROOT
    from hsi.utils.files import LOCK_NAME
    from tests.conftest import FAST_SYNTHETIC

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "hsi.train", *FAST_SYNTHETIC, "logger=none",
                                "trainer.max_epochs=1", "data.height=96", "data.width=96",
                                "data.eval_path=window", f"hydra.run.dir={run}"],
                               cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (run / "metrics.json").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # Ctrl-C while the map is drawn
    process.wait(timeout=120)
    assert not (run / LOCK_NAME).exists()


def test_a_pickled_estimator_given_as_a_checkpoint_is_named(fitted_svm) -> None:
    from hsi.run.checkpoint import CheckpointError, load_checkpoint

    with pytest.raises(CheckpointError, match="is a pickled estimator.*model=svm train=false"):
        load_checkpoint(fitted_svm[0])


def test_a_refused_resume_leaves_no_run_files(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.run.training import train
    from tests.conftest import FAST_SYNTHETIC, compose_train

    first = train(compose_train([*FAST_SYNTHETIC, *TINY], tmp_path / "first"))
    with pytest.raises(ConfigError, match="other settings"):
        train(compose_train([*FAST_SYNTHETIC, *TINY, "data.pca.components=20",
                             f"ckpt_path={first['checkpoint']}"], tmp_path / "resumed"))
    assert not (tmp_path / "resumed" / "split.npz").exists()


def test_summarize_leaves_export_and_predict_runs_out(tmp_path: Path) -> None:
    from hsi.studies.summaries import summarize

    sweep = _sweep(tmp_path / "sweep")
    (_job(sweep / "export_run", ["ckpt_path=x.ckpt"], None) / "model.json").write_text("{}")
    (_job(sweep / "predict_run", ["ckpt_path=x.ckpt"], None) / "prediction.json").write_text("{}")
    summary = summarize(sweep)
    assert summary["jobs"] == 3 and summary["failed"] == []


def test_predict_can_be_pointed_at_a_moved_scene(tmp_path: Path) -> None:
    import shutil

    import numpy as np

    from hsi.data.scenes.synthetic import make_synthetic_scene
    from hsi.predict import predict
    from hsi.run.training import train
    from tests.conftest import FAST_SYNTHETIC, compose_config, compose_train

    scene = make_synthetic_scene(height=24, width=24, bands=30, classes=4)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "cube.npy", scene.cube)
    np.save(data / "gt.npy", scene.labels)
    keep = [o for o in FAST_SYNTHETIC if not o.startswith(("data=", "data.height", "data.width", "data.bands",
                                                             "data.classes"))]
    metrics = train(compose_train(["data=custom", f"data.cube_path={data / 'cube.npy'}",
                                   f"data.gt_path={data / 'gt.npy'}", *keep, *TINY], tmp_path / "run"))
    new = Path(shutil.move(data, tmp_path / "elsewhere"))
    base = [f"ckpt_path={metrics['checkpoint']}", "inference.progress=false"]
    with pytest.raises(HsiError, match="cube_path="):
        predict(compose_config("predict", base, tmp_path / "lost"))
    found = predict(compose_config("predict", [*base, f"moved.cube_path={new / 'cube.npy'}",
                                               f"moved.gt_path={new / 'gt.npy'}"], tmp_path / "found"))
    assert 0 <= found["oa"] <= 1
