"""Classify every pixel of a scene: `python -m hsi.predict ckpt_path=<file>` (a checkpoint) or
`model_path=<export>/model.onnx` (an exported graph, onnxruntime)."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

import hsi.run.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.deploy.predict import predict_onnx
from hsi.errors import ConfigError
from hsi.run.compat_keys import refuse_old_keys_in_argv
from hsi.run.prediction import predict_checkpoint
from hsi.run.validation import check_predict_config
from hsi.utils.reporting import report_errors


def predict(cfg: DictConfig) -> dict[str, Any]:
    check_predict_config(cfg)
    if cfg.get("model_path"):
        return predict_onnx(cfg)
    if cfg.get("ckpt_path") is None:
        raise ConfigError("hsi.predict needs ckpt_path=<checkpoint> or model_path=<exported model.onnx>.")
    return predict_checkpoint(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    report_errors(predict, cfg)


if __name__ == "__main__":
    refuse_old_keys_in_argv("predict")  # before Hydra parses the command line
    main()
