"""Scenes: a cube and its labels, in memory or streamed; the standard scenes; the invalid-pixel rule."""
