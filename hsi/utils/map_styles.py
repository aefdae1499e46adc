"""QGIS layer styles written beside the maps: QGIS loads `<name>.qml` with `<name>.tif` by itself.

`prediction.qml`: a paletted (unique values) renderer, one entry per class (pixel value, colour,
class name), so the legend lists the classes and nothing else. `confidence.qml`: a single-band
pseudocolour renderer from 0 to 1 (viridis: dark where the network is unsure). Plain XML in the
format QGIS 3.x saves (checked by loading it in QGIS 3.22), no QGIS needed to write it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

from hsi.utils.run_files import STYLE_SUFFIX

# viridis at 0, 0.25, 0.5, 0.75 and 1 (matplotlib's values)
VIRIDIS = ((0.0, "#440154"), (0.25, "#3b528b"), (0.5, "#21918c"), (0.75, "#5ec962"), (1.0, "#fde725"))

_HEAD = ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
         '<qgis version="3.22.0" styleCategories="AllStyleCategories" hasScaleBasedVisibilityFlag="0" '
         'minScale="1e+08" maxScale="0">\n  <pipe>\n    <provider>\n'
         '      <resampling enabled="false" maxOversampling="2" zoomedInResamplingMethod="nearestNeighbour"'
         ' zoomedOutResamplingMethod="nearestNeighbour"/>\n    </provider>\n')
_TAIL = ('    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
         '    <huesaturation saturation="0" grayscaleMode="0" invertColors="0" colorizeOn="0" '
         'colorizeRed="255" colorizeGreen="128" colorizeBlue="128" colorizeStrength="100"/>\n'
         '    <rasterresampler maxOversampling="2"/>\n'
         "    <resamplingStage>resamplingFilter</resamplingStage>\n  </pipe>\n  <blendMode>0</blendMode>\n"
         "</qgis>\n")
_MIN_MAX = ("      <minMaxOrigin><limits>None</limits><extent>WholeRaster</extent>"
            "<statAccuracy>Estimated</statAccuracy><cumulativeCutLower>0.02</cumulativeCutLower>"
            "<cumulativeCutUpper>0.98</cumulativeCutUpper><stdDevFactor>2</stdDevFactor></minMaxOrigin>\n")


def style_path(tif: str | Path) -> Path:
    """The style QGIS loads with `tif` (prediction.tif -> prediction.qml)."""
    return Path(tif).with_suffix(STYLE_SUFFIX)


def hex_colour(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb[:3])


def class_style(values: Sequence[int], names: Sequence[str], colours: Sequence[Sequence[int]]) -> str:
    """A paletted renderer: class `names[i]` drawn in `colours[i]` (RGB) where the pixel is `values[i]`."""
    entries = "".join(
        f"        <paletteEntry value=\"{int(value)}\" color=\"{hex_colour(rgb)}\" alpha=\"255\" "
        f"label={quoteattr(str(name))}/>\n" for value, name, rgb in zip(values, names, colours, strict=True))
    return (_HEAD + '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" '
            'nodataColor="">\n'
            "      <rasterTransparency/>\n" + _MIN_MAX
            + f"      <colorPalette>\n{entries}      </colorPalette>\n    </rasterrenderer>\n" + _TAIL)


def confidence_style() -> str:
    """A single-band pseudocolour renderer over 0..1 (the top class's probability)."""
    items = "".join(f'          <item value="{value:g}" color="{colour}" alpha="255" label="{value:g}"/>\n'
                    for value, colour in VIRIDIS)
    return (_HEAD + '    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1" '
            'nodataColor="" classificationMin="0" classificationMax="1">\n'
            "      <rasterTransparency/>\n" + _MIN_MAX
            + "      <rastershader>\n"
            '        <colorrampshader colorRampType="INTERPOLATED" classificationMode="2" clip="0" '
            'minimumValue="0" maximumValue="1" labelPrecision="2">\n'
            + items + "        </colorrampshader>\n      </rastershader>\n    </rasterrenderer>\n" + _TAIL)
