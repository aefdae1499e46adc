"""Re-run a checkpoint's test on its own scene and split: `python -m hsi.evaluate ckpt_path=<file>`."""

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
from hsi.data.datamodule import HSIDataModule
from hsi.models.cost import model_cost
from hsi.predict import checkpoint_datamodule, load_classifier, write_scene_map
from hsi.reporting import finish_run

log = logging.getLogger(__name__)


def rebuild_datamodule(info: dict[str, Any], data_dir: str | None = None) -> HSIDataModule:
    """The checkpoint's datamodule, with its split checked against the one it recorded."""
    datamodule = checkpoint_datamodule(info, data_dir)
    datamodule.setup()
    for subset, coords in info["split"].items():
        if not np.array_equal(datamodule.split[subset], coords.numpy()):
            raise ValueError(f"The {subset} split rebuilt from scene {info['scene']!r} differs from "
                             f"the one the checkpoint was tested on: the scene's files changed. "
                             f"Point data_dir at the files it was trained on.")
    return datamodule


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test metrics of `cfg.ckpt_path`, written as a training run writes them."""
    model = load_classifier(cfg.ckpt_path)
    info = model.scene_info
    datamodule = rebuild_datamodule(info, cfg.get("data_dir"))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    datamodule.save_split(output_dir / "split.npz")
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if "_target_" in c]
    trainer = instantiate(cfg.trainer)
    start = time.perf_counter()
    trainer.test(model, datamodule=datamodule, verbose=False)
    extra = {"test_seconds": round(time.perf_counter() - start, 2),
             "checkpoint": str(Path(cfg.ckpt_path).resolve()),
             **model_cost(model.net, datamodule.num_bands, info["patch_size"])}
    if cfg.get("map", True):
        extra |= write_scene_map(output_dir, model.net, info, datamodule.scene, cfg.method, loggers)
    hparams = {"model": type(model.net).__name__, "checkpoint": extra["checkpoint"]}
    return finish_run(output_dir, datamodule, model.test_report, extra, loggers, 0, hparams, cfg.seed)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
