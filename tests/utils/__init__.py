"""Tests of hsi.utils."""
