"""`hsi.train` end to end through Hydra: outputs, resume, multirun, real Salinas-A."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hsi.data import DatasetNotFoundError
from hsi.train import train
from tests.conftest import FAST_SYNTHETIC, PROJECT_ROOT, compose_train

RUN_FILES = ["metrics.json", "classification_report.txt", "confusion_matrix.csv",
             "confusion_matrix.png", "split.npz"]


def test_fast_dev_run(synthetic_cfg) -> None:
    metrics = train(synthetic_cfg("debug=fast"))
    assert 0.0 <= metrics["oa"] <= 1.0


def test_metrics_json_records_leakage_and_the_split(synthetic_cfg, tmp_path: Path) -> None:
    train(synthetic_cfg("model=svm", "data/split=disjoint", "data.split.block_size=6",
                        "data.split.test_ratio=0.7",
                        "map=false"))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["leakage"] == 0.0
    split = saved["split"]
    assert split["method"] == "disjoint" and split["margin"] == 4
    assert [c["train"] > 0 for c in split["classes"]] == [True] * len(saved["class_names"])


def test_training_run_writes_every_output(synthetic_cfg, tmp_path: Path) -> None:
    cfg = synthetic_cfg("trainer.max_epochs=2")
    metrics = train(cfg)
    for name in RUN_FILES:
        assert (tmp_path / name).is_file(), name
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} >= {"last.ckpt"}
    assert len(list((tmp_path / "checkpoints").glob("epoch_*.ckpt"))) == 1
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert events

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("oa", "aa", "kappa", "per_class_accuracy", "class_names", "n_train", "n_val",
                "n_test", "epochs", "train_seconds", "test_seconds", "checkpoint"):
        assert key in saved, key
    assert saved["epochs"] == 2 and Path(saved["checkpoint"]).name.startswith("epoch_")
    split = np.load(tmp_path / "split.npz")
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (
        saved["n_train"], saved["n_val"], saved["n_test"])

    # the files agree with each other
    confusion = np.loadtxt(tmp_path / "confusion_matrix.csv", delimiter=",", skiprows=1,
                           usecols=range(1, 5))
    assert confusion.sum() == saved["n_test"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(saved["oa"], abs=1e-6)
    report = (tmp_path / "classification_report.txt").read_text()
    assert "class_1" in report and f"{saved['oa']:.4f}" in report

    # the test ran on the best-validation checkpoint, and TensorBoard got the results
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for event_file in events:
        acc = EventAccumulator(str(event_file), size_guidance={"images": 0})
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    assert {"curves/loss_train", "curves/OA_val", "test/oa", "test/confusion_matrix", "map"} <= tags


def test_no_validation_tests_last_epoch_weights(synthetic_cfg, tmp_path: Path,
                                               recwarn: pytest.WarningsRecorder) -> None:
    metrics = train(synthetic_cfg("trainer.max_epochs=1", "data.split.val_ratio=0",
                                  "callbacks.model_checkpoint.monitor=null"))
    assert metrics["n_val"] == 0 and Path(metrics["checkpoint"]).name == "last.ckpt"
    # the validation loop is skipped, not fed an empty list (which Lightning warns about)
    assert not [w for w in recwarn if "across ranks is zero" in str(w.message)]


def test_resume_continues_the_epoch_count(synthetic_cfg, tmp_path: Path) -> None:
    first = train(synthetic_cfg("trainer.max_epochs=1", "test=false"))
    assert first == {}
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    resumed = train(synthetic_cfg("trainer.max_epochs=3", f"ckpt_path={last}"))
    assert resumed["epochs"] == 3
    assert torch.load(last, weights_only=False)["epoch"] == 2


def test_missing_scene_files_stop_with_a_clear_error(tmp_path: Path) -> None:
    cfg = compose_train(["data=indian_pines", "data.download=false", f"paths.data_dir={tmp_path}"],
                        tmp_path)
    with pytest.raises(DatasetNotFoundError, match="Indian_pines_corrected.mat"):
        train(cfg)


def test_multirun_writes_one_folder_per_job(tmp_path: Path) -> None:
    overrides = [o for o in FAST_SYNTHETIC if not o.startswith("trainer=")]
    cmd = [sys.executable, "-m", "hsi.train", "-m", *overrides, "trainer=cpu",
           "trainer.max_epochs=1", "logger=csv", "seed=1,2", f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    seeds = [json.loads((job / "metrics.json").read_text())["seed"] for job in jobs]
    assert seeds == [1, 2]


def test_real_salinas_a_trains_briefly(shared_data: Path, tmp_path: Path) -> None:
    cfg = compose_train(["data=salinas_a", f"paths.data_dir={shared_data}", "data.patch_size=11",
                         "data.pca.components=15", "data.eval_batch_size=512",
                         "trainer=cpu", "trainer.max_epochs=3", "logger=none",
                         "callbacks.progress_bar.refresh_rate=0"], tmp_path)
    metrics = train(cfg)
    assert metrics["class_names"][0] == "Brocoli_green_weeds_1"
    assert metrics["oa"] >= 0.9, metrics


def test_svm_baseline_writes_the_same_files_as_networks(synthetic_cfg, tmp_path: Path) -> None:
    metrics = train(synthetic_cfg("model=svm", "model.grid={C:[1,100]}"))
    for name in RUN_FILES:
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["estimator"]["C"] in (1, 100) and saved["params"] is None
    assert metrics["oa"] > 0.8  # the synthetic classes differ by spectrum alone
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert Path(saved["checkpoint"]).name == "model.pkl"
