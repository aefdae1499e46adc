"""Readers: arrays, rasters and polygons from files, and fetched files; torch-free, below the other rooms."""
