"""Maps a GIS can use: class and confidence GeoTIFFs, written block by block.

`prediction.tif`: one band, uint8 (uint16 beyond 255 classes), the input's CRS and transform,
nodata 0, a colour table, class names in the band's metadata (`CLASS_<k>`, inside the file) and,
in the `.tif.aux.xml` beside it (which GDAL and QGIS read first), GDAL category names, a colour
table of the class values only (the TIFF's own has 256 entries) and a raster attribute table
(value, pixel count, class, red, green, blue). `confidence.tif`: float32 with the floating-point
predictor, the top class's probability, nodata 0. Beside each, the QGIS style QGIS loads with it
(`prediction.qml`, `confidence.qml`: hsi.utils.map_styles). Both are tiled and deflate-compressed,
with overviews once larger than one tile; cloud-optimized GeoTIFFs where GDAL has the COG driver
(3.1 and later), else tiled GeoTIFFs with internal overviews. Every file is written atomically.

Only numpy and rasterio: usable by training, `hsi.predict` and torch-free deployments alike.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from tqdm.auto import tqdm

from hsi.utils.files import atomic_write_text, part_path
from hsi.utils.map_styles import class_style, confidence_style, style_path
from hsi.utils.run_files import CONFIDENCE_RASTER, PAM_SIDECAR_SUFFIX, PREDICTION_RASTER

TILE = 256


def class_dtype(num_classes: int) -> str:
    """The map's type for pixel values up to `num_classes` (the largest class value)."""
    return "uint8" if num_classes <= 255 else "uint16"


def map_values(label_values: Sequence[int] | None, num_classes: int) -> list[int]:
    """The pixel value of each class in a class map: the classes' source values (the user's codes,
    `Scene.label_values`) when they are distinct whole numbers from 1 to 65535, else 1..K."""
    positions = list(range(1, num_classes + 1))
    if not label_values or len(label_values) != num_classes:
        return positions
    values = [int(v) for v in label_values]
    fits = len(set(values)) == num_classes and all(1 <= v <= 65535 for v in values)
    return values if fits else positions


