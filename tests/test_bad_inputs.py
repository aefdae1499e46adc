"""Bad inputs and faults against the real commands: one clear line naming the key or file, exit
status 1, no traceback, no run files where none should be; and the eight cases that used to give
silently wrong results or lose finished runs.

The command cases run as subprocesses (as a user runs them), all at once in a module fixture,
two at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from hsi.data.preprocessing import PCATransform, cached_fit_pca, fit_pca
from hsi.data.scenes.synthetic import make_synthetic_scene
from hsi.errors import ConfigError, DataError
from hsi.run.config import PROJECT_ROOT
from hsi.utils.files import LOCK_NAME, RunFolderTaken, claim_run_folder
from tests.conftest import FAST_SYNTHETIC

TINY = [o for o in FAST_SYNTHETIC if not o.startswith("trainer=")] + [
    "trainer=cpu", "trainer.max_epochs=1", "logger=none", "map=false"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(module: str, *args: str, run_dir: Path, env: dict[str, str] | None = None) -> Result:
    cmd = [sys.executable, "-m", module, *args, f"hydra.run.dir={run_dir}"]
    inherited = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "HSI_TRACEBACK")}
    full_env = {**inherited, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=full_env, capture_output=True, text=True, timeout=600)
    return Result(done.returncode, done.stdout, done.stderr, run_dir)


# -- files the cases need --------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bad_files")
    scene = make_synthetic_scene(height=20, width=20, bands=24, classes=3)
    out: dict[str, Path] = {}
    np.save(base / "cube.npy", scene.cube)
    np.save(base / "gt.npy", scene.labels)
    out["cube"], out["gt"] = base / "cube.npy", base / "gt.npy"
    constant = np.ones_like(scene.cube) * np.arange(24, dtype=np.float32)  # every band constant
    np.save(base / "constant.npy", constant)
    out["constant"] = base / "constant.npy"
    one_class = (scene.labels > 0).astype(np.uint8)
    np.save(base / "one_class.npy", one_class)
    out["one_class"] = base / "one_class.npy"
    huge = scene.labels.astype(np.int64)
    huge[huge == 3] = 10**12
    np.save(base / "huge_label.npy", huge)
    out["huge_label"] = base / "huge_label.npy"
    scipy.io.savemat(base / "full.mat", {"cube": scene.cube, "gt": scene.labels})
    raw = (base / "full.mat").read_bytes()
    (base / "truncated.mat").write_bytes(raw[: len(raw) // 3])
    (base / "empty.mat").write_bytes(b"")
    out |= {"truncated": base / "truncated.mat", "empty": base / "empty.mat"}
    torch.save({"weight": torch.zeros(3)}, base / "state_dict.pt")
    out["state_dict"] = base / "state_dict.pt"
    (base / "a_folder").mkdir()
    out["folder"] = base / "a_folder"
    return out


def custom(files: dict[str, Path], cube: str = "cube", gt: str = "gt") -> list[str]:
    return ["data=custom", f"data.cube_path={files[cube]}", f"data.gt_path={files[gt]}", "data.patch_size=9",
            "data.pca.components=15", "data.split.test_ratio=0.5", "trainer=cpu", "trainer.max_epochs=1",
            "logger=none", "map=false", "callbacks.progress_bar.refresh_rate=0"]


# Each case: (module, overrides, text the one line must contain). The message must name the key
# or the file.
def cases(files: dict[str, Path]) -> dict[str, tuple[str, list[str], str]]:
    return {
        "window_larger_than_scene": ("hsi.train", [*TINY, "data.patch_size=201"],
                                     "data.patch_size=201 is larger than the scene"),
        "constant_bands": ("hsi.train", custom(files, cube="constant"), "constant"),
        "map_method_typo": ("hsi.train", [*TINY, "map=true", "data.eval_path=bogus"],
                            "data.eval_path='bogus'"),
        "map_method_renamed": ("hsi.train", [*TINY, "map=true", "map_method=dense"],
                               "map_method= is now data.eval_path="),
        "map_dense_for_se": ("hsi.train", [*TINY, "map=true", "model=hybridsn_se", "data.eval_path=dense"],
                             "data.eval_path=dense"),
        "batch_size_zero": ("hsi.train", [*TINY, "data.batch_size=0"], "data.batch_size=0"),
        "window_too_small_for_network": ("hsi.train", [*TINY, "data.patch_size=5"],
                                         "at least 9x9 pixels"),
        "num_workers_negative": ("hsi.train", [*TINY, "data.num_workers=-1"], "data.num_workers=-1"),
        "seed_not_a_number": ("hsi.train", [*TINY, "seed=abc"], "seed='abc'"),
        "pca_fraction": ("hsi.train", [*TINY, "data.pca.components=12.5"], "data.pca.components=12.5"),
        "class_weights_length": ("hsi.train", [*TINY, "model.class_weights=[1,2]"], "model.class_weights"),
        "zero_epochs": ("hsi.train", [*TINY, "trainer.max_epochs=0"], "trainer.max_epochs=0"),
        "endless_epochs": ("hsi.train", [*TINY, "trainer.max_epochs=-1"], "trainer.max_epochs=-1"),
        "single_class": ("hsi.train", custom(files, gt="one_class"), "single class"),
        "truncated_mat": ("hsi.train", custom(files, cube="truncated", gt="truncated"),
                          str(files["truncated"])),
        "empty_mat": ("hsi.train", custom(files, cube="empty", gt="empty"), str(files["empty"])),
        "cube_is_a_folder": ("hsi.train", custom(files, cube="folder"), str(files["folder"])),
        "missing_cube": ("hsi.train", [*custom(files), "data.cube_path=/nonexistent/cube.mat"],
                         "/nonexistent/cube.mat"),
        "checkpoint_is_a_folder": ("hsi.predict", [f"ckpt_path={files['folder']}"], str(files["folder"])),
        "checkpoint_is_a_state_dict": ("hsi.predict", [f"ckpt_path={files['state_dict']}"],
                                       "not a Lightning checkpoint"),
        "checkpoint_truncated": ("hsi.evaluate", [f"ckpt_path={files['truncated']}"], "truncated"),
        "scene_offline": ("hsi.train", ["data=indian_pines", "paths.data_dir=/nonexistent",
                                        "data.download=false", "trainer=cpu", "logger=none"],
                          "Indian_pines_corrected.mat"),
    }


CASE_NAMES = ["window_larger_than_scene", "window_too_small_for_network", "constant_bands",
              "map_method_typo", "map_method_renamed", "map_dense_for_se",
              "batch_size_zero", "num_workers_negative", "seed_not_a_number", "pca_fraction",
              "class_weights_length", "zero_epochs", "endless_epochs", "single_class", "truncated_mat",
              "empty_mat", "cube_is_a_folder", "missing_cube", "checkpoint_is_a_folder",
              "checkpoint_is_a_state_dict", "checkpoint_truncated", "scene_offline"]


# As a user runs them (subprocesses, two at a time): one case per command, and the run folder.
SUBPROCESS_CASES = ["window_larger_than_scene", "batch_size_zero", "checkpoint_is_a_folder",
                    "checkpoint_truncated", "scene_offline"]


@pytest.fixture(scope="module")
def results(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    base = tmp_path_factory.mktemp("bad_runs")
    jobs = cases(files)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, jobs[name][0], *jobs[name][1], run_dir=base / name)
                   for name in SUBPROCESS_CASES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_one_clear_line_no_traceback_no_run_files(name: str, results: dict[str, Result],
                                                  files: dict[str, Path]) -> None:
    result = results[name]
    expected = cases(files)[name][2]
    assert result.returncode == 1, result.output[-2000:]
    assert "Traceback" not in result.output, result.output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    # refused before anything was written: no run folder, no checkpoint, no metrics
    assert not result.run_dir.exists(), sorted(p.name for p in result.run_dir.iterdir())


def run_in_process(module: str, overrides: list[str], run_dir: Path) -> int:
    """The command's work through its error reporting, in this process (fast): exit status."""
    import importlib

    from hsi.run.compat_keys import refuse_old_keys
    from hsi.utils.reporting import report_errors
    from tests.conftest import compose_config

    name = module.removeprefix("hsi.")
    module_name, function = {"train": ("hsi.run.training", "train"), "predict": ("hsi.predict", "predict"),
                             "evaluate": ("hsi.evaluate", "evaluate")}[name]

    def command() -> None:  # as `python -m hsi.<name>` runs: old keys refused before Hydra composes
        refuse_old_keys(name, overrides)
        getattr(importlib.import_module(module_name), function)(compose_config(name, overrides, run_dir))

    try:
        report_errors(command)
    except SystemExit as exit_:
        return int(exit_.code)
    return 0


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if n not in SUBPROCESS_CASES])
def test_every_case_gives_one_clear_line(name: str, files: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    module, overrides, expected = cases(files)[name]
    run_dir = tmp_path / "run"
    assert run_in_process(module, overrides, run_dir) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0], err[-2000:]
    assert "Traceback" not in err
    assert not run_dir.exists() or not any(run_dir.iterdir())  # nothing written


