"""Tests of hsi.models."""
