"""Classify every pixel of a scene with a checkpoint: `python -m hsi.predict ckpt_path=<file>`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

import hsi.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.data.scene import Scene
from hsi.inference import predict_labels
from hsi.maps import map_figure, save_label_image
from hsi.models.classifier import HSIClassifier
from hsi.models.metrics import accuracy_report
from hsi.utils.files import atomic_write, atomic_write_json

log = logging.getLogger(__name__)


def load_classifier(ckpt_path: str | Path, device: str = "auto") -> HSIClassifier:
    """The LightningModule of a checkpoint, with what prediction needs (`scene_info`)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = HSIClassifier.load_from_checkpoint(path, map_location=device)
    if model.scene_info is None:
        raise ValueError(f"{path} carries no scene information (PCA, window, classes); it was "
                         f"not written by hsi.train. Retrain, or evaluate it with its own code.")
    return model.eval()


def checkpoint_datamodule(info: dict[str, Any], data_dir: str | None = None):
    """The datamodule a checkpoint was trained with (not set up), optionally with moved data."""
    from hsi.data.datamodule import HSIDataModule

    options = dict(info["data"])
    if data_dir is not None:
        options["data_dir"] = data_dir
    return HSIDataModule(**options)


def scene_from_config(data_cfg: DictConfig | None, info: dict[str, Any],
                      data_dir: str | None = None) -> tuple[np.ndarray, Scene | None]:
    """(cube, scene with ground truth or None) from `data=...`, or the checkpoint's own scene."""
    from hsi.data.io import read_array

    if data_cfg is None:
        datamodule = checkpoint_datamodule(info, data_dir)
    else:
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


def write_prediction(output_dir: Path, cube: np.ndarray, scene: Scene | None, prediction: np.ndarray,
                     class_names: list[str], title: str, loggers: list[Any] = (),
                     step: int = 0, rgb_bands: list[int] | None = None) -> dict[str, Any]:
    """prediction.npy, prediction.png, map.png and, with a ground truth, accuracy over labelled pixels."""
    import matplotlib.pyplot as plt

    def save_npy(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, prediction.astype(np.int16))

    atomic_write(output_dir / "prediction.npy", save_npy)
    save_label_image(output_dir / "prediction.png", prediction, class_names, title)
    truth = scene.labels if scene is not None and scene.num_classes == len(class_names) else None
    fig = map_figure(cube, truth, prediction, class_names, rgb_bands, title=title)
    atomic_write(output_dir / "map.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            experiment.add_figure("map", fig, global_step=step)
    plt.close(fig)
    if truth is None:
        return {}
    labelled = truth > 0
    report = accuracy_report(torch.as_tensor(prediction[labelled] - 1),
                             torch.as_tensor(truth[labelled] - 1), len(class_names))
    return {k: report[k] for k in ("oa", "aa", "kappa")} | {"labelled_pixels": int(labelled.sum())}


def write_scene_map(output_dir: Path, net: torch.nn.Module, info: dict[str, Any], scene: Scene,
                    method: str = "auto", loggers: list[Any] = (), step: int = 0) -> dict[str, Any]:
    """Classify every pixel of the scene a model was trained on; write the map files and say how."""
    start = time.perf_counter()
    prediction, path = predict_labels(net, info, scene.cube, method)
    seconds = time.perf_counter() - start
    title = f"{type(net).__name__} on {scene.name} ({path} inference)"
    metrics = write_prediction(output_dir, scene.cube, scene, prediction, list(scene.class_names), title,
                               loggers, step, info.get("rgb_bands"))
    log.info("Map of the whole scene (%s inference, %.1f s) in map.png", path, seconds)
    return {"map_inference": path, "map_seconds": round(seconds, 2), "map_oa_labelled": metrics.get("oa")}


def predict(cfg: DictConfig) -> dict[str, Any]:
    model = load_classifier(cfg.ckpt_path, cfg.get("device", "auto"))
    info = model.scene_info
    cube, scene = scene_from_config(cfg.get("data"), info)
    start = time.perf_counter()
    prediction, path = predict_labels(model.net, info, cube, cfg.method, cfg.batch_size,
                                      cfg.tile_rows, cfg.progress)
    seconds = time.perf_counter() - start
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    title = f"{type(model.net).__name__} on {scene.name if scene else 'cube'} ({path} inference)"
    same_scene = scene is not None and scene.name == info["scene"]
    metrics = write_prediction(output_dir, cube, scene, prediction, info["class_names"], title,
                               rgb_bands=info.get("rgb_bands") if same_scene else None)
    summary = {"checkpoint": str(Path(cfg.ckpt_path).resolve()), "path": path,
               "seconds": round(seconds, 2), "shape": list(prediction.shape),
               "class_names": info["class_names"], **metrics}
    atomic_write_json(output_dir / "prediction.json", summary)
    log.info("%s inference over %dx%d pixels in %.1f s%s; outputs in %s", path, *prediction.shape,
             seconds, f", OA {metrics['oa']:.4f} on labelled pixels" if metrics else "", output_dir)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
