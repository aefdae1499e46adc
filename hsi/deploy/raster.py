"""`hsi.predict model_path=<model.onnx> data=custom data.cube_path=<raster>`: an exported graph
(onnxruntime, no torch) classifies a raster read through GDAL; `prediction.tif` and
`confidence.tif` carry the raster's CRS and transform, as with a checkpoint.

`OnnxBackend` is the exported graph as the raster driver's backend (`hsi.run.raster_driver`: the
stream decision, the row blocks with their halo, the invalid-pixel rule, the maps and
prediction.json are the driver's, as for a checkpoint): a dense graph runs the row block's
`tile_rows` tiles, a window graph its PCA graph on the row block's rows and each window cut from
the row block padded as the whole scene is, so streamed and in-memory labels are identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hsi.deploy.runtime import OnnxClassifier, check_band_count
from hsi.errors import ConfigError
from hsi.run.outputs import add_raster_accuracy, truth_for_model
from hsi.run.prediction import RecordedData, moved_files, raster_truth
from hsi.run.raster_driver import predict_raster_run


def check_graph_eval_path(model: OnnxClassifier, eval_path: str, model_path: Any) -> None:
    """`inference.eval_path` auto, or the graph's own kind (an exported graph runs one way)."""
    if eval_path != "auto" and eval_path != model.kind:
        raise ConfigError(f"inference.eval_path={eval_path}: {model_path} is a {model.kind} graph; use "
                          f"inference.eval_path=auto.")


class OnnxBackend:
    """An exported graph (`OnnxClassifier`) as a `RasterBackend`."""

    kind = "onnx"

    def __init__(self, model: OnnxClassifier) -> None:
        self.model = model
        self.dense = model.kind == "dense"
        self.eval_path = f"onnx-{model.kind}-{model.precision}"
        self.patch_size = model.patch_size
        self.class_names = model.class_names
        self.label_values = model.meta.get("label_values")
        self.band_record = model.meta

    def block_logits(self, block: np.ndarray, top: int, bottom: int, tile_rows: int,
                     batch_size: int) -> np.ndarray:
        check_band_count(self.model.bands, block.shape[0], self.model.meta.get("scene"), "raster")
        return self.model.block_logits(block, top, bottom, tile_rows, batch_size)


def predict_onnx_raster(cfg: Any, raster: str | Path) -> dict[str, Any]:
    """Classify `raster` with the exported graph `cfg.model_path`; write the maps and prediction.json."""
    settings = cfg.inference
    model = OnnxClassifier.load(cfg.model_path, threads=settings.threads)
    check_graph_eval_path(model, settings.eval_path, cfg.model_path)
    truth = truth_for_model(raster_truth(cfg.get("data"), RecordedData(model.meta["data"]), moved_files(cfg),
                                         settings.block_rows),
                            model.class_names, model.meta.get("label_values"), model.meta.get("scene"))
    summary = predict_raster_run(OnnxBackend(model), raster, cfg.paths.output_dir, settings,
                                 {"model": str(Path(cfg.model_path).resolve())})
    return add_raster_accuracy(cfg.paths.output_dir, summary, truth)
