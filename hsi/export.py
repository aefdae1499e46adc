"""Deploy a checkpoint as ONNX: `python -m hsi.export ckpt_path=<file> [quantize=int8]`.

Writes model.onnx (+ model.int8.onnx, pca.onnx where needed) and model.json into the run folder,
each checked against PyTorch on the checkpoint's whole scene (see hsi.onnx_export; running the
result needs only numpy and onnxruntime: hsi.runtime).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import hsi.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.errors import report_errors
from hsi.onnx_export import export


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    report_errors(export, cfg)


if __name__ == "__main__":
    main()
