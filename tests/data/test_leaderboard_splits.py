"""The honest leaderboard: its rows, the one split every row of a seed is tested on, the
summary beside the random split and the command that trains the best setting again."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hsi.data.readers.io import read_array
from hsi.data.splits.block_assignment import field_labels, pool_small_fields
from hsi.data.splits.disjoint import DisjointSplit
from hsi.data.splits.leakage import window_mask
from hsi.errors import ConfigError
from hsi.run.validation import check_train_config
from hsi.studies.summaries import cli, summarize
from tests.conftest import PROJECT_ROOT, compose_train, swept_rows

ROWS = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "leaderboard").glob("*.yaml"))


@pytest.mark.parametrize("experiment", ["honest_leaderboard", "random_leaderboard"])
def test_the_sweep_lists_every_row_and_each_row_composes(experiment: str, tmp_path: Path) -> None:
    cfg = compose_train([f"experiment={experiment}", "sweep=leaderboard", "data=salinas_a"], tmp_path)
    swept = swept_rows(cfg.hydra.sweeper.params["+leaderboard"])
    assert sorted(swept) == ROWS and len(swept) == len(set(swept))
    assert cfg.hydra.sweeper.params["seed"] == "0,1,2"
    for row in swept:
        row_cfg = compose_train([f"experiment={experiment}", "data=salinas_a", f"+leaderboard={row}"],
                                tmp_path)
        check_train_config(row_cfg)  # the row's window suits its network
        network = row.rsplit("_", 1)[0] if row[-1].isdigit() else row
        own = OmegaConf.load(PROJECT_ROOT / "conf" / "model" / f"{network}.yaml")
        assert (row_cfg.model.net._target_ == own.net._target_) if "net" in row_cfg.model else \
            row_cfg.model._target_ == own._target_
        if row[-1].isdigit():
            assert row_cfg.data.patch_size == int(row.rsplit("_", 1)[1])
        if experiment == "honest_leaderboard":
            assert row_cfg.data.split.margin == 12 >= row_cfg.data.patch_size // 2
            assert row_cfg.data.split.every_class and row_cfg.data.pca.fit == "train"
        else:
            assert row_cfg.data.split._target_.endswith("RandomSplit")
        assert row_cfg.callbacks.model_checkpoint.monitor == "val/oa"


def test_one_split_for_every_window_of_a_table(shared_data: Path) -> None:
    """With the largest window's margin, the split is the same whatever the row's window, and no
    test or validation pixel lies in any training window of any row."""
    labels = read_array(shared_data / "indian_pines" / "Indian_pines_gt.mat", None, 2, "ground truth")
    labels = labels.astype(np.int64)
    coords = np.argwhere(labels > 0)
    strategy = DisjointSplit(0.9, 0.05, 12, every_class=True, margin=12)
    splits = [strategy(labels, coords, patch, 0)[0] for patch in (7, 9, 15, 25)]
    for split in splits[1:]:
        for k in ("train", "val", "test"):
            np.testing.assert_array_equal(split[k], splits[0][k])
    near = window_mask(labels.shape, coords[splits[0]["train"]], 25)
    for k in ("val", "test"):
        assert len(splits[0][k]) > 300 and not near[coords[splits[0][k], 0], coords[splits[0][k], 1]].any()
    # the window's own margin (no margin set) drops fewer pixels: the shared split is a real choice
    own, _ = DisjointSplit(0.9, 0.05, 12, every_class=True)(labels, coords, 9, 0)
    assert len(own["test"]) > len(splits[0]["test"])


def test_a_margin_smaller_than_the_window_is_refused() -> None:
    labels = np.ones((32, 32), dtype=np.int64)
    coords = np.argwhere(labels > 0)
    with pytest.raises(ConfigError, match=r"data.split.margin=4 is smaller .*patch_size=25"):
        DisjointSplit(0.5, 0.1, 8, margin=4)(labels, coords, 25, 0)
    for bad in (-1, 2.5, True, "4"):
        with pytest.raises(ConfigError, match="data.split.margin"):
            DisjointSplit(0.5, 0.1, 8, margin=bad)
    config = DisjointSplit(0.5, 0.1, 8, margin=6).config()
    assert instantiate(config) == DisjointSplit(0.5, 0.1, 8, margin=6)


def _job(folder: Path, overrides: list[str], metrics: dict | None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text("{}\n")
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


def _fake_multirun(root: Path, oa: dict[str, list[float]], val: dict[str, list[float]]) -> Path:
    for row, values in oa.items():
        for seed, value in enumerate(values):
            _job(root / f"{row}_{seed}", [f"+leaderboard={row}", f"seed={seed}", "data=salinas_a"],
                 {"oa": value, "aa": value, "kappa": value, "val_oa": val[row][seed],
                  "n_train": 100 + seed, "n_test": 1000, "train_seconds": 5.0, "leakage": 0.0})
    return root


def test_summary_beside_the_random_split_and_the_best_setting_on_validation(tmp_path: Path) -> None:
    honest = _fake_multirun(tmp_path / "honest", {"svm": [0.5, 0.6, 0.7], "cnn1d": [0.4, 0.5, 0.6]},
                            {"svm": [0.1, 0.1, 0.1], "cnn1d": [0.9, 0.8, 0.7]})
    random = _fake_multirun(tmp_path / "random", {"svm": [0.8, 0.8, 0.8], "cnn1d": [0.9, 0.9, 0.9]},
                            {"svm": [0.8, 0.8, 0.8], "cnn1d": [0.9, 0.9, 0.9]})
    summary = summarize(honest, beside=random)
    assert summary["failed"] == []
    table = (honest / "results.md").read_text()
    svm = next(line for line in table.splitlines() if line.startswith("| svm "))
    head = next(line for line in table.splitlines() if line.startswith("| leaderboard"))
    row = dict(zip([c.strip() for c in head.strip("|").split("|")],
                   [c.strip() for c in svm.strip("|").split("|")]))
    assert row["OA"] == "0.6000 ± 0.1000" and row["OA beside"] == "0.8000 ± 0.0000"
    assert row["gap"] == "+0.2000" and row["train px"] == "101" and row["test px"] == "1000"
    # cnn1d has the best mean validation OA although svm has the better test OA
    section = table.split("## Best setting on validation", 1)[1]
    assert "leaderboard=cnn1d: mean val_oa 0.8000 over 3 run(s)" in section
    command = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert shlex.split(command) == ["python", "-m", "hsi.train", "-m", "+leaderboard=cnn1d",
                                    "data=salinas_a", "seed=0,1,2"]


def test_summary_beside_a_multirun_without_the_setting(tmp_path: Path) -> None:
    honest = _fake_multirun(tmp_path / "honest", {"svm": [0.5], "cnn1d": [0.4]},
                            {"svm": [0.1], "cnn1d": [0.9]})
    other = _fake_multirun(tmp_path / "other", {"svm": [0.7]}, {"svm": [0.7]})
    summarize(honest, beside=other)
    cnn1d = next(line for line in (honest / "results.md").read_text().splitlines()
                 if line.startswith("| cnn1d "))
    assert "| – | – |" in cnn1d
    with pytest.raises(FileNotFoundError, match="No multirun folder"):
        summarize(honest, beside=tmp_path / "missing")


def test_the_random_split_beside_pools_its_starts(tmp_path: Path) -> None:
    honest = _fake_multirun(tmp_path / "honest", {"svm": [0.5, 0.6], "cnn1d": [0.5, 0.5]},
                            {"svm": [0.1, 0.1], "cnn1d": [0.1, 0.1]})
    first = _fake_multirun(tmp_path / "first", {"svm": [0.8]}, {"svm": [0.8]})
    second = _fake_multirun(tmp_path / "second", {"svm": [0.6, 0.7]}, {"svm": [0.8, 0.8]})
    assert cli([str(honest), "--beside", str(first), "--beside", str(second)]) == 0
    table = (honest / "results.md").read_text()
    assert "| svm | 2 | 0.5500 ± 0.0707 |" in table and "| 0.7000 ± 0.1000 | +0.1500 |" in table
    assert f"{first}, {second}" in table


def test_a_grid_run_in_two_starts_is_one_table(tmp_path: Path) -> None:
    first = _fake_multirun(tmp_path / "first", {"svm": [0.5, 0.6], "cnn1d": [0.4, 0.5]},
                           {"svm": [0.1, 0.1], "cnn1d": [0.9, 0.8]})
    second = _fake_multirun(tmp_path / "second", {"cnn2d_9": [0.7, 0.8]}, {"cnn2d_9": [0.95, 0.95]})
    summary = summarize(first, more=[second])
    assert summary["jobs"] == 6 and summary["failed"] == []
    table = (first / "results.md").read_text()
    assert "| cnn2d_9 | 2 | 0.7500 ± 0.0707 |" in table
    section = table.split("## Best setting on validation", 1)[1]  # found in the second start
    assert "leaderboard=cnn2d_9: mean val_oa 0.9500 over 2 run(s), the best of 3 settings" in section
    assert "second/cnn2d_9_0" in (first / "results.csv").read_text()


def test_bookkeeping_overrides_do_not_split_a_setting(tmp_path: Path) -> None:
    first = _fake_multirun(tmp_path / "first", {"svm": [0.5], "cnn1d": [0.3]},
                           {"svm": [0.1], "cnn1d": [0.1]})
    second = _fake_multirun(tmp_path / "second", {"svm": [0.7]}, {"svm": [0.2]})
    overrides = second / "svm_0" / ".hydra" / "overrides.yaml"
    lines = yaml.safe_load(overrides.read_text()) + ["task_name=second", "sweep=leaderboard",
                                                     "paths.log_dir=/elsewhere"]
    overrides.write_text(yaml.safe_dump(lines))
    summarize(first, more=[second])
    table = (first / "results.md").read_text()
    assert "| svm | 2 | 0.6000 ± 0.1414 |" in table
    assert "task_name" not in table and "paths.log_dir" not in table


# -- every field in training (experiment=honest_fields) -------------------------------------------
def test_fields_are_the_connected_regions_of_each_class() -> None:
    labels = np.zeros((8, 8), dtype=np.int64)
    labels[0:2, 0:2] = 1          # field 0
    labels[2, 2] = 1              # touches it at a corner: the same field
    labels[5:7, 5:7] = 1          # another field of class 1
    labels[0:2, 5:8] = 2          # class 2
    labels[2, 3] = 2              # touches class 1 only: a field of its own
    coords = np.argwhere(labels > 0)
    fields = field_labels(labels, coords)
    by_pixel = dict(zip(map(tuple, coords.tolist()), fields.tolist()))
    assert by_pixel[(0, 0)] == by_pixel[(2, 2)] != by_pixel[(5, 5)]
    assert by_pixel[(0, 5)] != by_pixel[(2, 3)] and len(set(fields.tolist())) == 4
    assert sorted(set(fields.tolist())) == [0, 1, 2, 3]


def test_every_field_trains_validates_and_tests_every_field(shared_data: Path) -> None:
    """On Indian Pines, every field (not just every class) gets training, validation and test
    pixels, none of them within 4 px of a training pixel; the split is the same for every window
    of the table, and the class-level split it replaces trains Soybean-mintill on one field only."""
    labels = read_array(shared_data / "indian_pines" / "Indian_pines_gt.mat", None, 2, "ground truth")
    labels = labels.astype(np.int64)
    coords = np.argwhere(labels > 0)
    fields = field_labels(labels, coords)
    strategy = DisjointSplit(0.9, 0.05, 6, every_class=True, margin=4, every_field=True)
    split, report = strategy(labels, coords, 9, 0)
    for subset in ("train", "val", "test"):
        assert set(fields[split[subset]].tolist()) == set(fields.tolist())
    assert report["every_field"] and report["fields"] == {"total": 42, "pooled": 4, "train": 42,
                                                          "val": 42, "test": 42}
    near = window_mask(labels.shape, coords[split["train"]], 9)
    for subset in ("val", "test"):
        assert not near[coords[split[subset], 0], coords[split[subset], 1]].any()
    assert 0.10 < len(split["train"]) / len(coords) < 0.16 and len(split["test"]) > 4000
    smaller, _ = strategy(labels, coords, 5, 0)
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(smaller[k], split[k])
    soybean_mintill = labels[coords[:, 0], coords[:, 1]] == 11
    per_class, _ = DisjointSplit(0.9, 0.05, 12, every_class=True, margin=12)(labels, coords, 25, 0)
    trained = soybean_mintill[per_class["train"]]
    assert len(set(fields[per_class["train"]][trained].tolist())) == 1
    assert len(set(fields[split["train"]][soybean_mintill[split["train"]]].tolist())) == 5


def test_fields_smaller_than_a_block_are_pooled_per_class() -> None:
    fields = np.array([0, 0, 0, 1, 2, 2, 3, 4, 4, 4])
    targets = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    groups = pool_small_fields(fields, targets, min_pixels=3)
    # fields 0 and 4 are big enough; 1 and 2 (class 0) share a group, 3 (class 1) is its own
    np.testing.assert_array_equal(groups, [0, 0, 0, 1, 1, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(pool_small_fields(fields, targets, 1), fields)  # none pooled


def test_every_field_on_a_scene_of_many_fragments(shared_data: Path) -> None:
    """KSC's ground truth has 52 fields, 12 of them smaller than a 6 px block: every other field is
    trained, the fragments are pooled per class, and nothing lies in a training window."""
    labels = read_array(shared_data / "ksc" / "KSC_gt.mat", None, 2, "ground truth").astype(np.int64)
    coords = np.argwhere(labels > 0)
    fields = field_labels(labels, coords)
    split, report = DisjointSplit(0.9, 0.05, 6, every_class=True, margin=4, every_field=True)(
        labels, coords, 9, 0)
    sizes = np.bincount(fields)
    assert report["fields"]["total"] == 52 and report["fields"]["pooled"] == int((sizes < 36).sum()) == 12
    assert set(np.flatnonzero(sizes >= 36).tolist()) <= set(fields[split["train"]].tolist())
    near = window_mask(labels.shape, coords[split["train"]], 9)
    for subset in ("val", "test"):
        assert len(split[subset]) and not near[coords[split[subset], 0], coords[split[subset], 1]].any()


def test_every_field_is_checked_and_round_trips() -> None:
    with pytest.raises(ConfigError, match=r"data\.split\.every_field='yes' must be true or false"):
        DisjointSplit(every_field="yes")
    config = DisjointSplit(0.9, 0.05, 6, margin=4, every_field=True).config()
    assert config["every_field"] is True and instantiate(config).every_field is True
    assert DisjointSplit().every_field is False  # older runs rebuild their split unchanged


def test_the_small_grid_composes_on_a_margin_every_row_fits(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=honest_fields", "sweep=leaderboard_small", "data=salinas_a"],
                        tmp_path)
    swept = swept_rows(cfg.hydra.sweeper.params["+leaderboard"])
    assert set(swept) <= set(ROWS) and cfg.hydra.sweeper.params["seed"] == "0,1,2"
    for row in swept:
        row_cfg = compose_train(["experiment=honest_fields", "data=salinas_a", f"+leaderboard={row}"],
                                tmp_path)
        check_train_config(row_cfg)
        assert row_cfg.data.split.every_field and row_cfg.data.pca.fit == "train"
        assert row_cfg.data.split.margin == 4 >= row_cfg.data.patch_size // 2
    assert {r for r in ROWS if not r[-1].isdigit() or int(r.rsplit("_", 1)[1]) <= 9} == set(swept)


def test_an_every_field_run_trains_on_every_field_of_a_synthetic_scene(tmp_path: Path) -> None:
    from hsi.train import train

    cfg = compose_train(["experiment=honest_fields", "data=synthetic", "data.height=48", "data.width=48",
                         "data.bands=30", "data.classes=4", "data.pca.components=12", "model=cnn1d",
                         "trainer=cpu", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0"],
                        tmp_path)
    metrics = train(cfg)
    split = np.load(tmp_path / "split.npz")
    labels = split["labels"]
    fields = field_labels(labels, np.argwhere(labels > 0))
    assert fields.max() + 1 > 4  # the synthetic scene's classes have several fields each
    report = metrics["split"]
    assert report["every_field"] and report["margin"] == 4 and metrics["leakage"] == 0.0
    assert report["fields"]["train"] == report["fields"]["total"] == fields.max() + 1
    near_train = window_mask(labels.shape, split["train"], 9)
    for subset in ("val", "test"):
        assert len(split[subset]) and not near_train[split[subset][:, 0], split[subset][:, 1]].any()


def test_summary_counts_the_pretraining_seconds_of_pretrained_rows(tmp_path: Path) -> None:
    root = tmp_path / "pretrained"
    for pool, seconds in (("all", [30.0, 50.0]), ("train_side", [20.0, 24.0])):
        for seed, spent in enumerate(seconds):
            _job(root / f"{pool}_{seed}", [f"pretrain.pool={pool}", f"seed={seed}"],
                 {"oa": 0.5, "aa": 0.5, "kappa": 0.4, "train_seconds": 8.0,
                  "pretrain": {"pool": pool, "seconds": spent}})
    summarize(root)
    lines = (root / "results.md").read_text().splitlines()
    head = next(line for line in lines if line.startswith("| pretrain.pool"))
    titles = [c.strip() for c in head.strip("|").split("|")]
    rows = {line.split("|")[1].strip(): dict(zip(titles, [c.strip() for c in line.strip("|").split("|")]))
            for line in lines if line.startswith(("| all ", "| train_side "))}
    assert rows["all"]["pretrain s"] == "40" and rows["train_side"]["pretrain s"] == "22"
    assert rows["all"]["train s"] == "8"
