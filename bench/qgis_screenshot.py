"""prediction.tif and confidence.tif as QGIS draws them from the styles hsi writes beside them, and
checks, in QGIS itself, that the legend lists the classes and nothing else.

    python bench/qgis_screenshot.py [--run DIR] [--out docs/img] [--epochs 10]

Without `--run`: real Salinas-A from ../shared/data as a UTM GeoTIFF and EPSG:4326 polygons (the
builders of tests/data/geo_scenes.py), then `python -m hsi.train data=custom ... model=cnn2d` on
them in a temporary folder, whose run folder is drawn. Then Debian's PyQGIS (`apt-get install
qgis python3-qgis`; `/usr/bin/python3`, or $QGIS_PYTHON) opens both maps headless
(QT_QPA_PLATFORM=offscreen) as a user's QGIS does: the same-named .qml is loaded by QGIS itself.
It writes `<out>/qgis_prediction.png` (a print layout: each map with its legend) and checks:
the prediction layer is paletted with exactly one entry per class, named as the file's CLASS_<k>
metadata; without its .qml the layer's default renderer (from the colour table GDAL reads) has
the classes and the no-data value only, not 256 entries; confidence is a pseudocolour 0..1 layer.
Exits 1 with the failed checks listed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QGIS_PYTHON = os.environ.get("QGIS_PYTHON", "/usr/bin/python3")


def train_salinas_a(base: Path, epochs: int) -> Path:
    """Salinas-A as GeoTIFF + polygons in `base`, a short cnn2d run on them; its run folder."""
    sys.path.insert(0, str(ROOT))
    from tests.data.geo_scenes import salinas_a_arrays, write_geotiff, write_polygons

    cube, gt = salinas_a_arrays(ROOT.parent / "shared" / "data")
    tif = write_geotiff(base / "salinas_a.tif", cube)
    write_polygons(base / "fields.gpkg", gt)
    run = base / "run"
    subprocess.run([sys.executable, "-m", "hsi.train", "data=custom", f"data.cube_path={tif}",
                    f"data.gt_path={base / 'fields.gpkg'}", "data.gt_field=crop", "model=cnn2d",
                    "data.patch_size=9", "data.pca.components=15", f"trainer.max_epochs={epochs}",
                    "logger=none", "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run}"],
                   cwd=ROOT, check=True, env=os.environ | {"HSI_CACHE_DIR": str(base / "cache")})
    return run


def render(run: Path, out: Path) -> list[str]:
    """In PyQGIS: the layout image and the checks' failures."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from osgeo import gdal
    from qgis.core import (
        QgsApplication,
        QgsLayoutExporter,
        QgsLayoutItemLabel,
        QgsLayoutItemLegend,
        QgsLayoutItemMap,
        QgsLayoutPoint,
        QgsLayoutSize,
        QgsLegendStyle,
        QgsPrintLayout,
        QgsProject,
        QgsRasterLayer,
        QgsUnitTypes,
    )
    from qgis.PyQt.QtGui import QFont

    app = QgsApplication([], False)
    app.initQgis()
    failures = []
    dataset = gdal.Open(str(run / "prediction.tif"))  # kept: a band outlives no dataset
    band = dataset.GetRasterBand(1).GetMetadata()
    names = [band[f"CLASS_{k}"] for k in range(1, len(band) + 1) if f"CLASS_{k}" in band]
    prediction = QgsRasterLayer(str(run / "prediction.tif"), "prediction.tif")
    confidence = QgsRasterLayer(str(run / "confidence.tif"), "confidence.tif")
    renderer = prediction.renderer()
    labels = [c.label for c in renderer.classes()] if renderer.type() == "paletted" else []
    print(f"prediction.tif: {renderer.type()} renderer, {len(labels)} classes: {', '.join(labels)}")
    if renderer.type() != "paletted" or labels != names:
        failures.append(f"prediction.qml: {renderer.type()} with {labels}, expected paletted {names}")
    with tempfile.TemporaryDirectory() as bare:  # without the style: QGIS's own default renderer
        for name in ("prediction.tif", "prediction.tif.aux.xml"):
            shutil.copy(run / name, Path(bare) / name)
        bare_layer = QgsRasterLayer(str(Path(bare) / "prediction.tif"), "bare")
        default = bare_layer.renderer()
        count = len(default.classes()) if default.type() == "paletted" else 0
        print(f"without prediction.qml: {default.type()} renderer, {count} entries")
        if count != len(names) + 1:
            failures.append(f"the default renderer has {count} entries, expected {len(names) + 1}")
        del default, bare_layer
    shader = confidence.renderer()
    scale = (shader.classificationMin(), shader.classificationMax()) if hasattr(shader, "classificationMin") \
        else None
    print(f"confidence.tif: {shader.type()} renderer over {scale}")
    if shader.type() != "singlebandpseudocolor" or scale != (0, 1):
        failures.append(f"confidence.qml: {shader.type()}, expected singlebandpseudocolor 0..1")

    project = QgsProject.instance()
    project.setCrs(prediction.crs())
    project.addMapLayers([prediction, confidence])
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    page = layout.pageCollection().page(0)
    page.setPageSize(QgsLayoutSize(272, 72, QgsUnitTypes.LayoutMillimeters))
    for column, layer in enumerate((prediction, confidence)):
        left = 5 + 125 * column
        title = QgsLayoutItemLabel(layout)
        title.setText(f"{layer.name()} (style: {Path(layer.source()).with_suffix('.qml').name})")
        title.setFont(QFont("DejaVu Sans", 9))
        layout.addLayoutItem(title)
        title.attemptMove(QgsLayoutPoint(left, 3, QgsUnitTypes.LayoutMillimeters))
        title.attemptResize(QgsLayoutSize(120, 6, QgsUnitTypes.LayoutMillimeters))
        frame = QgsLayoutItemMap(layout)
        frame.setLayers([layer])
        frame.attemptMove(QgsLayoutPoint(left, 10, QgsUnitTypes.LayoutMillimeters))
        frame.attemptResize(QgsLayoutSize(58, 58, QgsUnitTypes.LayoutMillimeters))
        frame.setExtent(layer.extent())
        frame.setFrameEnabled(True)
        layout.addLayoutItem(frame)
        legend = QgsLayoutItemLegend(layout)
        legend.setLinkedMap(frame)
        legend.setLegendFilterByMapEnabled(True)  # this map's layer only
        legend.setTitle("")
        legend.rstyle(QgsLegendStyle.Subgroup).setFont(QFont("DejaVu Sans", 8))
        legend.rstyle(QgsLegendStyle.SymbolLabel).setFont(QFont("DejaVu Sans", 8))
        legend.rstyle(QgsLegendStyle.Group).setFont(QFont("DejaVu Sans", 8))
        layout.addLayoutItem(legend)
        legend.attemptMove(QgsLayoutPoint(left + 60, 10, QgsUnitTypes.LayoutMillimeters))
    out.mkdir(parents=True, exist_ok=True)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = 110
    settings.generateWorldFile = False
    settings.exportMetadata = False
    result = QgsLayoutExporter(layout).exportToImage(str(out / "qgis_prediction.png"), settings)
    if result != QgsLayoutExporter.Success:
        failures.append(f"the layout export failed ({result})")
    print(f"wrote {out / 'qgis_prediction.png'}")
    return failures  # no exitQgis(): PyQGIS 3.22 may crash tearing down layouts, after the work


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a folder holding prediction.tif / confidence.tif")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--render", action="store_true", help=argparse.SUPPRESS)  # inside PyQGIS
    args = parser.parse_args()
    if args.render:
        failures = render(args.run, args.out)
        for failure in failures:
            print(f"FAILED: {failure}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if failures else 0)  # skips Qt's teardown (see render)
    with tempfile.TemporaryDirectory(prefix="hsi_qgis_") as base:
        run = args.run or train_salinas_a(Path(base), args.epochs)
        command = [QGIS_PYTHON, __file__, "--render", "--run", str(run.resolve()),
                   "--out", str(args.out.resolve())]
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
