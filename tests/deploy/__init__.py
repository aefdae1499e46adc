"""Tests of hsi.deploy."""
