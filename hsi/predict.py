"""Classify every pixel of a scene with a checkpoint: `python -m hsi.predict ckpt_path=<file>`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

import hsi.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.checkpoint import Checkpoint, load_checkpoint
from hsi.data.geo_scene import uses_gdal
from hsi.data.io import read_array
from hsi.data.scene import Scene, fill_nonfinite
from hsi.deploy.raster import predict_onnx_raster
from hsi.errors import ConfigError, report_errors
from hsi.inference import check_method, predict_labels
from hsi.onnx_export import predict_onnx
from hsi.run.streaming import predict_raster_run
from hsi.run_files import write_prediction_run
from hsi.validation import check_predict_config

log = logging.getLogger(__name__)


def scene_from_config(data_cfg: DictConfig | None,
                      checkpoint: Checkpoint) -> tuple[np.ndarray, Scene | None]:
    """(cube, scene with ground truth or None) from `data=...`, or the checkpoint's own scene."""
    if data_cfg is None:
        scene = checkpoint.datamodule().load_scene()
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


def raster_input(data_cfg: DictConfig | None, checkpoint: Checkpoint | None) -> str | None:
    """The raster to classify through rasterio (`data=custom` with a GDAL raster, or without `data`
    the georeferenced raster the checkpoint was trained on), else None."""
    if data_cfg is None:
        geo = (checkpoint.scene.get("geo") if checkpoint is not None else None) or {}
        return geo.get("gdal_path")
    if data_cfg.get("scene") != "custom" or not data_cfg.get("cube_path"):
        return None
    cube_path = str(Path(str(data_cfg.cube_path)).expanduser().resolve())
    return cube_path if uses_gdal(cube_path, data_cfg.get("gt_path"), data_cfg.get("gt_field")) else None


def predict(cfg: DictConfig) -> dict[str, Any]:
    check_predict_config(cfg)
    if cfg.get("model_path"):  # an exported graph (hsi.export): onnxruntime, no checkpoint
        raster = raster_input(cfg.get("data"), None)
        if raster is not None:
            return predict_onnx_raster(cfg, raster)
        return predict_onnx(cfg, scene_from_config)
    if cfg.get("ckpt_path") is None:
        raise ConfigError("hsi.predict needs ckpt_path=<checkpoint> or model_path=<exported model.onnx>.")
    checkpoint = load_checkpoint(cfg.ckpt_path)
    model = checkpoint.classifier(cfg.get("device", "auto"))
    check_method(model.net, cfg.method)
    state = checkpoint.scene
    raster = raster_input(cfg.get("data"), checkpoint)
    if raster is not None:  # georeferenced in, prediction.tif / confidence.tif out; streamed if large
        return predict_raster_run(cfg, model.net, state, raster,
                                  {"checkpoint": str(checkpoint.path.resolve())})
    cube, scene = scene_from_config(cfg.get("data"), checkpoint)
    filled, bad = fill_nonfinite(cube)  # as in training: band means for the network ...
    if bad.any():
        log.warning("%d pixels hold NaN or inf values: filled with band means for the network and "
                    "left unclassified (0) in prediction.npy.", int(bad.sum()))
    start = time.perf_counter()
    prediction, path = predict_labels(model.net, checkpoint.reduce(filled), state["patch_size"], cfg.method,
                                      cfg.batch_size, cfg.tile_rows, cfg.progress)
    seconds = time.perf_counter() - start
    title = f"{type(model.net).__name__} on {scene.name if scene else 'cube'} ({path} inference)"
    same_scene = scene is not None and scene.name == state["scene"]
    return write_prediction_run(cfg.paths.output_dir, filled, scene, prediction, bad,
                                list(state["class_names"]), title,
                                state.get("rgb_bands") if same_scene else None, path, seconds,
                                {"checkpoint": str(checkpoint.path.resolve())})


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    report_errors(predict, cfg)


if __name__ == "__main__":
    main()