class GeoTiffWriter:
    """A one-band GeoTIFF written in row blocks (`write`), finished by `close` (overviews, COG copy,
    class names, QGIS style). `kind`: "classes" (nearest-neighbour overviews, colour table) or
    "continuous" (averaged overviews, floating-point predictor). `class_values`: the pixel value of
    each class (default 1..K); `colours`: (K + 1, 3), row k the colour of class k, row 0 unused."""

    def __init__(self, path: str | Path, height: int, width: int, geo: dict[str, Any] | None, dtype: str,
                 kind: str = "classes", class_names: Sequence[str] | None = None,
                 colours: np.ndarray | None = None, nodata: float = 0,
                 class_values: Sequence[int] | None = None) -> None:
        import rasterio

        self.path = Path(path)
        self.kind = kind
        self.class_names = list(class_names or [])
        self.class_values = [int(v) for v in class_values] if class_values is not None else \
            list(range(1, len(self.class_names) + 1))
        self.colours = colours
        # class k (1..K) is written as class_values[k - 1] (`map_values`: the user's codes, or k)
        self._lookup = None if self.class_values == list(range(1, len(self.class_values) + 1)) else \
            np.asarray([0, *self.class_values], dtype=np.int64)
        self.counts = np.zeros(max(self.class_values, default=0) + 1, dtype=np.int64)
        self.tmp = part_path(self.path)
        profile: dict[str, Any] = {
            "driver": "GTiff", "height": int(height), "width": int(width), "count": 1, "dtype": dtype,
            "nodata": nodata, "tiled": True, "blockxsize": TILE, "blockysize": TILE, "compress": "deflate",
            "BIGTIFF": "IF_SAFER"}
        if kind == "continuous":
            profile["predictor"] = 3  # floating point: deflate packs probabilities far better
        if geo and geo.get("crs"):
            profile["crs"] = rasterio.crs.CRS.from_wkt(geo["crs"])
        if geo and geo.get("transform"):
            profile["transform"] = rasterio.Affine(*geo["transform"][:6])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning for a plain raster
            self.ds = rasterio.open(self.tmp, "w", **profile)
        self._describe()

    def _describe(self) -> None:
        """Colour table, class names and band description: set before any pixel is written."""
        ds = self.ds
        if self.kind == "classes":
            if self.colours is not None:
                table = {0: (0, 0, 0, 0)} | {value: (*rgb, 255) for value, rgb in self._entries()}
                ds.write_colormap(1, table)
            ds.update_tags(1, **{f"CLASS_{v}": name for v, name in zip(self.class_values, self.class_names)})
            ds.set_band_description(1, "class")
        else:
            ds.set_band_description(1, "confidence (top class probability)")

    def _entries(self) -> list[tuple[int, tuple[int, int, int]]]:
        """(pixel value, RGB) of each class."""
        colours = np.zeros((len(self.class_values) + 1, 3), dtype=np.uint8) if self.colours is None \
            else np.asarray(self.colours, dtype=np.uint8)
        return [(value, tuple(int(c) for c in colours[k][:3]))
                for k, value in enumerate(self.class_values, start=1)]

    def write(self, row_start: int, block: np.ndarray) -> None:
        """Rows [row_start, row_start + len(block)) of the map."""
        from rasterio.windows import Window

        block = np.asarray(block)
        if self.kind == "classes" and self._lookup is not None:  # classes 1..K -> their values
            block = self._lookup[block]
        window = Window(0, row_start, block.shape[1], block.shape[0])
        block = block.astype(self.ds.dtypes[0], copy=False)
        self.ds.write(block, 1, window=window)
        if self.kind == "classes":  # the pixel counts of the attribute table
            counts = np.bincount(block.ravel(), minlength=len(self.counts))
            self.counts += counts[:len(self.counts)]

    def close(self) -> Path:
        """Finish the file: metadata, colour table, overviews, COG layout; returns its path."""
        import rasterio
        import rasterio.shutil
        from rasterio.enums import Resampling

        self.ds.close()
        resampling = "NEAREST" if self.kind == "classes" else "AVERAGE"
        predictor = {"predictor": "FLOATING_POINT"} if self.kind == "continuous" else {}
        cog = part_path(self.path, "cog")
        try:
            rasterio.shutil.copy(self.tmp, cog, driver="COG", compress="DEFLATE", blocksize=TILE,
                                 overview_resampling=resampling, BIGTIFF="IF_SAFER", **predictor)
            os.replace(cog, self.path)
            self.tmp.unlink()
        except Exception:  # noqa: BLE001 - GDAL without the COG driver: overviews in place
            cog.unlink(missing_ok=True)
            with rasterio.open(self.tmp, "r+") as dst:
                dst.build_overviews(overview_factors(dst.height, dst.width), Resampling[resampling.lower()])
            os.replace(self.tmp, self.path)
        aux = self.path.with_name(self.path.name + PAM_SIDECAR_SUFFIX)
        if self.kind == "classes" and self.class_names:
            entries = self._entries()
            atomic_write_text(aux, pam_xml(self.class_names, entries, self.counts))
            atomic_write_text(style_path(self.path), class_style(
                [value for value, _ in entries], self.class_names, [rgb for _, rgb in entries]))
        else:
            aux.unlink(missing_ok=True)
            if self.kind == "continuous":
                atomic_write_text(style_path(self.path), confidence_style())
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.ds.close()
        for part in (self.tmp, part_path(self.path, "cog")):
            part.unlink(missing_ok=True)

    def __enter__(self) -> GeoTiffWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def overview_factors(height: int, width: int) -> list[int]:
    """2, 4, 8, ... until the smallest overview fits in one tile."""
    factors, factor = [], 2
    while max(height, width) / factor >= TILE / 2 and factor <= 4096:
        factors.append(factor)
        factor *= 2
    return factors or [2]


