"""Scenes, preprocessing, splits, windows and the datamodule."""

from hsi.data.catalogue import CATALOGUE, DatasetNotFoundError
from hsi.data.datamodule import HSIDataModule
from hsi.data.loading import load_scene
from hsi.data.scene import Scene

__all__ = ["CATALOGUE", "DatasetNotFoundError", "HSIDataModule", "Scene", "load_scene"]
