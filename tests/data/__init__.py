"""Tests of hsi.data."""
