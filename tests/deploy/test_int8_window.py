"""int8 HybridSN at large windows (issue 29, item 4): the quantized dense graph's uint8 activations
can round the share of a window's outermost pixels in a logit to nothing, so the check that a
dense graph reads the window model.json names probes that ring on the fp32 graph the int8 one
was quantized from; nothing beyond the window may change an int8 logit either."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from hsi.deploy.export import export  # noqa: E402
from hsi.deploy.runtime import ModelFileError, OnnxClassifier  # noqa: E402
from tests.conftest import FAST_SYNTHETIC, compose_config, compose_train  # noqa: E402


def _train_and_export(base: Path, overrides: list[str]) -> tuple[Path, dict]:
    from hsi.train import train

    metrics = train(compose_train([*overrides, "model=hybridsn", "trainer.max_epochs=1", "logger=none",
                                   "map=false", "data.pca.cache=false"], base / "run"))
    out = base / "export"
    # a one-epoch network is not a fair test of int8 accuracy: report, do not gate
    meta = export(compose_config("export", [f"ckpt_path={metrics['checkpoint']}", "quantize=int8",
                                            "int8.max_oa_drop=null", "int8.samples=16"], out))
    return out, meta


@pytest.fixture(scope="module")
def hybridsn_23(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """HybridSN with a 23x23 window on the small synthetic scene (24x24), exported with int8: the
    setting whose int8 graph did not visibly read its outer ring (refused before the fix)."""
    base = tmp_path_factory.mktemp("int8_23")
    return _train_and_export(base, [*FAST_SYNTHETIC, "data.patch_size=23"])


def test_int8_hybridsn_at_a_23_window_exports_and_loads(hybridsn_23) -> None:
    folder, meta = hybridsn_23
    assert meta["patch_size"] == 23 and meta["files"]["int8"] == "model.int8.onnx"
    runtime = OnnxClassifier.load(folder)
    assert runtime.precision == "int8" and runtime.kind == "dense"
    fp32 = OnnxClassifier.load(folder, "fp32")
    cube = np.random.default_rng(0).normal(size=(24, 24, 30)).astype(np.float32)
    # the int8 graph's centre logits ignore everything beyond the window (exactly: static QDQ)
    assert not runtime._reads_ring(runtime.session, 12)
    assert fp32._reads_ring(fp32.session, 11) and not fp32._reads_ring(fp32.session, 12)
    assert runtime.predict(cube).shape == (24, 24)


def test_int8_graph_with_a_smaller_declared_window_is_refused(hybridsn_23, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(hybridsn_23[0], tmp_path / "copy"))
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(meta | {"patch_size": 19, "margin": 9}))
    with pytest.raises(ModelFileError, match="reads another window"):
        OnnxClassifier.load(folder)  # the int8 graph reads pixels 10 and 11 away


@pytest.mark.slow
def test_int8_hybridsn_as_the_issue_ran_it(tmp_path: Path) -> None:
    """The issue's commands: `python -m hsi.train data=synthetic trainer.max_epochs=1`, then
    `python -m hsi.export ckpt_path=<run>/checkpoints/last.ckpt quantize=int8` (HybridSN's 25x25
    window on the default synthetic scene)."""
    import subprocess
    import sys

    from hsi.run.config import PROJECT_ROOT

    def run(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]

    train_dir, export_dir = tmp_path / "train", tmp_path / "export"
    run("hsi.train", "data=synthetic", "trainer.max_epochs=1", f"hydra.run.dir={train_dir}")
    run("hsi.export", f"ckpt_path={train_dir / 'checkpoints' / 'last.ckpt'}", "quantize=int8",
        f"hydra.run.dir={export_dir}")
    meta = json.loads((export_dir / "model.json").read_text())
    assert meta["patch_size"] == 25 and meta["default_precision"] == "int8"
    assert OnnxClassifier.load(export_dir).precision == "int8"
