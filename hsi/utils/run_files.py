"""The names of the files runs write (training, evaluation, prediction, export), in one place so
that writers and readers agree."""

from __future__ import annotations

# a run's folder (hsi.train, hsi.evaluate)
METRICS_FILE = "metrics.json"
SPLIT_FILE = "split.npz"
LAST_CHECKPOINT = "checkpoints/last.ckpt"  # save_last of conf/callbacks/model_checkpoint.yaml
SPLIT_FIGURE = "split.png"
LABEL_MAPPING_FILE = "label_mapping.json"
CLASSIFICATION_REPORT_FILE = "classification_report.txt"
CONFUSION_MATRIX_FILE = "confusion_matrix.csv"
CONFUSION_MATRIX_FIGURE = "confusion_matrix.png"
ESTIMATOR_FILE = "model.pkl"  # model=svm's fitted estimator

# a map of every pixel (the end of a training run, hsi.predict)
PREDICTION_FILE = "prediction.npy"
PREDICTION_FIGURE = "prediction.png"
MAP_FIGURE = "map.png"
PREDICTION_RASTER = "prediction.tif"
CONFIDENCE_RASTER = "confidence.tif"
PREDICTION_SUMMARY = "prediction.json"

# beside a map: GDAL's PAM sidecar (prediction.tif.aux.xml), the QGIS style (prediction.qml); and the
# mark of a file being written (.<stem>.<pid>[.<tag>].part<suffix>, renamed into place when done)
PAM_SIDECAR_SUFFIX = ".aux.xml"
STYLE_SUFFIX = ".qml"
PART_MARK = "part"

# an export folder (hsi.export)
MODEL_METADATA = "model.json"
MODEL_GRAPHS = {"fp32": "model.onnx", "int8": "model.int8.onnx", "pca": "pca.onnx"}

# a multirun's summary (hsi.summarize) and a study's results (hsi.search)
RESULTS_TABLE = "results.md"
RESULTS_CSV = "results.csv"
OA_HEATMAP = "oa_heatmap.png"
OA_PLOT = "oa_plot.png"
OPTUNA_RESULTS = "optimization_results.yaml"

# a cost table (hsi.profile)
PROFILE_TABLE = "profile.md"
PROFILE_CSV = "profile.csv"