def test_the_traceback_is_there_when_asked(files: dict[str, Path], tmp_path: Path) -> None:
    result = run("hsi.train", *TINY, "data.batch_size=0", run_dir=tmp_path / "run",
                 env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "Traceback" in result.output and "ConfigError" in result.output


# -- 1. a window larger than the scene, or a network that explodes with it -------------------
def test_an_exploding_network_is_refused_before_training(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.run.training import train

    cfg = synthetic_cfg("data.height=96", "data.width=96", "data.patch_size=95", "data.pca.components=30",
                        "data.bands=60")  # HybridSN: 64 x 87 x 87 features x 256 = 124 M parameters
    with pytest.raises(ConfigError, match=r"parameters .*lower data.patch_size"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


# -- 2. constant bands: PCA refuses, the cache keeps nothing, a NaN loss stops training -------
def test_pca_refuses_components_without_variance(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).normal(size=(500, 10)).astype(np.float32)
    pixels = np.concatenate([pixels, np.ones((500, 20), np.float32)], axis=1)  # 20 constant bands
    with pytest.raises(ConfigError, match=r"only 10 components carry variance.*components=10"):
        fit_pca(pixels, 15)
    assert fit_pca(pixels, 10).num_components == 10
    with pytest.raises(DataError, match="Every band of the cube is constant"):
        fit_pca(np.ones((100, 8), np.float32), 3)
    cube = np.ones((10, 10, 8), np.float32)
    with pytest.raises(DataError):
        cached_fit_pca(cube, None, 3, True, 0, "flat", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing cached


def test_a_non_finite_loss_stops_the_run() -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from hsi.models.classifier import HSIClassifier

    model = HSIClassifier({"_target_": "hsi.models.CNN2D", "channels": [4]}, 6, 5, 3)
    x = torch.full((8, 1, 6, 5, 5), float("nan"))
    loader = DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=4)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(DataError, match="training loss became nan"):
        trainer.fit(model, loader)


# -- 3. prediction on a cube with NaN pixels ---------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hsi.run.training import train
    from tests.conftest import compose_train

    run_dir = tmp_path_factory.mktemp("trained")
    metrics = train(compose_train([*TINY, "trainer.max_epochs=2"], run_dir))
    return Path(metrics["checkpoint"])


def test_predict_leaves_nan_pixels_unclassified(checkpoint: Path, tmp_path: Path) -> None:
    from hsi.predict import predict
    from tests.conftest import compose_config

    scene = make_synthetic_scene(height=24, width=24, bands=30, classes=4)
    clean = tmp_path / "clean.npy"
    np.save(clean, scene.cube)
    dirty_cube = scene.cube.copy()
    bad = [(3, 4), (10, 10), (20, 2)]
    for r, c in bad:
        dirty_cube[r, c, 5] = np.nan if r != 10 else np.inf
    dirty = tmp_path / "dirty.npy"
    np.save(dirty, dirty_cube)
    outputs = {}
    for name, path in (("clean", clean), ("dirty", dirty)):
        out = tmp_path / name
        summary = predict(compose_config("predict", [f"ckpt_path={checkpoint}", "data=custom",
                                                     f"data.cube_path={path}",
                                                     "inference.progress=false"], out))
        outputs[name] = (np.load(out / "prediction.npy"), summary)
    labels, summary = outputs["dirty"]
    assert summary["nonfinite_pixels"] == 3
    assert all(labels[r, c] == 0 for r, c in bad)
    others = np.ones(labels.shape, bool)
    for r, c in bad:
        others[r, c] = False
    # the filled values disturb their neighbours' windows only as much as a band mean does: far
    # fewer changes than the 3 x 9 x 9 windows a NaN used to poison
    changed = int((labels[others] != outputs["clean"][0][others]).sum())
    assert changed < 20, changed


# -- 4 and 5. run folders: claimed exclusively, a finished run never overwritten ---------------
def test_two_runs_in_one_folder_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "shared_run"
    cmd = [sys.executable, "-m", "hsi.train", *TINY, f"hydra.run.dir={folder}"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    procs = [subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    loser = outs[[p.returncode for p in procs].index(1)][1]
    assert str(folder) in loser and "Traceback" not in loser
    metrics = json.loads((folder / "metrics.json").read_text())
    assert Path(metrics["checkpoint"]).parent.parent == folder
    assert not (folder / LOCK_NAME).exists()  # released at the end


def test_a_finished_run_is_never_overwritten(files: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "done"
    first = run("hsi.train", *TINY, run_dir=folder)
    assert first.returncode == 0, first.output[-2000:]
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    second = run("hsi.train", *TINY, "data.patch_size=7", run_dir=folder)
    assert second.returncode == 1 and "already holds files" in second.stderr
    assert "Traceback" not in second.output
    after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before  # .hydra/overrides.yaml included


def test_the_lock_is_exclusive(tmp_path: Path) -> None:
    claim_run_folder(tmp_path / "a")
    with pytest.raises(RunFolderTaken, match="in use by another run"):
        claim_run_folder(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderTaken, match="already holds files"):
        claim_run_folder(tmp_path / "b")
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"


# -- 6. a failing map step loses nothing ------------------------------------------------------
def test_metrics_are_written_before_the_map(synthetic_cfg, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import hsi.run.training

    def broken_map(*args, **kwargs):
        raise RuntimeError("the map step failed")

    monkeypatch.setattr(hsi.run.training, "write_scene_map", broken_map)
    with pytest.raises(RuntimeError, match="map step failed"):
        hsi.run.training.train(synthetic_cfg("trainer.max_epochs=1", "logger=none"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= metrics["oa"] <= 1 and (tmp_path / "confusion_matrix.csv").is_file()


# -- 7. a PCA cache file with the wrong shape or non-finite values is refitted ----------------
@pytest.mark.parametrize("damage", ["shape", "nan"])
def test_a_damaged_pca_cache_is_refitted(tmp_path: Path, damage: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    cube = make_synthetic_scene(height=12, width=12, bands=20).cube
    good = cached_fit_pca(cube, None, 5, True, 0, "s", tmp_path)
    (path,) = tmp_path.glob("pca-*.npz")
    with np.load(path) as npz:
        arrays = dict(npz)
    if damage == "shape":
        arrays["components"] = arrays["components"][:, :10]
        arrays["mean"] = arrays["mean"][:10]
    else:
        arrays["scale"] = np.full_like(arrays["scale"], np.nan)
    np.savez(path, **arrays)
    again = cached_fit_pca(cube, None, 5, True, 0, "s", tmp_path)
    assert "Ignoring the PCA cache" in caplog.text
    np.testing.assert_allclose(again.components, good.components)
    with np.load(path) as npz:  # rewritten with the good fit
        assert PCATransform(npz["mean"], npz["components"], npz["scale"]).components.shape == (5, 20)


# -- 8. untested classes are null; n_test is what was evaluated -------------------------------
def test_untested_classes_are_null_and_named(tmp_path: Path) -> None:
    from hsi.models.metrics import accuracy_report

    report = accuracy_report(torch.tensor([0, 2, 1, 1]), torch.tensor([0, 0, 1, 1]), 3)
    assert report["per_class_accuracy"] == [0.5, 1.0, None]
    assert report["aa"] == pytest.approx(0.75)  # not (0.5 + 1 + 0) / 3
    assert report["untested"] == [2]


def test_n_test_counts_the_pixels_really_evaluated(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.run.training import train

    metrics = train(synthetic_cfg("trainer.max_epochs=1", "logger=none", "map=false",
                                  "+trainer.limit_test_batches=1", "data.eval_batch_size=16",
                                  "data.eval_path=window"))
    assert metrics["n_test"] == 16 and metrics["n_test_split"] > 16


def test_disjoint_split_names_untested_classes(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.run.training import train

    metrics = train(synthetic_cfg("model=svm", "data/split=disjoint", "data.split.block_size=12",
                                  "data.split.test_ratio=0.5", "data.height=36", "data.width=36",
                                  "data.classes=6", "map=false"))
    per_class = metrics["per_class_accuracy"]
    assert set(metrics["untested_classes"]) == {name for name, acc in per_class.items() if acc is None}


# -- surprising settings --------------------------------------------------------------------
def test_a_huge_label_value_is_reindexed_without_a_huge_table(files: dict[str, Path]) -> None:
    from hsi.data.scenes.loading import load_custom_scene

    start = time.perf_counter()
    scene = load_custom_scene(files["cube"], files["huge_label"])
    assert scene.label_values[-1] == 10**12 and scene.num_classes == 3
    assert time.perf_counter() - start < 5


def test_resuming_with_other_settings_names_the_keys(synthetic_cfg, tmp_path: Path) -> None:
    from hsi.run.training import train

    first = train(synthetic_cfg("trainer.max_epochs=1", "logger=none", "map=false"))
    ckpt = first["checkpoint"]
    with pytest.raises(ConfigError, match=r"data\.patch_size \(checkpoint 9, here 11\)"):
        train(synthetic_cfg("trainer.max_epochs=2", "logger=none", "map=false", "data.patch_size=11",
                            f"ckpt_path={ckpt}"))


def test_evaluate_can_be_pointed_at_a_moved_cube(files: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from hsi.evaluate import evaluate
    from hsi.run.training import train
    from tests.conftest import compose_config, compose_train

    moved_from = tmp_path / "data"
    moved_from.mkdir()
    for name in ("cube", "gt"):
        shutil.copy(files[name], moved_from / files[name].name)
    overrides = custom(files)
    overrides[1:3] = [f"data.cube_path={moved_from / 'cube.npy'}", f"data.gt_path={moved_from / 'gt.npy'}"]
    metrics = train(compose_train(overrides, tmp_path / "run"))
    shutil.move(moved_from, tmp_path / "elsewhere")
    new = tmp_path / "elsewhere"
    evaluated = evaluate(compose_config("evaluate", [f"ckpt_path={metrics['checkpoint']}", "logger=none",
                                                     "map=false", f"moved.cube_path={new / 'cube.npy'}",
                                                     f"moved.gt_path={new / 'gt.npy'}"], tmp_path / "eval"))
    assert evaluated["n_test"] == metrics["n_test"]


def test_offline_download_gives_one_message_without_suggesting_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import urllib.error

    import hsi.data.readers.download as dl

    def offline(url: str, dest: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(dl, "fetch_url", offline)
    overrides = ["data=salinas_a", f"paths.data_dir={tmp_path / 'data'}", "data.download=true",
                 "trainer=cpu", "logger=none"]
    assert run_in_process("hsi.train", overrides, tmp_path / "run") == 1
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("Error:")]
    assert "Scene 'salinas_a' not found" in line and "Temporary failure in name resolution" in err
    assert "data.download=true" not in err and "automatic download failed" in err
    assert "Traceback" not in err


def test_an_envi_header_claiming_too_much_is_named(tmp_path: Path) -> None:
    pytest.importorskip("spectral")
    from hsi.data.readers.io import read_arrays

    header = tmp_path / "cube.hdr"
    header.write_text("ENVI\nsamples = 100000\nlines = 100000\nbands = 200\nheader offset = 0\n"
                      "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n")
    (tmp_path / "cube.img").write_bytes(np.zeros(64, np.float32).tobytes())
    with pytest.raises(DataError, match=r"claims a 100000 x 100000 x 200 float32 image \(8000\.00 GB\)"):
        read_arrays(header)
