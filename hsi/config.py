"""Hydra / OmegaConf glue shared by the entry points."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    """`${hsi_root:}` is the project folder (the one that holds `conf/` and `hsi/`)."""
    if not OmegaConf.has_resolver("hsi_root"):
        OmegaConf.register_new_resolver("hsi_root", lambda: str(PROJECT_ROOT))


register_resolvers()
