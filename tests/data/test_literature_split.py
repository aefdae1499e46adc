"""The literature's fixed splits (`data/split=fixed_indian_pines`) and the split audit (metrics.json's
`audit`, `hsi.summarize`'s columns)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from hsi.data.readers.download import FingerprintMismatchError
from hsi.data.readers.io import read_array
from hsi.data.scenes.catalogue import SPLIT_CATALOGUE
from hsi.data.splits.fixed import (
    FixedSplit,
    SplitFilesNotFoundError,
    apply_split_labels,
    carve_validation,
    read_split_labels,
)
from hsi.data.splits.leakage import audit_split_file, split_audit
from hsi.errors import ConfigError, DataError
from hsi.run.validation import check_train_config
from hsi.studies.jobs import read_job
from hsi.studies.summaries import results_csv, results_markdown
from tests.conftest import PROJECT_ROOT, compose_train, swept_rows

IP_TRAIN_PER_CLASS = [11, 50, 48, 48, 50, 48, 15, 50, 15, 50, 50, 47, 49, 46, 48, 44]  # EHU order
IP_TEST_PER_CLASS = [33, 1365, 769, 178, 423, 670, 11, 428, 5, 915, 2386, 526, 156, 1211, 323, 42]


# -- the audit on a constructed case ---------------------------------------------------------------
def _constructed() -> tuple[tuple[int, int], dict[str, np.ndarray]]:
    """One training pixel at (5, 5) of a 12x12 scene; test pixels 1, 3, 4 and 5 px away (Chebyshev),
    validation pixels 1 and 4 px away."""
    split = {"train": np.array([[5, 5]]),
             "test": np.array([[5, 6], [5, 8], [9, 9], [0, 0]]),
             "val": np.array([[4, 4], [1, 9]])}
    return (12, 12), split


def test_audit_of_a_constructed_split_matches_the_hand_computed_shares() -> None:
    shape, split = _constructed()
    audit = split_audit(shape, split, patch_size=5)  # margin 2: only the test pixel 1 px away
    assert audit == {"window": 5,
                     "test_in_window": 0.25, "test_in_7x7": 0.5, "test_in_9x9": 0.75, "test_in_25x25": 1.0,
                     "val_in_window": 0.5, "val_in_7x7": 0.5, "val_in_9x9": 1.0, "val_in_25x25": 1.0}
    empty = split_audit(shape, {"train": split["train"], "test": split["test"],
                                "val": np.zeros((0, 2), dtype=np.int64)}, patch_size=1)
    assert empty["test_in_window"] == 0.0 and empty["val_in_9x9"] is None  # no validation pixels


def _job(folder: Path, patch_size: int, metrics: dict, split: dict[str, np.ndarray], seed: int) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"patch_size": patch_size},
                                                                    "seed": seed}))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    np.savez(folder / "split.npz", labels=np.ones((12, 12), dtype=np.int16), **split)


def test_summarize_reports_the_audit_from_metrics_or_from_an_older_runs_split(tmp_path: Path) -> None:
    shape, split = _constructed()
    metrics = {"oa": 0.9, "aa": 0.8, "kappa": 0.7, "val_oa": 0.95, "leakage": 0.25}
    recorded = {**metrics, "audit": split_audit(shape, split, 5)}
    _job(tmp_path / "0", 5, recorded, split, seed=0)
    _job(tmp_path / "1", 5, metrics, split, seed=1)  # written before metrics.json held the audit
    jobs = [read_job(tmp_path / name) for name in ("0", "1")]
    for job in jobs:
        assert job.metrics["test_in_7x7"] == 0.5 and job.metrics["val_in_9x9"] == 1.0
    assert audit_split_file(tmp_path / "1" / "split.npz", 5)["test_in_9x9"] == 0.75
    header, *rows = [line.split(",") for line in results_csv(jobs).strip().splitlines()]
    for key, value in (("test_in_window", "0.25"), ("test_in_25x25", "1.0"), ("val_in_window", "0.5")):
        assert [row[header.index(key)] for row in rows] == [value, value]
    table = results_markdown(tmp_path, jobs, None)
    assert "test in 7x7 | test in 9x9 | test in 25x25 | val in win" in table
    assert "| 0.500 | 0.750 | 1.000 | 0.500 |" in table


# -- the fixed split's machinery on constructed label images -----------------------------------------
def test_mapping_applied_unlabelled_pixels_dropped_and_conflicts_refused() -> None:
    labels = np.array([[1, 1, 0, 2],
                       [2, 2, 1, 0]])
    coords = np.argwhere(labels > 0)
    train = np.array([[1, 0, 1, 0],   # (0, 2) unlabelled in the ground truth: dropped
                      [0, 0, 0, 0]])
    test = np.array([[0, 0, 0, 2],
                     [2, 0, 0, 2]])   # (1, 3) unlabelled: dropped
    chosen, dropped = apply_split_labels(labels, coords, {"train": train, "test": test}, "toy")
    assert dropped == {"train": 1, "test": 1}
    assert [tuple(coords[i]) for i in chosen["train"]] == [(0, 0)]
    assert [tuple(coords[i]) for i in chosen["test"]] == [(0, 3), (1, 0)]
    wrong = test.copy()
    wrong[1, 0] = 1  # the ground truth says class 2
    with pytest.raises(DataError, match="disagree with the scene's ground truth"):
        apply_split_labels(labels, coords, {"train": train, "test": wrong}, "toy")


def test_validation_carved_from_training_pixels_per_class_deterministically() -> None:
    targets = np.array([0] * 10 + [1] * 3 + [2] * 40)
    train = np.array([0, 1, 2, 3, 4, 10, 11, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30])
    kept, val = carve_validation(targets, train, 0.2, seed=3)
    assert set(val) <= set(train) and not set(val) & set(kept)
    assert sorted(np.concatenate([kept, val]).tolist()) == sorted(train.tolist())
    # per class max(1, round(0.2 n)): 5 -> 1, 2 -> 1 (never all of a class), 11 -> 2
    assert np.bincount(targets[val], minlength=3).tolist() == [1, 1, 2]
    rng = np.random.default_rng(3)  # the documented recipe, class by class in increasing order
    expected = []
    for c in (0, 1, 2):
        idx = train[targets[train] == c]
        expected += idx[rng.permutation(len(idx))[:min(max(1, round(0.2 * len(idx))), len(idx) - 1)]].tolist()
    assert val.tolist() == sorted(expected)
    again = carve_validation(targets, train, 0.2, seed=3)
    assert np.array_equal(again[1], val)
    assert len(carve_validation(targets, train, 0.0, seed=3)[1]) == 0


def test_bad_settings_and_missing_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown fixed split"):
        FixedSplit(name="nowhere", split_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="val_ratio"):
        FixedSplit(split_dir=str(tmp_path), val_ratio=1.0)
    with pytest.raises(SplitFilesNotFoundError, match="IndianTR123_temp123.tif"):
        read_split_labels("indian_pines_fixed", tmp_path, download=False)


def test_experiment_literature_composes_with_the_fixed_split(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=literature", "data=custom", "data.cube_path=cube.mat",
                         "+leaderboard=cnn2d_7", "paths.data_dir=/data"], tmp_path)
    split = cfg.data.split
    assert split._target_ == "hsi.data.splits.fixed.FixedSplit"
    assert split.name == "indian_pines_fixed" and split.val_ratio == 0.2
    assert split.split_dir == "/data/splits"
    assert cfg.data.patch_size == 7 and cfg.data.pca.fit == "train" and cfg.trainer.max_epochs == 20
    assert cfg.callbacks.model_checkpoint.monitor == "val/oa"
    assert cfg.callbacks.early_stopping.patience == 10
    pavia = compose_train(["experiment=literature", "data=pavia_university",
                           "data/split=fixed_pavia_university"], tmp_path)
    assert pavia.data.split.name == "pavia_university_fixed"


# -- the real files (../shared/data) ----------------------------------------------------------------
def _ip_gt(shared: Path) -> np.ndarray:
    return read_array(shared / "indian_pines" / "Indian_pines_gt.mat", None, 2, "gt").astype(np.int64)


def test_fixed_indian_pines_loads_with_the_mapping_and_drops_what_it_must(shared_data: Path) -> None:
    labels = _ip_gt(shared_data)
    coords = np.argwhere(labels > 0)
    strategy = FixedSplit(split_dir=str(shared_data / "splits"), download=False)
    split, report = strategy(labels, coords, 9, seed=0)
    assert report["dropped_unlabelled"] == {"train": 26, "test": 230}
    targets = labels[coords[:, 0], coords[:, 1]] - 1
    trained = np.concatenate([split["train"], split["val"]])
    assert np.bincount(targets[trained], minlength=16).tolist() == IP_TRAIN_PER_CLASS
    assert np.bincount(targets[split["test"]], minlength=16).tolist() == IP_TEST_PER_CLASS
    assert len(split["val"]) == 135 and len(split["train"]) == 534 and len(split["test"]) == 9441
    assert not set(split["val"]) & set(split["test"]) and not set(split["train"]) & set(split["test"])
    # the files' class 14 is Alfalfa (EHU 1): every Alfalfa training pixel is one of the file's 14s
    images = read_split_labels("indian_pines_fixed", shared_data / "splits")
    raw = read_array(shared_data / "splits" / "indian_pines_fixed" / "IndianTR123_temp123.tif", None, 2, "tr")
    alfalfa = coords[trained[targets[trained] == 0]]
    assert (raw[alfalfa[:, 0], alfalfa[:, 1]] == 14).all() and (images["train"][raw == 14] == 1).all()
    again, _ = strategy(labels, coords, 9, seed=0)
    other, _ = strategy(labels, coords, 9, seed=1)
    assert np.array_equal(again["val"], split["val"]) and not np.array_equal(other["val"], split["val"])


def test_the_published_split_leaks_as_the_readme_says(shared_data: Path) -> None:
    labels = _ip_gt(shared_data)
    _, report = FixedSplit(split_dir=str(shared_data / "splits"), download=False)(
        labels, np.argwhere(labels > 0), 7, seed=0)
    audit = report["published_audit"]
    assert round(audit["test_in_7x7"], 3) == 0.789
    assert round(audit["test_in_9x9"], 3) == 0.901
    assert audit["test_in_25x25"] == 1.0 and audit["test_in_window"] == audit["test_in_7x7"]


def test_fixed_pavia_university_on_its_ground_truth(shared_data: Path) -> None:
    labels = read_array(shared_data / "pavia_university" / "PaviaU_gt.mat", None, 2, "gt").astype(np.int64)
    coords = np.argwhere(labels > 0)
    split, report = FixedSplit(name="pavia_university_fixed", split_dir=str(shared_data / "splits"),
                               download=False)(labels, coords, 9, seed=0)
    assert report["dropped_unlabelled"] == {"train": 0, "test": 0}
    assert len(split["train"]) + len(split["val"]) == 2774 and len(split["test"]) == 40002
    assert report["unused_labelled"] == 0
    audit = report["published_audit"]
    assert (round(audit["test_in_7x7"], 3), round(audit["test_in_9x9"], 3),
            round(audit["test_in_25x25"], 3)) == (0.098, 0.132, 0.415)


def test_a_file_with_another_fingerprint_is_refused(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "indian_pines_fixed"
    folder.mkdir()
    spec = SPLIT_CATALOGUE["indian_pines_fixed"]
    shutil.copy(shared_data / "splits" / "indian_pines_fixed" / spec.test.filename,
                folder / spec.train.filename)  # the test image under the training image's name
    shutil.copy(shared_data / "splits" / "indian_pines_fixed" / spec.test.filename, folder)
    with pytest.raises(FingerprintMismatchError):
        read_split_labels("indian_pines_fixed", tmp_path)


def test_sweep_literature_lists_every_leaderboard_row(tmp_path: Path) -> None:
    rows = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "leaderboard").glob("*.yaml"))
    cfg = compose_train(["experiment=literature", "sweep=literature", "data=indian_pines"], tmp_path)
    swept = swept_rows(cfg.hydra.sweeper.params["+leaderboard"])
    assert sorted(swept) == rows and cfg.hydra.sweeper.params["seed"] == "0,1,2"
    for row in ("hybridsn_fast_5", "ssftt_7"):
        row_cfg = compose_train(["experiment=literature", "data=indian_pines", f"+leaderboard={row}"],
                                tmp_path)
        check_train_config(row_cfg)
        assert row_cfg.data.patch_size == int(row.rsplit("_", 1)[1])
        assert row_cfg.data.split._target_ == "hsi.data.splits.fixed.FixedSplit"


def test_missing_files_are_fetched_from_the_catalogue_urls_and_checked(shared_data: Path,
                                                                       tmp_path: Path) -> None:
    source = shared_data / "splits" / "indian_pines_fixed"
    fetched: list[str] = []

    def fetch(url: str, dest: Path) -> None:  # the repository's files, from ../shared/data
        fetched.append(url)
        shutil.copy(source / url.rsplit("/", 1)[1], dest)

    images = read_split_labels("indian_pines_fixed", tmp_path, download=True, fetch=fetch)
    spec = SPLIT_CATALOGUE["indian_pines_fixed"]
    assert fetched == [spec.train.url, spec.test.url]
    assert fetched[0].startswith("https://raw.githubusercontent.com/danfenghong/IEEE_TGRS_GCN/")
    assert int((images["train"] > 0).sum()) == 695 and int((images["test"] > 0).sum()) == 9671

    def offline(url: str, dest: Path) -> None:
        raise OSError("network unreachable")

    with pytest.raises(SplitFilesNotFoundError, match="download failed"):
        read_split_labels("indian_pines_fixed", tmp_path / "elsewhere", download=True, fetch=offline)


def test_a_run_on_the_fixed_split_records_the_split_and_its_audit(shared_data: Path, tmp_path: Path) -> None:
    from hsi.train import train

    cfg = compose_train(["experiment=literature", "data=custom",
                         f"data.cube_path={shared_data / 'indian_pines_8bit' / 'IP_200_M.mat'}",
                         f"data.gt_path={shared_data / 'indian_pines' / 'Indian_pines_gt.mat'}",
                         f"paths.data_dir={shared_data}", "data.download=false", "+leaderboard=svm",
                         "seed=0", "trainer=cpu", "logger=none"], tmp_path)
    train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert (saved["n_train"], saved["n_val"], saved["n_test"]) == (534, 135, 9441)
    assert saved["split"]["method"] == "fixed" and saved["split"]["val_from"] == "train"
    assert saved["split"]["dropped_unlabelled"] == {"train": 26, "test": 230}
    audit = saved["audit"]
    assert audit["window"] == 9 and audit["test_in_window"] == saved["leakage"] == audit["test_in_9x9"]
    assert audit["test_in_7x7"] < audit["test_in_9x9"] < audit["test_in_25x25"] == 1.0
    split = np.load(tmp_path / "split.npz")
    assert audit_split_file(tmp_path / "split.npz", 9) == audit
    assert len(split["val"]) == 135
