"""Bad input the network contract and the estimator contract refuse, one line each naming the fix:
a window or band count below a network's smallest (`Network.input_limits`), a network that
cannot be exported, an estimator's pickle given to streaming or export, and an estimator given
settings only a network's Lightning training honours."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsi.errors import ConfigError, ExportError
from hsi.run.config import PROJECT_ROOT
from tests.conftest import FAST_SYNTHETIC, compose_train

TINY = [o for o in FAST_SYNTHETIC if not o.startswith("trainer=")] + [
    "trainer=cpu", "trainer.max_epochs=1", "logger=none", "map=false"]
FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "checkpoints" / "format1_cnn2d_synthetic.ckpt"


def command(module: str, *args: str, run_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "HSI_TRACEBACK")}
    return subprocess.run([sys.executable, "-m", module, *args, f"hydra.run.dir={run_dir}"], cwd=PROJECT_ROOT,
                          env={**env, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
                          timeout=600)


def one_line(done: subprocess.CompletedProcess) -> str:
    """The command's error line; it failed with status 1 and without a traceback."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def refusal(tmp_path: Path, *overrides: str) -> str:
    """The ConfigError `hsi.run.training.train` raises for these overrides (one line)."""
    from hsi.run.training import train

    with pytest.raises(ConfigError) as error:
        train(compose_train([*TINY, *overrides], tmp_path))
    message = str(error.value)
    assert "\n" not in message
    return message


# -- a window or band count below the network's smallest ---------------------------------------
def test_a_window_below_the_networks_smallest_is_one_line_naming_the_key(tmp_path: Path) -> None:
    line = one_line(command("hsi.train", *TINY, "model=ssftt", "data.patch_size=3", run_dir=tmp_path))
    assert "SSFTT needs windows of at least 5x5 pixels" in line and "Raise data.patch_size" in line


@pytest.mark.parametrize(("model", "overrides", "expected"), [
    ("hybridsn", ["data.patch_size=7"], "HybridSN needs windows of at least 9x9 pixels"),
    ("hybridsn", ["data.pca.components=12"], "HybridSN needs at least 13 bands"),
    ("cnn3d", ["data.pca.components=14"], "CNN3D needs at least 15 bands"),
    ("hybridsn_fast", ["data.patch_size=3"], "HybridSNFast needs windows of at least 5x5 pixels"),
])
def test_the_refusal_names_the_minimum_and_the_key(model: str, overrides: list[str], expected: str,
                                                   tmp_path: Path) -> None:
    message = refusal(tmp_path, f"model={model}", *overrides)
    key = "data.patch_size" if "patch_size" in overrides[0] else "data.pca.components"
    assert expected in message and f"Raise {key}." in message


# -- export and streaming -------------------------------------------------------------------------
def test_a_network_that_cannot_export_is_refused_before_the_scene_is_loaded(tmp_path: Path,
                                                                             monkeypatch) -> None:
    from hsi.deploy.export import export_checkpoint
    from hsi.models import CNN2D

    monkeypatch.setattr(CNN2D, "cannot_export", "its scan has no ONNX translation")
    with pytest.raises(ExportError) as error:
        export_checkpoint(FIXTURE, tmp_path / "out", moved={"data_dir": str(tmp_path / "nowhere")})
    assert str(error.value) == ("CNN2D cannot be exported to ONNX (its scan has no ONNX translation); run it "
                                "with hsi.predict ckpt_path=<checkpoint> instead.")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def fitted_rf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hsi.run.training import train

    run = tmp_path_factory.mktemp("rf")
    train(compose_train([*TINY, "model=rf", "model.n_estimators=10"], run))
    return run / "model.pkl"


@pytest.mark.parametrize(("module", "args"), [
    ("hsi.predict", ["inference.stream=true"]),
    ("hsi.export", []),
])
def test_an_estimators_pickle_is_not_streamed_or_exported(module: str, args: list[str], fitted_rf: Path,
                                                          tmp_path: Path) -> None:
    line = one_line(command(module, f"ckpt_path={fitted_rf}", *args, run_dir=tmp_path))
    assert "is a pickled estimator" in line and "model=svm train=false" in line


# -- an estimator given Lightning-only settings ---------------------------------------------------
def test_an_estimator_with_mixed_precision_is_one_line(tmp_path: Path) -> None:
    line = one_line(command("hsi.train", *TINY, "model=svm", "trainer.precision=bf16-mixed",
                            run_dir=tmp_path))
    assert "trainer.precision=bf16-mixed: drop it" in line
    assert "SpectralSVM is a scikit-learn estimator" in line
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(("model", "overrides", "expected"), [
    ("svm", ["trainer.precision=16-mixed"], "trainer.precision=16-mixed: drop it"),
    ("rf", ["trainer=ddp_cpu"], "trainer.strategy (trainer=ddp, ddp_cpu): use trainer=default"),
    ("knn", ["trainer.devices=2"], "trainer.devices=2 (trainer=ddp, ddp_cpu)"),
    ("knn", ["augment=flips"], "data.augment.flip, data.augment.rotate (augment=): use augment=none"),
    ("rf", ["data.augment.noise=0.1"], "data.augment.noise (augment=): use augment=none"),
    ("svm", ["ckpt_path=last.ckpt"], "with train=true (resuming): drop ckpt_path"),
    ("svm", ["pretrain=masked"], "pretrain=masked pretrains a network's trunk"),
    ("rf", ["semi=fixmatch"], "semi=fixmatch trains a network on unlabelled windows"),
])
def test_an_estimator_refuses_what_only_lightning_honours(model: str, overrides: list[str], expected: str,
                                                          tmp_path: Path) -> None:
    assert expected in refusal(tmp_path, f"model={model}", *overrides)
    assert not (tmp_path / "metrics.json").exists()


def test_an_estimator_keeps_the_settings_every_model_shares(tmp_path: Path) -> None:
    """An experiment's schedule (trainer.max_epochs, a network-only model key) and debug=fast still run."""
    from hsi.run.training import train

    metrics = train(compose_train([*TINY, "model=knn", "trainer.max_epochs=7", "debug=fast",
                                   "+model.label_smoothing=0.1"], tmp_path))
    assert metrics["n_test"] > 0 and (tmp_path / "model.pkl").is_file()
