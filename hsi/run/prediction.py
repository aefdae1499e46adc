"""Prediction from a checkpoint: every pixel of a scene classified by the trained network
(`python -m hsi.predict ckpt_path=<file>`), and the scene a prediction reads."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from hsi.data.datamodule import HSIDataModule
from hsi.data.readers.io import read_array
from hsi.data.scenes.geo_scene import uses_gdal
from hsi.data.scenes.large_scene import load_streamed_scene
from hsi.data.scenes.scene import Scene, fill_nonfinite
from hsi.errors import HsiError
from hsi.models.dense import check_network_eval_path
from hsi.run.checkpoint import command_keys, load_checkpoint
from hsi.run.checkpoint_raster import NetworkBackend
from hsi.run.inference import predict_labels
from hsi.run.outputs import PredictionResult, add_raster_accuracy, truth_for_model, write_prediction_run
from hsi.run.precision import checkpoint_inference_precision, inference_precision
from hsi.run.raster_driver import predict_raster_run

log = logging.getLogger(__name__)


class RecordsData(Protocol):
    """A checkpoint, or an export's model.json: rebuilds the datamodule it was trained with."""

    def datamodule(self, **overrides: Any) -> HSIDataModule: ...


class RecordedData:
    """The scene settings an export recorded (model.json's `data`), standing in for a checkpoint
    where only `datamodule()` is needed (loading the scene it was trained on)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def datamodule(self, **overrides: Any) -> HSIDataModule:
        return HSIDataModule(**(self.data | {k: v for k, v in overrides.items() if v is not None}))


def scene_from_config(data_cfg: DictConfig | None, recorded: RecordsData,
                      moved: dict[str, Any] | None = None) -> tuple[np.ndarray, Scene | None]:
    """(cube, scene with ground truth or None) from `data=...`, or the scene `recorded` was trained
    on (`moved`: data_dir / cube_path / gt_path where its files are now)."""
    if data_cfg is None:
        moved = {k: v for k, v in (moved or {}).items() if v is not None}
        try:
            with command_keys():
                scene = recorded.datamodule(**moved).load_scene()
        except HsiError as error:
            if moved:
                raise
            raise type(error)(f"{error} (hsi.predict reads the scene where the model was trained: if its "
                              f"files moved, give moved.data_dir=<folder> or, for data=custom, "
                              f"moved.cube_path= / moved.gt_path=; or data=<scene> for another one.)"
                              ) from error
        return scene.cube, scene
    datamodule = instantiate(data_cfg)
    options = dict(datamodule.scene_options)
    if options.get("gt_path") is None and datamodule.hparams.scene == "custom":
        cube_path = options["cube_path"]
        try:  # a cube file with no ground truth in it is fine for prediction
            read_array(cube_path, options.get("gt_key"), 2, "ground truth")
        except (KeyError, ValueError):
            return read_array(cube_path, options.get("cube_key"), 3, "cube"), None
    scene = datamodule.load_scene()
    return scene.cube, scene


def raster_input(data_cfg: DictConfig | None, geo: dict[str, Any] | None) -> str | None:
    """The raster to classify through rasterio (`data=custom` with a GDAL raster, or without `data`
    the georeferenced raster a model was trained on, `geo` as recorded), else None."""
    if data_cfg is None:
        return (geo or {}).get("gdal_path")
    if data_cfg.get("scene") != "custom" or not data_cfg.get("cube_path"):
        return None
    cube_path = str(Path(str(data_cfg.cube_path)).expanduser().resolve())
    return cube_path if uses_gdal(cube_path, data_cfg.get("gt_path"), data_cfg.get("gt_field")) else None


def raster_truth(data_cfg: DictConfig | None, recorded: RecordsData,
                 moved: dict[str, Any] | None = None, block_rows: int | None = None) -> Scene | None:
    """The labels of a raster being classified (`data.gt_path`, or without `data` those the model was
    trained on), read block by block as a streamed scene reads them (the cube never in memory;
    `block_rows`: `inference.block_rows`); None when no ground truth is given."""
    if data_cfg is None:
        datamodule = recorded.datamodule(**{k: v for k, v in (moved or {}).items() if v is not None})
    else:
        datamodule = instantiate(data_cfg)
    options = dict(datamodule.scene_options)
    if datamodule.hparams.scene != "custom" or options.get("gt_path") is None:
        return None
    try:
        return load_streamed_scene(**options, block_rows=block_rows)
    except HsiError as error:
        if data_cfg is not None:  # labels asked for: their problem is the user's to fix
            raise
        log.warning("The labels the model was trained from cannot be read (%s): the map is written "
                    "without accuracy; give data=custom data.gt_path=<labels> to score it.", error)
        return None


def moved_files(cfg: DictConfig) -> dict[str, Any]:
    """Where the model's own scene is now, if its files moved (`moved.data_dir`, `moved.cube_path`,
    `moved.gt_path`), without the keys left null."""
    return {key: value for key, value in (cfg.get("moved") or {}).items() if value is not None}


def predict_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """`python -m hsi.predict ckpt_path=<file> [data=...]`: the map files and prediction.json."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    settings = cfg.inference
    model = checkpoint.classifier(settings.device)
    check_network_eval_path(model.net, settings.eval_path, "inference.eval_path")
    device = next(model.parameters()).device
    precision = checkpoint_inference_precision(settings.get("precision"), device.type,
                                               type(model.net).__name__)
    with inference_precision(precision, device):
        return _predict(cfg, checkpoint, model, {"checkpoint": str(checkpoint.path.resolve()),
                                                 "precision": str(precision)})


def _predict(cfg: DictConfig, checkpoint: Any, model: Any, source: dict[str, Any]) -> dict[str, Any]:
    settings = cfg.inference
    state = checkpoint.data_state
    raster = raster_input(cfg.get("data"), state.get("geo"))
    if raster is not None:  # georeferenced in, prediction.tif / confidence.tif out; streamed if large
        labels = raster_truth(cfg.get("data"), checkpoint, moved_files(cfg), settings.block_rows)
        truth = truth_for_model(labels, state["class_names"], state.get("label_values"), state.get("scene"))
        summary = predict_raster_run(NetworkBackend(model.net, state, settings.eval_path), raster,
                                     cfg.paths.output_dir, settings, source)
        return add_raster_accuracy(cfg.paths.output_dir, summary, truth)
    cube, scene = scene_from_config(cfg.get("data"), checkpoint, moved_files(cfg))
    scene = truth_for_model(scene, state["class_names"], state.get("label_values"), state.get("scene"))
    filled, bad = fill_nonfinite(cube)  # as in training: band means for the network ...
    if bad.any():
        log.warning("%d pixels hold NaN or inf values: filled with band means for the network and "
                    "left unclassified (0) in prediction.npy.", int(bad.sum()))
    start = time.perf_counter()
    prediction, path = predict_labels(model.net, checkpoint.reduce(filled), state["patch_size"],
                                      settings.eval_path, settings.batch_size, settings.tile_rows,
                                      settings.progress)
    same_scene = scene is not None and scene.name == state["scene"]
    return write_prediction_run(cfg.paths.output_dir, PredictionResult(
        cube=filled, scene=scene, prediction=prediction, bad=bad, class_names=list(state["class_names"]),
        title=f"{type(model.net).__name__} on {scene.name if scene else 'cube'} ({path} inference)",
        rgb_bands=state.get("rgb_bands") if same_scene else None, eval_path=path,
        seconds=time.perf_counter() - start, source=source))
