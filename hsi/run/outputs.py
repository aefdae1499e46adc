"""Everything a run writes into its folder, each file written atomically.

At the start: `split.npz`, `split.png`, `label_mapping.json`. At the end: `metrics.json`,
`classification_report.txt`, `confusion_matrix.csv` / `.png` and the TensorBoard summaries;
then the whole-scene map: `prediction.npy`, `prediction.png`, `map.png` (and `prediction.json`
for `hsi.predict`), and for a scene read from a raster `prediction.tif` and `confidence.tif`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsi.data.readers.raster import rasterio
from hsi.data.scenes.large_scene import StreamedScene
from hsi.data.scenes.scene import Scene, reindex_labels
from hsi.errors import DataError
from hsi.maps import confusion_matrix_figure, label_figure, map_figure, split_figure, write_figure
from hsi.models.metrics import accuracy_report
from hsi.run import dashboard
from hsi.run.checkpoint import reduce_cube
from hsi.run.checkpoint_raster import NetworkBackend
from hsi.run.inference import predict_labels
from hsi.run.precision import inference_precision
from hsi.run.raster_driver import RasterSettings, predict_cube, predict_raster
from hsi.utils.files import atomic_save_npz, atomic_write, atomic_write_json, atomic_write_text
from hsi.utils.geotiff import map_values
from hsi.utils.run_files import (
    CLASSIFICATION_REPORT_FILE,
    CONFIDENCE_RASTER,
    CONFUSION_MATRIX_FIGURE,
    CONFUSION_MATRIX_FILE,
    LABEL_MAPPING_FILE,
    MAP_FIGURE,
    METRICS_FILE,
    PREDICTION_FIGURE,
    PREDICTION_FILE,
    PREDICTION_RASTER,
    PREDICTION_SUMMARY,
    SPLIT_FIGURE,
    SPLIT_FILE,
)

log = logging.getLogger("hsi")


# -- files -----------------------------------------------------------------------------------
def write_npy(path: str | Path, array: np.ndarray) -> Path:
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, save)


def _figure_to_loggers(loggers: Sequence[Any], tag: str, fig, step: int) -> None:
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            experiment.add_figure(tag, fig, global_step=step, close=False)


# -- start of a run --------------------------------------------------------------------------
def write_split(path: str | Path, datamodule: Any) -> Path:
    """Pixel coordinates (row, col) of each subset, and the scene's labels, as `.npz`."""
    scene = datamodule.scene
    return atomic_save_npz(path, **datamodule.split, labels=scene.labels,
                           class_names=np.array(scene.class_names))


def write_label_mapping(path: str | Path, datamodule: Any) -> Path:
    """JSON: each class's network output index, label, source label value, name and pixels."""
    return atomic_write_json(path, datamodule.scene.label_mapping())


def write_split_figure(path: str | Path, datamodule: Any, loggers: Sequence[Any] = ()) -> Path:
    """split.png: the ground truth beside the train / val / test pixels and the dropped ones,
    also given to the loggers that take figures (TensorBoard: `split`)."""
    scene, report = datamodule.scene, datamodule.split_report
    dropped = "dropped (within a training window)" if report.get("method") == "disjoint" else \
        "in no subset"
    title = f"{scene.name}: {report.get('method', 'split')} split, {datamodule.hparams.patch_size}px windows"
    fig = split_figure(scene.labels, datamodule.split, scene.class_names, title, dropped)
    _figure_to_loggers(loggers, "split", fig, 0)
    return write_figure(path, fig, dpi=110)


