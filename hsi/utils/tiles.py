"""Row tiles of a scene: the one way every dense path (PyTorch, ONNX, streaming) cuts rows."""

from __future__ import annotations

from collections.abc import Iterator

TILE_ROWS = 128  # output rows per dense tile (each with its halo)
TILE_PIXELS = 65536  # at most this many output pixels per dense tile of a raster (wide ones: fewer rows)
BATCH_SIZE = 64  # windows per batch on the window path, checkpoint and ONNX alike (on CPU 32-64 beat 256)


def row_tiles(height: int, tile_rows: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive bands of at most `tile_rows` rows covering `height` rows."""
    for start in range(0, height, tile_rows):
        yield start, min(start + tile_rows, height)


def capped_tile_rows(tile_rows: int, width: int, tile_pixels: int | None = TILE_PIXELS) -> int:
    """`tile_rows`, fewer on a raster so wide that a tile would hold more than `tile_pixels` pixels
    (None: no cap): the dense path's activations then take the same memory whatever the width.
    Every raster path caps alike, so their tiles, and labels, stay the same."""
    return tile_rows if tile_pixels is None else max(1, min(tile_rows, int(tile_pixels) // width))


def default_block_rows(width: int, bands: int, block_mb: float = 64) -> int:
    """Row-block rows whose raw float32 spectra take about `block_mb` MB (at least one)."""
    return max(1, int(block_mb * 1e6 // (width * bands * 4)))


def halo_rows(start: int, stop: int, margin: int, height: int) -> tuple[int, int]:
    """The rows [low, high) to read for output rows [start, stop) of a `height`-row scene: `margin`
    rows of halo each side, clipped to the scene (the rest of the halo is the padding's zeros)."""
    return max(0, start - margin), min(height, stop + margin)
