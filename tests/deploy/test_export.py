"""ONNX export (`python -m hsi.export`) and torch-free prediction (`hsi.deploy.runtime`).

Tiny networks are trained in-process on the small synthetic scene (one epoch), exported, and
their graphs compared with PyTorch: logits and labels on every pixel, on the whole scene and on
crops cut into row tiles. Skipped without the `export` extra (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import torch  # noqa: E402

from hsi.data.scenes.synthetic import make_synthetic_scene  # noqa: E402
from hsi.deploy.export import export  # noqa: E402
from hsi.deploy.runtime import OnnxClassifier, read_cube  # noqa: E402
from hsi.errors import (  # noqa: E402
    DataError,
    ExportError,  # noqa: E402
    HsiError,
)
from hsi.run.checkpoint import load_checkpoint  # noqa: E402
from hsi.run.config import PROJECT_ROOT  # noqa: E402
from hsi.run.inference import predict_labels, scene_logits  # noqa: E402
from tests.conftest import FAST_SYNTHETIC, compose_config  # noqa: E402

# network config name -> the graph hsi.export writes for it
PATHS = {"hybridsn": "dense", "cnn2d": "dense", "cnn3d": "dense", "hybridsn_se": "window"}
SCENE = {"height": 24, "width": 24, "bands": 30, "classes": 4}  # FAST_SYNTHETIC's scene


def synthetic_cube() -> np.ndarray:
    return make_synthetic_scene(**SCENE).cube


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """Factory: a checkpoint of `model` trained one epoch on the synthetic scene (cached)."""
    from hsi.train import train
    from tests.conftest import compose_train

    cache: dict[str, Path] = {}

    def make(model: str) -> Path:
        if model not in cache:
            run = tmp_path_factory.mktemp(f"train_{model}")
            metrics = train(compose_train([*FAST_SYNTHETIC, f"model={model}", "trainer.max_epochs=1",
                                           "logger=none", "map=false", "data.pca.cache=false"], run))
            cache[model] = Path(metrics["checkpoint"])
        return cache[model]

    return make


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory):
    """Factory: the export folder of `model`'s checkpoint (fp32, or with `quantize`; cached)."""
    cache: dict[tuple[str, str | None], tuple[Path, dict]] = {}

    def make(model: str, quantize: str | None = None) -> tuple[Path, dict]:
        if (model, quantize) not in cache:
            out = tmp_path_factory.mktemp(f"export_{model}_{quantize}")
            overrides = [f"ckpt_path={trained(model)}", "inference.tile_rows=7", "inference.batch_size=100"]
            if quantize:
                # a one-epoch network is not a fair test of int8 accuracy: report, do not gate
                overrides += [f"quantize={quantize}", "int8.max_oa_drop=null", "int8.samples=16"]
            cache[(model, quantize)] = out, export(compose_config("export", overrides, out))
        return cache[(model, quantize)]

    return make


