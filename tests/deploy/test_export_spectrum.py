"""A network that takes the spectrum (`Network.takes == "spectrum"`: `mlp`, `cnn1d`) exported with
a window larger than one pixel: its dense graph reads each pixel's own spectrum only, which the
runtime's check of the window a graph reads accepts (it used to refuse the export)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from hsi.data.scenes.synthetic import make_synthetic_scene  # noqa: E402
from hsi.deploy.export import export_checkpoint  # noqa: E402
from hsi.deploy.runtime import OnnxClassifier  # noqa: E402
from tests.conftest import FAST_SYNTHETIC, compose_train  # noqa: E402


@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_a_spectrum_network_exports_with_a_wide_window(model: str, tmp_path: Path) -> None:
    from hsi.train import train

    metrics = train(compose_train([*FAST_SYNTHETIC, f"model={model}", "data.patch_size=5",
                                   "trainer.max_epochs=1", "logger=none", "map=false",
                                   "data.pca.cache=false"], tmp_path / "run"))
    meta = export_checkpoint(metrics["checkpoint"], tmp_path / "onnx")
    assert meta["takes"] == "spectrum" and meta["eval_path"] == "dense" and meta["patch_size"] == 5
    assert meta["verification"]["fp32"]["labels_identical"]
    assert json.loads((tmp_path / "onnx" / "model.json").read_text())["takes"] == "spectrum"
    cube = make_synthetic_scene(height=24, width=24, bands=30, classes=4).cube
    labels = OnnxClassifier(tmp_path / "onnx").predict(cube)
    assert labels.shape == cube.shape[:2] and np.isin(labels, np.arange(1, 5)).all()