def pam_xml(class_names: Sequence[str], entries: Sequence[tuple[int, tuple[int, int, int]]],
            counts: np.ndarray | None = None) -> str:
    """GDAL's PAM sidecar for band 1: category names (index = pixel value, 0 = no data), a colour
    table of the values 0..max class value only (GDAL and QGIS read it before the TIFF's 256
    entries, so QGIS lists the classes, not 256 values) and a thematic raster attribute table
    (Value, Count, Class, Red, Green, Blue). `entries`: (pixel value, RGB) of each class;
    `counts[v]`: the pixels of value v."""
    by_value = {value: (name, rgb) for (value, rgb), name in zip(entries, class_names, strict=True)}
    top = max(by_value, default=0)
    names = [by_value[v][0] if v in by_value else ("no data" if v == 0 else "") for v in range(top + 1)]
    categories = "".join(f"<Category>{escape(name)}</Category>" for name in names)
    table = "".join('<Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(*by_value[v][1], 255) if v in by_value
                    else '<Entry c1="0" c2="0" c3="0" c4="0"/>' for v in range(top + 1))
    fields = [("Value", 0, 5), ("Count", 0, 1), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7),
              ("Blue", 0, 8)]
    defs = "".join(f'<FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage></FieldDefn>'
                   for i, (n, t, u) in enumerate(fields))
    counts = np.zeros(top + 1, dtype=np.int64) if counts is None else np.asarray(counts)
    rows = "".join(
        f'<Row index="{i}"><F>{value}</F><F>{int(counts[value]) if value < len(counts) else 0}</F>'
        f"<F>{escape(name)}</F>" + "".join(f"<F>{int(c)}</F>" for c in rgb) + "</Row>"
        for i, (value, (name, rgb)) in enumerate(sorted(by_value.items())))
    return ('<PAMDataset>\n  <PAMRasterBand band="1">\n'
            f"    <ColorInterp>Palette</ColorInterp>\n"
            f"    <CategoryNames>{categories}</CategoryNames>\n"
            f"    <ColorTable>{table}</ColorTable>\n"
            f'    <GDALRasterAttributeTable tableType="thematic">{defs}{rows}</GDALRasterAttributeTable>\n'
            "  </PAMRasterBand>\n</PAMDataset>\n")


def write_class_map(path: str | Path, labels: np.ndarray, geo: dict[str, Any] | None,
                    class_names: Sequence[str], colours: np.ndarray,
                    values: Sequence[int] | None = None) -> Path:
    """A whole (H, W) label map (classes 1..K, 0 = no class) as prediction.tif, class k written as
    `values[k - 1]` (default k); `colours` (K + 1, 3), row 0 unused."""
    values = list(values) if values else list(range(1, len(class_names) + 1))
    with GeoTiffWriter(path, *labels.shape, geo, class_dtype(max(values, default=1)), "classes", class_names,
                       colours, class_values=values) as writer:
        writer.write(0, labels)
    return Path(path)


def class_and_confidence(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) logits -> ((H, W) classes 1..K, (H, W) float32 top class probability): the one
    softmax of every map (checkpoint and ONNX, `prediction.tif` and `confidence.tif`)."""
    shifted = logits - logits.max(axis=0, keepdims=True)
    weights = np.exp(shifted, dtype=np.float32)
    probabilities = weights / weights.sum(axis=0, keepdims=True)
    return probabilities.argmax(axis=0) + 1, probabilities.max(axis=0).astype(np.float32)


def write_confidence(path: str | Path, confidence: np.ndarray, geo: dict[str, Any] | None) -> Path:
    """A whole (H, W) top-class probability map (0 = no data) as confidence.tif."""
    with GeoTiffWriter(path, *confidence.shape, geo, "float32", "continuous") as writer:
        writer.write(0, confidence)
    return Path(path)


def read_class_names(path: str | Path) -> list[str]:
    """The class names a prediction.tif records in its band metadata (CLASS_<pixel value>), in the
    order of their values."""
    import rasterio

    with rasterio.open(path) as ds:
        tags = ds.tags(1)
    coded = {int(key[6:]): name for key, name in tags.items()
             if key.startswith("CLASS_") and key[6:].isdigit()}
    return [coded[v] for v in sorted(coded)]


class MapWriters:
    """prediction.tif and confidence.tif written block by block, with a progress bar in pixels per
    second: closed together when the block loop ends, aborted together if it fails (no
    half-written map is left)."""

    def __init__(self, output_dir: Path, height: int, width: int, geo: dict[str, Any] | None,
                 class_names: list[str], colours: Any, progress: bool,
                 values: Sequence[int] | None = None) -> None:
        values = list(values) if values else list(range(1, len(class_names) + 1))
        self.labels = GeoTiffWriter(output_dir / PREDICTION_RASTER, height, width, geo,
                                    class_dtype(max(values, default=1)), "classes", class_names, colours,
                                    class_values=values)
        self.confidence = GeoTiffWriter(output_dir / CONFIDENCE_RASTER, height, width, geo, "float32",
                                        "continuous")
        self.bar = tqdm(total=height * width, unit="px", unit_scale=True, desc="predict",
                        disable=not progress)

    def write(self, start: int, labels: np.ndarray, confidence: np.ndarray) -> None:
        self.labels.write(start, labels)
        self.confidence.write(start, confidence)
        self.bar.update(labels.size)

    def __enter__(self) -> MapWriters:
        return self

    def __exit__(self, error_type: Any, *_: Any) -> None:
        self.bar.close()
        for writer in (self.labels, self.confidence):
            writer.close() if error_type is None else writer.abort()