def write_run_start(output_dir: str | Path, datamodule: Any, loggers: Sequence[Any] = ()) -> Path:
    """The split (split.npz, split.png, also to `loggers`) and label mapping, written before
    training starts."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_split(output_dir / SPLIT_FILE, datamodule)
    write_split_figure(output_dir / SPLIT_FIGURE, datamodule, loggers)
    write_label_mapping(output_dir / LABEL_MAPPING_FILE, datamodule)
    log.info("Scene %s: %s, %d bands per window, %d classes; outputs in %s",
             datamodule.scene.name, datamodule.sizes(), datamodule.in_bands,
             datamodule.num_classes, output_dir)
    return output_dir


# -- end of a run: metrics and reports -------------------------------------------------------
def classification_report_text(preds: np.ndarray, targets: np.ndarray,
                               class_names: list[str]) -> str:
    """Per-class precision, recall and F1 to 4 digits (scikit-learn)."""
    from sklearn.metrics import classification_report

    return classification_report(targets, preds, labels=list(range(len(class_names))),
                                 target_names=class_names, digits=4, zero_division=0)


def confusion_matrix_csv(confusion: np.ndarray, class_names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, np.asarray(confusion)):
        writer.writerow([name, *(int(v) for v in row)])
    return buffer.getvalue()


def write_run_outputs(output_dir: str | Path, report: dict[str, Any], class_names: list[str],
                      extra: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.json, classification_report.txt, confusion_matrix.csv/.png; return metrics."""
    out = Path(output_dir)
    confusion = np.asarray(report["confusion_matrix"])
    metrics = {
        "oa": report["oa"], "aa": report["aa"], "kappa": report["kappa"],
        "per_class_accuracy": dict(zip(class_names, report["per_class_accuracy"])),
        "class_names": class_names,
        **extra,
    }
    atomic_write_json(out / METRICS_FILE, metrics)
    atomic_write_text(out / CLASSIFICATION_REPORT_FILE,
                      classification_report_text(np.asarray(report["preds"]),
                                                 np.asarray(report["targets"]), class_names))
    atomic_write_text(out / CONFUSION_MATRIX_FILE, confusion_matrix_csv(confusion, class_names))
    title = f"OA {report['oa']:.4f}  AA {report['aa']:.4f}  kappa {report['kappa']:.4f}"
    write_figure(out / CONFUSION_MATRIX_FIGURE, confusion_matrix_figure(confusion, class_names, title))
    return metrics


