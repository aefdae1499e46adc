"""`hsi.predict model_path=<model.onnx> data=custom data.cube_path=<raster>`: an exported graph
(onnxruntime, no torch) classifies a raster read through GDAL; `prediction.tif` and
`confidence.tif` carry the raster's CRS and transform, as with a checkpoint.

The whole raster is read into memory (streaming block by block is the checkpoint path's, see
`hsi.run.streaming`). Nodata pixels are filled with band means for the graph and are 0 in the maps.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from hsi.data.raster import read_raster
from hsi.maps import class_colours
from hsi.runtime import OnnxClassifier
from hsi.utils.files import atomic_write_json
from hsi.utils.geotiff import write_class_map, write_confidence

log = logging.getLogger(__name__)


def softmax_top(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) logits -> ((H, W) classes 1..K, (H, W) float32 top class probability)."""
    shifted = logits - logits.max(axis=0, keepdims=True)
    weights = np.exp(shifted, dtype=np.float32)
    probabilities = weights / weights.sum(axis=0, keepdims=True)
    return probabilities.argmax(axis=0) + 1, probabilities.max(axis=0).astype(np.float32)


def predict_onnx_raster(cfg: Any, raster: str | Path) -> dict[str, Any]:
    """Classify `raster` with the exported graph `cfg.model_path`; write the maps and prediction.json."""
    model = OnnxClassifier.load(cfg.model_path, threads=cfg.get("threads"))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cube, invalid, info = read_raster(raster)
    cube[invalid] = np.nan  # filled with band means by the runtime, 0 in the maps
    start = time.perf_counter()
    logits = model.logits(cube, cfg.get("tile_rows", 128), cfg.get("batch_size", 256))
    seconds = time.perf_counter() - start
    labels, confidence = softmax_top(logits)
    labels[invalid], confidence[invalid] = 0, 0
    names = list(model.class_names)
    geo = info.geo()
    write_class_map(output_dir / "prediction.tif", labels, geo, names, class_colours(len(names)))
    write_confidence(output_dir / "confidence.tif", confidence, geo)
    path = f"onnx-{model.kind}-{model.precision}"
    summary = {"model": str(Path(cfg.model_path).resolve()), "raster": info.path, "path": path,
               "streamed": False, "seconds": round(seconds, 2), "shape": [info.height, info.width],
               "bands": info.bands, "nodata_pixels": int(invalid.sum()), "class_names": names,
               "crs": info.crs, "transform": info.transform, "files": ["prediction.tif", "confidence.tif"]}
    atomic_write_json(output_dir / "prediction.json", summary)
    log.info("%s inference over %dx%d pixels in %.1f s; prediction.tif, confidence.tif in %s", path,
             info.height, info.width, seconds, output_dir)
    return summary