def torch_reference(ckpt: Path, cube: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's (labels, logits) for a raw cube, as hsi.predict computes them."""
    checkpoint = load_checkpoint(ckpt)
    net = checkpoint.classifier("cpu").net
    patch = checkpoint.data_state["patch_size"]
    from hsi.data.sampling.patches import pad_cube

    logits, _ = scene_logits(net, pad_cube(checkpoint.reduce(cube), patch), patch)
    labels, _ = predict_labels(net, checkpoint.reduce(cube), patch)
    return labels, logits.numpy()


@pytest.mark.parametrize("model", sorted(PATHS))
def test_export_matches_pytorch_on_every_pixel(model: str, exported, trained) -> None:
    folder, meta = exported(model)
    expected = {"model.onnx", "model.json"} | ({"pca.onnx"} if PATHS[model] == "window" else set())
    assert {p.name for p in folder.iterdir()} >= expected
    assert not [p for p in folder.iterdir() if p.name.startswith(".export-")]
    written = json.loads((folder / "model.json").read_text())
    assert written == meta
    assert meta["eval_path"] == PATHS[model] and meta["bands"] == 30 and meta["patch_size"] == 9
    assert meta["pca"]["components"] == 15 and meta["pca"]["in_graph"] == (PATHS[model] == "dense")
    assert meta["class_names"] == [f"class_{k}" for k in range(1, 5)] and len(meta["colours"]) == 4
    assert meta["label_values"] == [1, 2, 3, 4] and meta["opset"] == 18
    import hashlib

    assert meta["checkpoint"]["sha1"] == hashlib.sha1(trained(model).read_bytes()).hexdigest()
    check = meta["verification"]["fp32"]
    assert check["labels_identical"] and check["label_differences"] == 0 and check["pixels"] == 576
    assert check["relative_diff"] <= 1e-4

    runtime = OnnxClassifier.load(folder)
    assert runtime.precision == "fp32" and runtime.kind == PATHS[model]
    cube = synthetic_cube()
    # the whole scene, and a crop whose row tiles (4 rows, halo 4) cut through every window
    for crop, tile_rows in ((cube, 128), (cube[3:16, 2:21], 4), (cube[:1, :5], 3)):
        labels, logits = torch_reference(trained(model), crop)
        got = runtime.logits(crop, tile_rows=tile_rows, batch_size=50)
        assert got.shape == logits.shape
        np.testing.assert_allclose(got, logits, rtol=0, atol=1e-4 * max(1.0, np.abs(logits).max()))
        assert np.array_equal(runtime.predict(crop, tile_rows=tile_rows), labels)


@pytest.mark.parametrize("model", ["hybridsn", "hybridsn_se"])
def test_int8_export_reports_its_agreement(model: str, exported) -> None:
    folder, meta = exported(model, "int8")
    assert meta["files"]["int8"] == "model.int8.onnx" and meta["default_precision"] == "int8"
    assert meta["sizes_bytes"]["model.int8.onnx"] < meta["sizes_bytes"]["model.onnx"] / 2
    check = meta["verification"]["int8"]
    assert 0 <= check["label_change_fraction"] <= 1 and check["pixels"] == 576
    assert check["test_pixels"] > 0
    assert check["oa_change_points"] == pytest.approx(100 * (check["oa_test_int8"] - check["oa_test_fp32"]),
                                                      abs=1e-3)
    assert check["quantization"]["format"] == "QDQ" and check["quantization"]["samples_from"] == "train"
    assert check["quantization"]["calibration_inputs"] == 16
    # the PCA (dense graph) and the layers through HybridSN's second 3-D convolution (8 input
    # channels) stay in float; the rest is int8
    done = check["quantization"]
    assert done["float_prefix_nodes"] > 0 and len(done["float_nodes"]) >= done["float_prefix_nodes"]
    import onnx

    int8_ops = {node.op_type for node in onnx.load(str(folder / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= int8_ops
    runtime = OnnxClassifier.load(folder)  # the folder's default is the int8 graph
    assert runtime.precision == "int8"
    assert OnnxClassifier.load(folder / "model.onnx").precision == "fp32"
    fp32 = OnnxClassifier.load(folder / "model.onnx").predict(synthetic_cube())
    int8 = runtime.predict(synthetic_cube())
    assert np.mean(fp32 != int8) == pytest.approx(check["label_change_fraction"])


def test_float_prefix_ends_at_the_last_thin_3d_convolution(exported) -> None:
    import onnx

    from hsi.deploy.quantize import _float_prefix

    hybridsn = onnx.load(str(exported("hybridsn")[0] / "model.onnx"))
    weights = {init.name: list(init.dims) for init in hybridsn.graph.initializer}
    convs = [(n.name, weights[n.input[1]]) for n in hybridsn.graph.node if n.op_type == "Conv"]
    # PCA (30 -> 15), then 3-D convolutions with 1, 8 and 16 input channels, then 2-D ones
    assert [len(w) for _, w in convs[:4]] == [4, 5, 5, 5] and [w[1] for _, w in convs[1:4]] == [1, 8, 16]
    prefix = _float_prefix(hybridsn, 16)
    assert prefix[-1] == convs[2][0] and convs[1][0] in prefix and convs[3][0] not in prefix
    assert _float_prefix(hybridsn, 0) == []
    assert _float_prefix(onnx.load(str(exported("cnn2d")[0] / "model.onnx")), 16) == []


def test_int8_calibration_uses_training_pixels_only(trained) -> None:
    from hsi.deploy.quantize import calibration_batches

    for model, dense in (("hybridsn", True), ("hybridsn_se", False)):
        checkpoint = load_checkpoint(trained(model))
        datamodule = checkpoint.datamodule()
        datamodule.setup()
        batches = list(calibration_batches(checkpoint, datamodule, dense, samples=1000, seed=0))
        n_train = len(datamodule.split["train"])
        assert sum(len(b) for b in batches) == n_train  # every training pixel, once; nothing else
        if dense:  # raw tiles of the windows around the training pixels
            r, c = datamodule.split["train"][0]
            first = batches[0][0]
            assert first.shape == (30, 9, 9)
            assert np.allclose(first[:, 4, 4], datamodule.scene.cube[r, c])
        else:  # the training windows themselves
            assert batches[0].shape[1:] == (1, 15, 9, 9)
            assert torch.equal(torch.as_tensor(batches[0][0]), datamodule.datasets["train"][0][0])


def test_bad_cubes_are_refused_clearly(exported) -> None:
    runtime = OnnxClassifier.load(exported("hybridsn")[0])
    cube = synthetic_cube()
    with pytest.raises(DataError, match="trained on cubes with 30 bands.*this cube has 20"):
        runtime.predict(cube[:, :, :20])
    with pytest.raises(DataError, match=r"band-first.*transpose"):
        runtime.predict(cube.transpose(2, 0, 1))
    with pytest.raises(DataError, match=r"\(height, width, bands\) cube, got shape \(24, 24\)"):
        runtime.predict(cube[:, :, 0])
    with pytest.raises(DataError, match="dtype"):
        runtime.predict(cube.astype(complex))
    holes = cube.copy()
    holes[5, 7, 3] = np.nan
    holes[20, 1] = np.inf
    labels = runtime.predict(holes)
    assert labels[5, 7] == 0 and labels[20, 1] == 0
    assert (labels > 0).sum() == labels.size - 2 and labels.max() <= 4
    with pytest.raises(DataError, match="2 pixels of the cube hold NaN or inf"):
        runtime.predict(holes, nan_policy="error")
    filled = runtime.predict(holes, nan_policy="fill")  # the scene's policies: fill classifies them
    assert filled[5, 7] > 0 and filled[20, 1] > 0 and (filled[labels > 0] == labels[labels > 0]).all()
    with pytest.raises(DataError, match="nan_policy='drop'; choose one of exclude, fill, error"):
        runtime.predict(holes, nan_policy="drop")
    with pytest.raises(DataError, match="every pixel"):
        runtime.predict(np.full_like(cube, np.nan))


def test_prediction_without_torch_matches_hsi_predict(exported, trained, tmp_path: Path) -> None:
    """hsi.deploy.runtime in a process where `import torch` fails gives hsi.predict's labels."""
    from hsi.predict import predict

    ckpt = trained("hybridsn")
    predict(compose_config("predict", [f"ckpt_path={ckpt}", "inference.progress=false"], tmp_path / "pred"))
    expected = np.load(tmp_path / "pred" / "prediction.npy")
    for model in ("hybridsn", "hybridsn_se"):
        folder = exported(model)[0]
        np.save(tmp_path / "cube.npy", synthetic_cube())
        script = textwrap.dedent(f"""
            import sys
            sys.modules["torch"] = None  # `import torch` now fails
            import numpy as np
            import hsi.deploy.runtime as runtime
            model = runtime.OnnxClassifier.load({str(folder)!r}, precision="fp32", threads=1)
            cube = runtime.read_cube({str(tmp_path / 'cube.npy')!r})
            np.save({str(tmp_path / 'labels.npy')!r}, model.predict(cube, tile_rows=5))
            heavy = sorted(m for m in ("lightning", "hydra", "sklearn", "matplotlib") if m in sys.modules)
            assert not heavy, heavy
            """)
        done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        labels = np.load(tmp_path / "labels.npy")
        if model == "hybridsn":
            assert np.array_equal(labels, expected)
        else:
            assert np.array_equal(labels, torch_reference(trained(model), synthetic_cube())[0])


def test_predict_command_runs_an_exported_model(exported, trained, tmp_path: Path) -> None:
    """hsi.predict model_path=<export>/model.onnx writes what it writes from the checkpoint."""
    from hsi.deploy.predict import predict_onnx
    from hsi.predict import predict

    def predict_exported(cfg):  # through hsi.predict once conf/predict.yaml has model_path
        return predict(cfg) if "model_path" in compose_config("predict", [], tmp_path / "c") else \
            predict_onnx(cfg)

    folder = exported("cnn2d")[0]
    summary = predict_exported(compose_config("predict", [f"++model_path={folder / 'model.onnx'}",
                                                          "inference.progress=false"], tmp_path / "onnx"))
    for name in ("prediction.npy", "prediction.png", "map.png", "prediction.json"):
        assert (tmp_path / "onnx" / name).is_file(), name
    assert summary["eval_path"] == "onnx-dense-fp32" and "oa" in summary
    predict(compose_config("predict", [f"ckpt_path={trained('cnn2d')}",
                           "inference.progress=false"], tmp_path / "pt"))
    assert np.array_equal(np.load(tmp_path / "onnx" / "prediction.npy"),
                          np.load(tmp_path / "pt" / "prediction.npy"))
    assert json.loads((tmp_path / "pt" / "prediction.json").read_text())["oa"] == pytest.approx(summary["oa"])
    assert summary["nonfinite_pixels"] == 0
    with pytest.raises(HsiError, match="is a dense graph; use inference.eval_path=auto"):
        predict_exported(compose_config("predict", [f"++model_path={folder}", "inference.eval_path=window"],
                                        tmp_path / "bad"))


def test_a_failed_check_writes_nothing(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hsi.deploy.export as onnx_export

    real = onnx_export.reference_logits

    def off_by_a_little(*args, **kwargs):
        logits, path = real(*args, **kwargs)
        return logits + 1e-2 * np.abs(logits).max(), path

    monkeypatch.setattr(onnx_export, "reference_logits", off_by_a_little)
    out = tmp_path / "run"
    with pytest.raises(ExportError, match="fp32 check failed.*Nothing was written"):
        export(compose_config("export", [f"ckpt_path={trained('cnn3d')}"], out))
    assert list(out.iterdir()) == []  # no model files, no staging folder


def test_missing_extra_names_it(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import hsi.deploy.export as onnx_export

    real = importlib.import_module

    def without_onnxscript(name: str, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError("No module named 'onnxscript'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(onnx_export.importlib, "import_module", without_onnxscript)
    with pytest.raises(ExportError, match=r'onnxscript: pip install -e "\.\[export\]"'):
        export(compose_config("export", [f"ckpt_path={trained('cnn3d')}"], tmp_path))


@pytest.mark.parametrize(("override", "message"), [
    ("quantize=int4", "quantize='int4'"),
    ("int8.calibration=best", "int8.calibration='best'"),
    ("fp32_tolerance=-1", "fp32_tolerance=-1"),
    ("int8.samples=0", "int8.samples=0"),
    ("opset=17", "opset=17 must be >= 18"),
])
def test_bad_settings_are_refused(override: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(HsiError, match=message):
        export(compose_config("export", ["ckpt_path=missing.ckpt", override], tmp_path))


def test_export_command_end_to_end(trained, tmp_path: Path) -> None:
    """`python -m hsi.export` as a user runs it: files in the run folder, exit status 0."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "hsi.export", f"ckpt_path={trained('cnn3d')}",
                           f"hydra.run.dir={out}"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"model.onnx", "model.json"} <= {p.name for p in out.iterdir()}
    again = subprocess.run([sys.executable, "-m", "hsi.export", "ckpt_path=nowhere.ckpt",
                            f"hydra.run.dir={tmp_path / 'bad'}"], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 1 and "Checkpoint not found: nowhere.ckpt" in again.stderr


def test_the_runtime_reads_cubes_without_torch_or_lightning(tmp_path: Path) -> None:
    """hsi.deploy.runtime imports without torch or Lightning, reads a .mat cube through the readers
    (`hsi.data.readers.io`, below the lazy hsi.data package) and loads neither doing it; so does
    importing every reader."""
    import scipy.io

    scipy.io.savemat(tmp_path / "c.mat", {"cube": synthetic_cube()[:4, :5], "gt": np.ones((4, 5))})
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        import hsi.deploy.runtime as runtime
        assert "torch" not in sys.modules and "lightning" not in sys.modules, "import hsi.deploy.runtime"
        import hsi.data.readers as readers
        assert runtime.read_array is importlib.import_module("hsi.data.readers.io").read_array
        cube = runtime.read_cube({str(tmp_path / 'c.mat')!r})
        assert cube.shape == (4, 5, 30), cube.shape
        for info in pkgutil.iter_modules(readers.__path__, "hsi.data.readers."):
            importlib.import_module(info.name)
        print(sorted(m for m in ("torch", "lightning", "hydra", "sklearn") if m in sys.modules))
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_read_cube_formats(tmp_path: Path) -> None:
    import scipy.io

    cube = synthetic_cube()[:4, :5]
    np.save(tmp_path / "a.npy", cube)
    np.savez(tmp_path / "b.npz", cube=cube, gt=np.ones((4, 5)))
    scipy.io.savemat(tmp_path / "c.mat", {"cube": cube, "gt": np.ones((4, 5))})
    for name in ("a.npy", "b.npz", "c.mat"):
        assert np.array_equal(read_cube(tmp_path / name), cube)
    np.savez(tmp_path / "two.npz", a=cube, b=cube)
    with pytest.raises(DataError, match="Cannot tell which variable"):
        read_cube(tmp_path / "two.npz")
    assert np.array_equal(read_cube(tmp_path / "two.npz", key="b"), cube)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn2d", "cnn3d", "hybridsn_lite"])
def test_int8_export_of_the_other_networks(model: str, exported) -> None:
    folder, meta = exported(model, "int8")
    assert meta["verification"]["fp32"]["labels_identical"]
    assert (folder / "model.int8.onnx").is_file()


def test_a_format1_checkpoint_exports(tmp_path: Path) -> None:
    """Checkpoints written before the datamodule carried its state export too."""
    ckpt = PROJECT_ROOT / "tests" / "fixtures" / "checkpoints" / "format1_cnn2d_synthetic.ckpt"
    meta = export(compose_config("export", [f"ckpt_path={ckpt}"], tmp_path))
    assert meta["checkpoint"]["format"] == 1 and meta["eval_path"] == "dense"
    assert meta["verification"]["fp32"]["labels_identical"]
    expected = np.load(ckpt.with_name("format1_cnn2d_synthetic_prediction.npy"))
    scene = load_checkpoint(ckpt).datamodule().load_scene()
    assert np.array_equal(OnnxClassifier.load(tmp_path).predict(scene.cube), expected)


@pytest.mark.parametrize("model", ["cnn2d", "hybridsn_se"])
def test_an_export_from_before_eval_path_was_named_still_predicts(model: str, exported,
                                                                  tmp_path: Path) -> None:
    """model.json written before `eval_path` held `path` (`dense` / `windows`): still read, same labels."""
    import shutil

    folder = exported(model)[0]
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    meta = json.loads((old / "model.json").read_text())
    kind = meta.pop("eval_path")
    meta["path"] = "windows" if kind == "window" else kind
    (old / "model.json").write_text(json.dumps(meta))
    cube = synthetic_cube()
    assert OnnxClassifier.load(old).kind == kind
    assert np.array_equal(OnnxClassifier.load(old).predict(cube), OnnxClassifier.load(folder).predict(cube))
