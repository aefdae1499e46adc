"""Scenes, preprocessing, splits, windows and the datamodule.

A lazy face (PEP 562): `from hsi.data import HSIDataModule` imports the datamodule (and with it
Lightning) only when that name is asked for, so the torch-free runtime (`hsi.deploy.runtime`)
reads arrays through `hsi.data.readers.io` without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_HOMES = {"CATALOGUE": "hsi.data.scenes.catalogue", "DatasetNotFoundError": "hsi.data.scenes.catalogue",
          "HSIDataModule": "hsi.data.datamodule", "load_scene": "hsi.data.scenes.loading",
          "Scene": "hsi.data.scenes.scene"}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'hsi.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