def update_metrics(output_dir: str | Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Add `extra` to an existing metrics.json (e.g. the map's timing after the map is written)."""
    path = Path(output_dir) / METRICS_FILE
    metrics = json.loads(path.read_text()) | extra
    atomic_write_json(path, metrics)
    return metrics


def log_to_tensorboard(loggers: Sequence[Any], hparams: dict[str, Any], report: dict[str, Any],
                       class_names: list[str], metrics: dict[str, Any]) -> None:
    """Hyperparameters with the final metrics, per-class test accuracy, the confusion matrix and
    the classification report (`hsi.run.dashboard.finish`)."""
    text = classification_report_text(np.asarray(report["preds"]), np.asarray(report["targets"]),
                                      class_names)
    dashboard.finish(list(loggers), hparams, report, class_names, metrics, text)


def finish_run(output_dir: str | Path, datamodule: Any, report: dict[str, Any], extra: dict[str, Any],
               loggers: Sequence[Any], step: int, hparams: dict[str, Any], seed: int) -> dict[str, Any]:
    """Write a run's metrics, reports and TensorBoard summaries; return metrics.json's content.

    Besides `extra`: the subset sizes, `leakage` (test pixels inside a training window),
    `audit` (test and validation pixels inside a training window of this run's size and of
    7x7, 9x9 and 25x25: `hsi.data.splits.leakage.split_audit`),
    `split` (the method and, for disjoint and per_class splits, the achieved per-class shares),
    the scene and the seed.
    """
    sizes = datamodule.sizes()
    evaluated = len(report["targets"])
    if evaluated != sizes["n_test"]:  # e.g. trainer.limit_test_batches: say what was really tested
        log.warning("Only %d of the %d test pixels were evaluated (the test was cut short, e.g. by "
                    "trainer.limit_test_batches or fast_dev_run); n_test records %d, n_test_split %d.",
                    evaluated, sizes["n_test"], evaluated, sizes["n_test"])
        sizes |= {"n_test": evaluated, "n_test_split": sizes["n_test"]}
    untested = [datamodule.class_names[k] for k in report.get("untested", [])]
    if untested:
        log.warning("No test pixel for %s: their accuracy is null and AA averages the other classes.",
                    ", ".join(untested))
    extra = {**sizes, **extra, "untested_classes": untested, "leakage": datamodule.leakage(),
             "audit": datamodule.audit(),
             "split": datamodule.split_report, "scene": datamodule.scene.name, "seed": seed,
             "data": getattr(datamodule, "data_report", {})}
    metrics = write_run_outputs(output_dir, report, datamodule.class_names, extra)
    log_to_tensorboard(loggers, hparams, report, datamodule.class_names, metrics)
    log.info("Test OA %.4f  AA %.4f  kappa %.4f  (%d test pixels); outputs in %s",
             metrics["oa"], metrics["aa"], metrics["kappa"], extra["n_test"], output_dir)
    return metrics


# -- maps ------------------------------------------------------------------------------------
def write_prediction(output_dir: Path, cube: np.ndarray, scene: Scene | None, prediction: np.ndarray,
                     class_names: list[str], title: str, loggers: Sequence[Any] = (),
                     step: int = 0, rgb_bands: list[int] | None = None,
                     evaluated: np.ndarray | None = None) -> dict[str, Any]:
    """prediction.npy, prediction.png, map.png and, with a ground truth, accuracy over labelled pixels
    (map.png counts its errors over `evaluated`, a mask of the validation and test pixels, if given)."""
    write_npy(output_dir / PREDICTION_FILE, prediction.astype(np.int16))
    write_figure(output_dir / PREDICTION_FIGURE, label_figure(prediction, class_names, title), dpi=130,
                 bbox_inches="tight")
    truth = scene.labels if scene is not None and scene.num_classes == len(class_names) else None
    fig = map_figure(cube, truth, prediction, class_names, rgb_bands, title=title, evaluated=evaluated)
    _figure_to_loggers(loggers, "map", fig, step)
    write_figure(output_dir / MAP_FIGURE, fig, dpi=110)
    if truth is None:
        return {}
    return labelled_accuracy(prediction, truth, len(class_names))


def labelled_accuracy(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, Any]:
    """OA, AA, kappa and the count of the labelled pixels (truth > 0) of a map (classes 1..K)."""
    labelled = truth > 0
    report = accuracy_report(torch.as_tensor(prediction[labelled].astype(np.int64) - 1),
                             torch.as_tensor(truth[labelled].astype(np.int64) - 1), num_classes)
    return {k: report[k] for k in ("oa", "aa", "kappa")} | {"labelled_pixels": int(labelled.sum())}


def read_map_classes(path: Path, label_values: Sequence[int]) -> np.ndarray:
    """A prediction.tif's pixels as classes 1..K (0 = none): its pixel values are the classes'
    source values where they fit (`hsi.utils.geotiff.map_values`)."""
    with rasterio().open(path) as ds:
        pixels = ds.read(1).astype(np.int64)
    values = map_values(list(label_values), len(label_values))
    return reindex_labels(pixels, values)[0]


def add_raster_accuracy(output_dir: str | Path, summary: dict[str, Any],
                        truth: Scene | None) -> dict[str, Any]:
    """`summary` (prediction.json of a raster) with the accuracy of prediction.tif on `truth`'s labelled
    pixels, as a prediction of an in-memory scene reports it; prediction.json rewritten. No truth: as is."""
    if truth is None:
        return summary
    prediction = read_map_classes(Path(output_dir) / PREDICTION_RASTER, truth.label_values)
    summary = summary | labelled_accuracy(prediction, truth.labels, truth.num_classes)
    atomic_write_json(Path(output_dir) / PREDICTION_SUMMARY, summary)
    log.info("OA %.4f  AA %.4f  kappa %.4f on the %d labelled pixels of %s", summary["oa"], summary["aa"],
             summary["kappa"], summary["labelled_pixels"], truth.name)
    return summary


def truth_for_model(scene: Scene | None, class_names: Sequence[str], label_values: Sequence[int] | None,
                    model_scene: str | None) -> Scene | None:
    """The scene if its ground truth holds the model's classes (names and label values), so that
    accuracy can be computed; the model's own scene loaded with other classes (e.g. another
    data.ignore_labels) is refused; another scene with other classes gets a map without accuracy."""
    if scene is None:
        return None
    names, values = list(scene.class_names), [int(v) for v in scene.label_values]
    theirs = [int(v) for v in label_values] if label_values else values
    if names == list(class_names) and values == theirs:
        return scene
    here = ", ".join(f"{v}:{n}" for v, n in zip(values, names))
    model = ", ".join(f"{v}:{n}" for v, n in zip(theirs, class_names))
    if scene.name == model_scene:
        raise DataError(f"The model was trained on {scene.name} with classes [{model}] but the scene is "
                        f"loaded here with [{here}]: load it with the training run's settings "
                        f"(data.ignore_labels, data.gt_path) to compare.")
    log.warning("%s's ground truth holds other classes than the model's ([%s] vs [%s]): the map is "
                "written without accuracy.", scene.name, here, model)
    return None


@dataclass
class PredictionResult:
    """One whole-scene prediction, from a checkpoint or an exported graph alike.

    `cube`: the scene as classified (NaN / inf filled); `scene`: with its ground truth, or None;
    `bad`: pixels whose spectrum was NaN / inf (left unclassified, 0); `eval_path`: how it ran;
    `source`: where the model came from (recorded in prediction.json)."""

    cube: np.ndarray
    scene: Scene | None
    prediction: np.ndarray
    bad: np.ndarray
    class_names: list[str]
    title: str
    rgb_bands: list[int] | None
    eval_path: str
    seconds: float
    source: dict[str, Any] = field(default_factory=dict)


def write_prediction_run(output_dir: str | Path, result: PredictionResult) -> dict[str, Any]:
    """What `hsi.predict` writes: the map files and prediction.json; pixels in `result.bad`
    (NaN / inf spectra) are left unclassified (0)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    prediction = result.prediction
    prediction[result.bad] = 0  # no label where the spectrum was not measured
    metrics = write_prediction(output_dir, result.cube, result.scene, prediction, result.class_names,
                               result.title, rgb_bands=result.rgb_bands)
    summary = {**result.source, "eval_path": result.eval_path, "seconds": round(result.seconds, 2),
               "shape": list(prediction.shape), "nonfinite_pixels": int(result.bad.sum()),
               "class_names": list(result.class_names), **metrics}
    atomic_write_json(output_dir / PREDICTION_SUMMARY, summary)
    log.info("%s inference over %dx%d pixels in %.1f s%s; outputs in %s", result.eval_path,
             *prediction.shape, result.seconds,
             f", OA {metrics['oa']:.4f} on labelled pixels" if metrics else "", output_dir)
    return summary


def write_scene_map(output_dir: Path, net: torch.nn.Module, state: dict[str, Any], scene: Scene,
                    eval_path: str = "auto", loggers: Sequence[Any] = (), step: int = 0,
                    precision: Any = "32-true") -> dict[str, Any]:
    """Classify every pixel of the scene a model was trained on (`state`: the datamodule's
    checkpoint state) in the run's `precision` (`hsi.run.precision`); write the map files; return
    how it ran."""
    with inference_precision(precision, next(net.parameters()).device):
        drawn = _scene_map(output_dir, net, state, scene, eval_path, loggers, step)
    return drawn | {"map_precision": str(precision)}


def _scene_map(output_dir: Path, net: torch.nn.Module, state: dict[str, Any], scene: Scene,
               eval_path: str, loggers: Sequence[Any], step: int) -> dict[str, Any]:
    if isinstance(scene, StreamedScene):  # never in memory: prediction.tif streamed, OA from it
        return _streamed_scene_map(output_dir, net, state, scene, eval_path)
    start = time.perf_counter()
    confidence = None
    if scene.geo is not None:  # a raster: classified as hsi.predict classifies it (nodata -> 0), with
        # prediction.tif / confidence.tif with the raster's CRS and transform
        invalid = scene.invalid if scene.invalid is not None else np.zeros(scene.shape, dtype=bool)
        backend = NetworkBackend(net, state, eval_path)
        done = predict_cube(backend, scene.cube, invalid, scene.geo, output_dir,
                            RasterSettings(progress=False))
        prediction, confidence, path = done.labels, done.confidence, backend.eval_path
    else:
        prediction, path = predict_labels(net, reduce_cube(state, scene.cube), state["patch_size"], eval_path)
    seconds = time.perf_counter() - start
    title = f"{type(net).__name__} on {scene.name} ({path} inference)"
    evaluated = np.zeros(prediction.shape, dtype=bool)  # errors are counted on val + test pixels
    for subset in ("val", "test"):
        coords = np.asarray(state.get("split", {}).get(subset, np.zeros((0, 2)))).reshape(-1, 2).astype(int)
        evaluated[coords[:, 0], coords[:, 1]] = True
    metrics = write_prediction(output_dir, scene.cube, scene, prediction, list(scene.class_names), title,
                               loggers, step, state.get("rgb_bands"), evaluated)
    files = [MAP_FIGURE] + ([PREDICTION_RASTER, CONFIDENCE_RASTER] if confidence is not None else [])
    log.info("Map of the whole scene (%s inference, %.1f s): %s", path, seconds,
             ", ".join(str(output_dir / name) for name in files))
    return {"map_eval_path": path, "map_seconds": round(seconds, 2), "map_oa_labelled": metrics.get("oa")}


def _streamed_scene_map(output_dir: Path, net: torch.nn.Module, state: dict[str, Any], scene: StreamedScene,
                        eval_path: str) -> dict[str, Any]:
    """The map of a scene built block by block: prediction.tif / confidence.tif written as
    `hsi.predict` streams them, accuracy on the labelled pixels read back from it (no PNG figures:
    the scene is larger than memory)."""
    result = predict_raster(NetworkBackend(net, state, eval_path), scene.geo["gdal_path"], output_dir, True,
                            RasterSettings(progress=False))
    prediction = read_map_classes(output_dir / PREDICTION_RASTER, scene.label_values)
    oa = labelled_accuracy(prediction, scene.labels, scene.num_classes)["oa"] if (scene.labels > 0).any() \
        else None
    log.info("Map of the whole scene (%s inference, streamed, %.1f s): %s, %s", result.path, result.seconds,
             output_dir / PREDICTION_RASTER, output_dir / CONFIDENCE_RASTER)
    return {"map_eval_path": result.path, "map_seconds": round(result.seconds, 2), "map_oa_labelled": oa,
            "map_streamed": True}
