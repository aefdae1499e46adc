"""Row tiles of a scene: the one way every dense path (PyTorch, ONNX, streaming) cuts rows."""

from __future__ import annotations

from collections.abc import Iterator


def row_tiles(height: int, tile_rows: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive bands of at most `tile_rows` rows covering `height` rows."""
    for start in range(0, height, tile_rows):
        yield start, min(start + tile_rows, height)
