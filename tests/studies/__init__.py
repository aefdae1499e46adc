"""Tests of hsi.studies."""
