"""bf16-mixed: every network trains and tests on a tiny scene, windows and dense evaluation alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hsi.run.config import CONFIG_DIR
from tests.conftest import sized_for

NETWORKS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")
                  if not p.stem.startswith("_") and "net" in OmegaConf.load(p))
# he diverges in bf16 (hsi.run.precision.FP32_NETWORKS: auto trains it in fp32); chen's smallest
# input (94 bands, 25x25) makes its bf16 run a slow one
BF16_CASES = [pytest.param(name, marks=pytest.mark.slow) if name == "chen" else name
              for name in NETWORKS if name != "he"]


def test_every_network_is_listed() -> None:
    assert {"hybridsn", "hybridsn_se", "hybridsn_lite", "hybridsn_fast", "cnn2d", "cnn3d"} <= set(NETWORKS)


@pytest.mark.parametrize("model", BF16_CASES)
def test_bf16_mixed_trains_and_tests(model: str, synthetic_cfg, tmp_path: Path) -> None:
    from hsi.run.training import train

    sized = sized_for(model)  # the network's smallest input where it needs more than 15 bands, 9x9
    side = max(20, int(sized[-1].split("=")[1]) + 4)
    metrics = train(synthetic_cfg(f"model={model}", "trainer.precision=bf16-mixed", "trainer.max_epochs=1",
                                  "logger=none", f"data.height={side}", f"data.width={side}", *sized))
    assert 0.0 <= metrics["oa"] <= 1.0 and metrics["n_test"] > 0
    assert (tmp_path / "prediction.npy").is_file()  # the map ran too
