"""One line naming the right fix (issue 29, items 11 to 13): search storages and spaces that cannot
work, the Slurm launcher without Slurm, a multirun job's error, vector labels that are a folder, a
raster or empty (real Salinas-A, made into files here), a trial failing on an impossible space, the
`+` of `+trainer.limit_val_batches`, and a run folder left locked by a killed process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hsi.data.scenes.loading import load_custom_scene
from hsi.errors import ConfigError, DataError, MissingDependencyError
from hsi.run.config import PROJECT_ROOT
from hsi.utils.files import LOCK_NAME, RunFolderTaken, claim_run_folder
from tests.conftest import FAST_SYNTHETIC, compose_train
from tests.data.geo_scenes import salinas_a_files

ENV = {**{k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "HSI_TRACEBACK")},
       "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}


def run(module: str, *arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *arguments], cwd=PROJECT_ROOT, env=env or ENV,
                          capture_output=True, text=True, timeout=600)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


# -- 11. one line instead of a traceback -------------------------------------------------------
@pytest.mark.parametrize(("spec", "error", "words"), [
    ("foo://bar", ConfigError, ["search.storage=foo://bar", "is not a storage", "postgresql://"]),
    ("folder", ConfigError, ["is a folder", "optuna.journal"]),
    ("sqlite:///folder", ConfigError, ["names a folder", "study.db"]),
])
def test_a_storage_that_cannot_work_is_one_line(spec: str, error: type, words: list[str],
                                                tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from hsi.studies.search import open_storage

    spec = spec.replace("folder", str(tmp_path))
    with pytest.raises(error) as raised:
        open_storage(spec, tmp_path / "search")
    assert all(word in str(raised.value) for word in words), raised.value


def test_a_database_url_without_its_driver_names_the_package(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    try:
        import psycopg2  # noqa: F401
        pytest.skip("psycopg2 is installed here")
    except ImportError:
        pass
    from hsi.studies.search import open_storage

    with pytest.raises(MissingDependencyError, match="install psycopg2-binary"):
        open_storage("postgresql://user@localhost/study", tmp_path)


def test_the_search_command_says_one_line_for_an_unknown_storage(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    result = run("hsi.search", "hparams_search=synthetic_optuna", *FAST_SYNTHETIC, "logger=none",
                 "search.storage=foo://bar", f"search.dir={tmp_path / 'search'}", "search.n_trials=1")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(error_lines(result.stderr)) == 1 and "foo://bar" in error_lines(result.stderr)[0]


@pytest.mark.parametrize("value", ["interval(0.01, 0.0001)", "range(9, 3)", "range(5, 5)",
                                   "tag(log, interval(0, 1))", "range(0.5, 0.1, 0.1)"])
def test_a_reversed_or_empty_range_names_its_key(value: str) -> None:
    pytest.importorskip("optuna")
    from hsi.studies.space import distribution

    with pytest.raises(ConfigError) as raised:
        distribution("model.optimizer.lr", value)
    assert f"search.params.model.optimizer.lr={value!r}" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_slurm_launcher_without_slurm_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from hsi.run import config

    monkeypatch.setattr(config.shutil, "which", lambda name: None)
    cfg = OmegaConf.create({"hydra": {"launcher": {
        "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}}})
    with pytest.raises(SystemExit) as exited:
        config.check_launcher(cfg)
    assert exited.value.code == 1
    assert "this machine has no Slurm" in capsys.readouterr().err
    config.check_launcher(OmegaConf.create({"hydra": {"launcher": {"_target_": "BasicLauncher"}}}))


@pytest.mark.skipif(bool(os.environ.get("SLURM_JOB_ID")) or bool(__import__("shutil").which("sbatch")),
                    reason="this machine has Slurm")
def test_the_slurm_launcher_on_this_machine_is_one_line_and_no_folder(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run("hsi.train", "-m", *FAST_SYNTHETIC, "logger=none", "hydra/launcher=slurm",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "no Slurm" in result.stderr and not (tmp_path / "sweep").exists()


def test_a_multirun_job_error_is_not_followed_by_a_traceback(tmp_path: Path) -> None:
    result = run("hsi.train", "-m", *FAST_SYNTHETIC, "logger=none", "data.patch_size=4,6",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "Error: data.patch_size=4: the window must have a centre pixel" in result.stderr
    assert "Error executing job with overrides" in result.stderr  # Hydra still names the failed job


def test_a_trial_failing_on_its_space_says_to_narrow_it(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    result = run("hsi.search", "hparams_search=synthetic_optuna", *FAST_SYNTHETIC, "logger=none",
                 "map=false", "data.split.val_ratio=0.1", "data.patch_size=choice(4,6)",
                 f"search.dir={tmp_path / 'search'}", "search.n_trials=2")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = error_lines(result.stderr)
    assert "Narrow the range of data.patch_size" in line and "search.study_name" in line
    assert "run the same command" not in line


# -- 12. messages naming the right fix ---------------------------------------------------------
@pytest.fixture(scope="module")
def salinas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import numpy as np
    import rasterio

    base = tmp_path_factory.mktemp("salinas_messages")
    files = salinas_a_files(base)
    with rasterio.open(files["tif"]) as src:
        profile = src.profile | {"count": 1, "dtype": "uint8", "nodata": None}
    from tests.conftest import SHARED_DATA
    from tests.data.geo_scenes import salinas_a_arrays

    _, gt = salinas_a_arrays(SHARED_DATA)
    with rasterio.open(base / "labels.tif", "w", **profile) as dst:  # a label raster on the cube's grid
        dst.write(np.asarray(gt, dtype=np.uint8), 1)
    (base / "empty.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (base / "fields_folder.gpkg").mkdir()
    return files | {"labels": base / "labels.tif", "empty": base / "empty.geojson",
                    "folder": base / "fields_folder.gpkg"}


@pytest.mark.parametrize(("labels", "words", "not_words"), [
    ("folder", ["is a folder", "give the vector file in it"], ["File not found"]),
    ("labels", ["is a raster, not polygons", "leave data.gt_field out"], ["vector file"]),
    ("empty", ["holds no features"], ["no attribute"]),
])
def test_vector_labels_name_the_right_fix(salinas: dict[str, Path], labels: str, words: list[str],
                                          not_words: list[str]) -> None:
    with pytest.raises(DataError) as raised:
        load_custom_scene(salinas["tif"], salinas[labels], gt_field="crop")
    message = str(raised.value)
    assert all(word in message for word in words) and not any(word in message for word in not_words), message


def test_the_label_raster_itself_still_loads(salinas: dict[str, Path]) -> None:
    scene = load_custom_scene(salinas["tif"], salinas["labels"])
    assert scene.num_classes == 6 and int((scene.labels > 0).sum()) > 5000


def test_the_documented_limit_val_batches_override_composes(tmp_path: Path) -> None:
    text = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert "+trainer.limit_val_batches=0" in text
    assert compose_train(["+trainer.limit_val_batches=0"], tmp_path).trainer.limit_val_batches == 0
    with pytest.raises(Exception, match="limit_val_batches"):  # the spelling without + fails
        compose_train(["trainer.limit_val_batches=0"], tmp_path)


# -- 13. a run folder left locked by a killed process -------------------------------------------
KILLED_WRITER = """
import os, signal, sys
import numpy as np
from hsi.utils.files import claim_run_folder
from hsi.utils.geotiff import MapWriters
folder = sys.argv[1]
claim_run_folder(folder)
maps = MapWriters(__import__("pathlib").Path(folder), 64, 64, None, ["a", "b"], np.zeros((3, 3)), False)
maps.write(0, np.ones((8, 64), np.uint8), np.ones((8, 64), np.float32))
os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the map: no finally, no atexit
"""


def test_a_folder_locked_by_a_killed_run_is_unlocked_and_its_part_files_named(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(folder)], cwd=PROJECT_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    pid = (folder / LOCK_NAME).read_text().split()[1]
    parts = sorted(p.name for p in folder.glob(".*.part.tif"))
    assert parts == [f".confidence.{pid}.part.tif", f".prediction.{pid}.part.tif"]
    with pytest.raises(RunFolderTaken) as raised:
        claim_run_folder(folder)
    message = str(raised.value)
    assert f"pid {pid}" in message and "no longer running" in message
    assert all(part in message for part in parts) and "saved no checkpoint" in message
    assert not (folder / LOCK_NAME).exists() and not list(folder.glob(".*.part.tif"))
    claim_run_folder(folder)  # the folder is now empty: a new run may take it
    assert (folder / LOCK_NAME).read_text() == f"pid {os.getpid()} on {os.uname().nodename}\n"


def test_a_folder_locked_by_a_running_process_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    claim_run_folder(folder)  # this process: alive
    (folder / f".prediction.{os.getpid()}.part.tif").write_bytes(b"half")
    with pytest.raises(RunFolderTaken, match="is in use by another run"):
        claim_run_folder(folder)
    assert (folder / LOCK_NAME).exists() and (folder / f".prediction.{os.getpid()}.part.tif").exists()
