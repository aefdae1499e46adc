"""A training run's maps on real Salinas-A as a GeoTIFF with polygons (issue 29, item 10):
`test=false` with `map=true` still draws the map (from the weights a test would use), the log names
prediction.tif / confidence.tif, their QGIS styles lie beside them; `hsi.evaluate` names its own
`moved.gt_path=` key; and the README's first command ends on a convincing OA (slow)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from hsi.errors import MissingFileError
from tests.conftest import PROJECT_ROOT, compose_config, compose_train
from tests.data.geo_scenes import salinas_a_files

GIS_RUN = ["model=cnn2d", "data.patch_size=9", "data.pca.components=15", "trainer=cpu",
           "trainer.max_epochs=1", "+trainer.limit_train_batches=20", "logger=none",
           "callbacks.progress_bar.refresh_rate=0"]


@pytest.fixture(scope="module")
def untested_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """cnn2d for one short epoch on Salinas-A's polygons with test=false (map=true, the default)."""
    from hsi.train import train

    base = tmp_path_factory.mktemp("untested")
    files = salinas_a_files(base)
    run = base / "run"
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("hsi")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        metrics = train(compose_train(["data=custom", f"data.cube_path={files['tif']}",
                                       f"data.gt_path={files['gpkg']}", "data.gt_field=crop", "test=false",
                                       *GIS_RUN], run))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return {"run": run, "metrics": metrics, "log": [r.getMessage() for r in records], "files": files}


def test_test_false_still_draws_the_map(untested_run: dict) -> None:
    run = untested_run["run"]
    for name in ("map.png", "prediction.tif", "prediction.qml", "confidence.tif", "confidence.qml"):
        assert (run / name).is_file(), name
    assert not (run / "metrics.json").exists()  # no test: no metrics
    said = [line for line in untested_run["log"] if line.startswith("test=false")]
    assert len(said) == 1 and "the map is drawn from" in said[0] and ".ckpt" in said[0], untested_run["log"]
    assert untested_run["metrics"] == {}  # a run without test returns no metrics


def test_the_log_names_the_written_geotiffs(untested_run: dict) -> None:
    run = untested_run["run"]
    [line] = [line for line in untested_run["log"] if line.startswith("Map of the whole scene")]
    for name in ("map.png", "prediction.tif", "confidence.tif"):
        assert str(run / name) in line, line


def test_evaluate_names_its_own_gt_path_key(untested_run: dict, tmp_path: Path) -> None:
    from hsi.evaluate import evaluate

    checkpoint = next((untested_run["run"] / "checkpoints").glob("*.ckpt"))
    with pytest.raises(MissingFileError) as raised:
        evaluate(compose_config("evaluate", [f"ckpt_path={checkpoint}",
                                             f"moved.gt_path={tmp_path / 'moved.gpkg'}",
                                             "logger=none", "map=false"], tmp_path / "evaluated"))
    message = str(raised.value)
    assert "moved.gt_path" in message and "data.gt_path" not in message, message


@pytest.mark.slow
def test_the_readme_first_run_reaches_a_convincing_oa(tmp_path: Path) -> None:
    from hsi.train import train

    readme = (PROJECT_ROOT / "README.md").read_text()
    command = re.search(r"python -m hsi\.train ([^#\n]+)", readme).group(1).split()
    metrics = train(compose_train([*command, "logger=none", "callbacks.progress_bar.refresh_rate=0"],
                                  tmp_path))
    assert metrics["oa"] >= 0.95, metrics["oa"]
    quoted = float(re.search(r"ending on `Test OA (0\.\d+)`", readme).group(1))
    assert abs(quoted - metrics["oa"]) <= 0.02, (quoted, metrics["oa"])  # the README says what it gives
