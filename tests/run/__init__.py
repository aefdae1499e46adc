"""Tests of hsi.run."""
