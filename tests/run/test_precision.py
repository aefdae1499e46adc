"""bf16-mixed: every network trains and tests on a tiny scene, windows and dense evaluation alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hsi.run.config import CONFIG_DIR

NETWORKS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")
                  if not p.stem.startswith("_") and "net" in OmegaConf.load(p))


def test_every_network_is_listed() -> None:
    assert {"hybridsn", "hybridsn_se", "hybridsn_lite", "hybridsn_fast", "cnn2d", "cnn3d"} <= set(NETWORKS)


@pytest.mark.parametrize("model", NETWORKS)
def test_bf16_mixed_trains_and_tests(model: str, synthetic_cfg, tmp_path: Path) -> None:
    from hsi.run.training import train

    metrics = train(synthetic_cfg(f"model={model}", "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
                                  "logger=none", "data.height=20", "data.width=20", "data.patch_size=9"))
    assert 0.0 <= metrics["oa"] <= 1.0 and metrics["n_test"] > 0
    assert (tmp_path / "prediction.npy").is_file()  # the map ran too
