"""Prediction from an exported model (`python -m hsi.predict model_path=<export>/model.onnx`): every
pixel of a scene classified with onnxruntime; writes what a prediction from a checkpoint writes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hsi.deploy.raster import check_graph_eval_path, predict_onnx_raster
from hsi.deploy.runtime import OnnxClassifier
from hsi.run.outputs import PredictionResult, truth_for_model, write_prediction_run
from hsi.run.prediction import RecordedData, moved_files, raster_input, scene_from_config


def predict_onnx(cfg: Any) -> dict[str, Any]:
    """`python -m hsi.predict model_path=<export>/model.onnx [data=...]`: every pixel of a scene
    classified by an exported graph; writes what a prediction from a checkpoint writes."""
    raster = raster_input(cfg.get("data"), None)
    if raster is not None:  # georeferenced in, prediction.tif / confidence.tif out
        return predict_onnx_raster(cfg, raster)
    settings = cfg.inference
    model = OnnxClassifier.load(cfg.model_path, threads=settings.threads)
    check_graph_eval_path(model, settings.eval_path, cfg.model_path)
    cube, scene = scene_from_config(cfg.get("data"), RecordedData(model.meta["data"]), moved_files(cfg))
    scene = truth_for_model(scene, model.class_names, model.meta.get("label_values"), model.meta.get("scene"))
    filled, bad = model.check_cube(cube)  # band count, shape; NaN / inf filled with band means
    start = time.perf_counter()
    prediction = model.predict(filled, settings.tile_rows, settings.batch_size)
    path = f"onnx-{model.kind}-{model.precision}"
    same_scene = scene is not None and scene.name == model.meta.get("scene")
    return write_prediction_run(cfg.paths.output_dir, PredictionResult(
        cube=filled, scene=scene, prediction=prediction, bad=bad, class_names=model.class_names,
        title=f"{model.meta['network']} on {scene.name if scene else 'cube'} ({path} inference)",
        rgb_bands=model.meta.get("rgb_bands") if same_scene else None, eval_path=path,
        seconds=time.perf_counter() - start,
        source={"model": str(Path(cfg.model_path).resolve()),
                "checkpoint": model.meta["checkpoint"]["path"]}))
