"""Re-run a checkpoint's test on its own scene and split: `python -m hsi.evaluate ckpt_path=<file>`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import hsi.run.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.errors import ConfigError
from hsi.models.cost import model_cost
from hsi.models.dense import check_network_eval_path, supports_dense
from hsi.run.checkpoint import command_keys, load_checkpoint
from hsi.run.compat_keys import refuse_old_keys_in_argv
from hsi.run.config import instantiate_group
from hsi.run.outputs import finish_run, update_metrics, write_scene_map, write_split
from hsi.run.precision import checkpoint_inference_precision
from hsi.run.prediction import moved_files
from hsi.run.validation import check_predict_config
from hsi.utils.reporting import report_errors
from hsi.utils.run_files import SPLIT_FILE

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test metrics of `cfg.ckpt_path`, written as a training run writes them."""
    if cfg.get("data") is not None:
        raise ConfigError("hsi.evaluate tests a checkpoint on its own scene and split, so data.* keys do "
                          "not apply; give moved.cube_path= / moved.gt_path= / moved.data_dir= if the files "
                          "moved, or python -m hsi.predict ckpt_path=<file> data=<scene> for another scene.")
    check_predict_config(cfg)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    model = checkpoint.classifier()
    if cfg.get("map", True):
        check_network_eval_path(model.net, cfg.inference.eval_path, "inference.eval_path")
    with command_keys():  # a moved file's message names moved.gt_path=, not data.gt_path
        datamodule = checkpoint.datamodule(**moved_files(cfg))
        datamodule.use_dense_evaluation(supports_dense(model.net), type(model.net).__name__)
        datamodule.setup()  # checks the rebuilt split against the recorded one
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_split(output_dir / SPLIT_FILE, datamodule)
    loggers = instantiate_group(cfg.get("logger"))
    asked = cfg.trainer.get("precision")  # auto: as hsi.train resolves it, for this network here
    precision = checkpoint_inference_precision(asked, cfg.trainer.get("accelerator"),
                                               type(model.net).__name__)
    trainer = instantiate(cfg.trainer, precision=precision)
    start = time.perf_counter()
    trainer.test(model, datamodule=datamodule, verbose=False)
    extra = {"test_seconds": round(time.perf_counter() - start, 2),
             "checkpoint": str(checkpoint.path.resolve()), "checkpoint_format": checkpoint.format,
             "precision_asked": asked, "precision": precision,
             **model_cost(model.net, datamodule.in_bands, datamodule.hparams.patch_size)}
    hparams = {"model": type(model.net).__name__, "checkpoint": extra["checkpoint"]}
    metrics = finish_run(output_dir, datamodule, model.test_report, extra, loggers, 0, hparams, cfg.seed)
    if cfg.get("map", True):
        drawn = write_scene_map(output_dir, model.net, datamodule.state_dict(), datamodule.scene,
                                cfg.inference.eval_path, loggers, precision=precision)
        metrics = update_metrics(output_dir, drawn)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    report_errors(evaluate, cfg)


if __name__ == "__main__":
    refuse_old_keys_in_argv("evaluate")  # before Hydra parses the command line
    main()
