"""A split strategy is one module: dropped into `hsi.data.splits`, it is found by the registry,
built from its config, run by the datamodule, and its own fix hint and validation check are the
ones training and the search give; nothing else names it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import hsi.data.splits as splits_package
from hsi.data import HSIDataModule
from hsi.data.splits.registry import build_strategy, strategies, strategy_named
from hsi.errors import ConfigError, DataError
from hsi.run.training import check_split_sizes
from hsi.studies.search import check_validation_pixels

STRIPES = '''
"""`data/split=stripes`: rows alternate between training and test (a planted strategy)."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hsi.data.splits.base import SplitStrategy


@dataclass
class StripeSplit(SplitStrategy):
    period: int = 2
    test_rows: bool = True
    method: ClassVar[str] = "stripes"
    no_test_fix: ClassVar[str] = "set data.split.test_rows=true"

    def no_validation(self):
        return ("data/split=stripes", "stripes have no validation rows")

    def __call__(self, labels, coords, patch_size, seed, class_names=None):
        odd = coords[:, 0] % self.period == 1
        test = np.flatnonzero(odd) if self.test_rows else np.zeros(0, dtype=np.int64)
        return ({"train": np.flatnonzero(~odd), "val": np.zeros(0, dtype=np.int64), "test": test},
                {"method": self.method})
'''


@pytest.fixture
def stripes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new strategy module in a folder added to the package's path: `hsi.data.splits.stripes`."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "stripes.py").write_text(textwrap.dedent(STRIPES))
    monkeypatch.setattr(splits_package, "__path__", [*splits_package.__path__, str(folder)])
    yield "hsi.data.splits.stripes.StripeSplit"
    sys.modules.pop("hsi.data.splits.stripes", None)


def test_the_registry_finds_the_strategies_of_the_package() -> None:
    assert set(strategies()) == {"random", "per_class", "disjoint", "mask", "fixed"}
    assert strategy_named("DisjointSplit") is strategies()["disjoint"]
    assert strategy_named("Path") is None


def test_a_new_strategy_is_one_module(stripes: str) -> None:
    found = strategies()
    assert "stripes" in found and found["stripes"].__module__ == "hsi.data.splits.stripes"
    strategy = build_strategy({"_target_": stripes, "period": 3})
    assert strategy.config() == {"_target_": stripes, "period": 3, "test_rows": True}
    dm = HSIDataModule("synthetic", height=24, width=20, bands=12, classes=3, patch_size=5,
                       pca={"components": 4, "cache": False}, split={"_target_": stripes, "period": 3})
    dm.setup()
    assert dm.split_report == {"method": "stripes"}
    assert set(dm.split["test"][:, 0] % 3) == {1} and 1 not in set(dm.split["train"][:, 0] % 3)
    assert HSIDataModule(**dm.hparams).split_strategy == dm.split_strategy  # the checkpoint's way back
    cfg = OmegaConf.create({"train": True, "test": True, "data": {"split": {"_target_": stripes}}})
    check_split_sizes(cfg, dm)
    with pytest.raises(ConfigError, match="data/split=stripes: a search optimises validation OA, so "
                                          "stripes have no validation rows"):
        check_validation_pixels(cfg)
    untested = HSIDataModule(**{**dm.hparams, "split": {"_target_": stripes, "test_rows": False}})
    untested.setup()
    with pytest.raises(DataError, match="The stripes split of synthetic leaves no test pixel .*: "
                                        "set data.split.test_rows=true"):
        check_split_sizes(cfg, untested)


def test_two_strategies_with_one_method_are_refused(stripes: str, tmp_path: Path) -> None:
    folder = Path(splits_package.__path__[-1])
    (folder / "stripes_again.py").write_text(textwrap.dedent(STRIPES).replace("StripeSplit", "OtherStripes"))
    try:
        with pytest.raises(TypeError, match="both split method 'stripes'"):
            strategies()
    finally:
        sys.modules.pop("hsi.data.splits.stripes_again", None)
