"""Deploy a checkpoint as ONNX: `python -m hsi.export ckpt_path=<file> [quantize=int8]`.

Writes model.onnx (+ model.int8.onnx, pca.onnx where needed) and model.json into the run folder,
each checked against PyTorch on the checkpoint's whole scene (see hsi.deploy.export; running the
result needs only numpy and onnxruntime: hsi.deploy.runtime).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import hsi.run.config  # noqa: F401  (registers the ${hsi_root:} resolver)
from hsi.deploy.export import export
from hsi.run.compat_keys import refuse_old_keys_in_argv
from hsi.utils.reporting import report_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    report_errors(export, cfg)


if __name__ == "__main__":
    refuse_old_keys_in_argv("export")  # before Hydra parses the command line
    main()
