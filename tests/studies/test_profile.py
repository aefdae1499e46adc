"""Cost measures (parameters, MACs, weight size, latency) and the `hsi.profile` entry point
(`hsi.studies.profiling`)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from hsi.models import HybridSN, model_cost
from hsi.models.cost import count_macs, count_parameters, measure_latency, weights_mb
from hsi.studies.profiling import profile
from tests.conftest import compose_config

FAST = ["repeats=1", "batch_repeats=1", "warmup=0", "batch_sizes=[1,2]"]


def test_macs_of_a_conv3d_and_a_linear_match_the_hand_formula() -> None:
    conv = nn.Conv3d(2, 4, (3, 2, 3))
    # out (4, 5, 7, 7): every output value is 2 * 3 * 2 * 3 multiply-accumulates
    assert count_macs(conv, (2, 7, 8, 9)) == 4 * 5 * 7 * 7 * (2 * 3 * 2 * 3)
    grouped = nn.Conv3d(4, 4, 3, groups=4, padding=1)  # depthwise: 27 per output value
    assert count_macs(grouped, (4, 5, 5, 5)) == 4 * 125 * 27
    assert count_macs(nn.Linear(10, 3), (10,), batch=4) == 4 * 10 * 3


def test_hybridsn_cost_matches_the_hand_count() -> None:
    convs = (8 * 1 * 7 * 9 * 24 * 23 * 23 + 16 * 8 * 5 * 9 * 20 * 21 * 21
             + 32 * 16 * 3 * 9 * 18 * 19 * 19 + 64 * 576 * 9 * 17 * 17)
    dense = 18_496 * 256 + 256 * 128 + 128 * 16
    assert model_cost(HybridSN(30, 25, 16), 30, 25) == {"params": 5_122_416, "macs": convs + dense}


def test_parameters_and_weight_size() -> None:
    net = nn.Sequential(nn.Linear(10, 3), nn.BatchNorm1d(3))
    net[1].weight.requires_grad_(False)
    assert count_parameters(net) == 33 + 6
    assert count_parameters(net, trainable_only=True) == 33 + 3
    # float32 weights + BN running mean and var (float32) + num_batches_tracked (int64)
    assert weights_mb(net) == pytest.approx(((33 + 6 + 6) * 4 + 8) / 1e6)


def test_latency_is_measured_in_eval_mode_and_leaves_the_mode_alone() -> None:
    seen = []
    net = nn.Linear(4, 2)
    net.register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_inference_mode_enabled())))
    seconds = measure_latency(net, (4,), batch=3, repeats=3, warmup=1)
    assert seconds > 0 and len(seen) == 4
    assert all(mode == (False, True) for mode in seen)
    assert net.training


def compose_profile(overrides: list[str], output_dir: Path) -> DictConfig:
    return compose_config("profile", overrides, output_dir)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_profile_writes_the_table_for_the_composed_model(tmp_path: Path) -> None:
    cfg = compose_profile(["model=hybridsn", *FAST], tmp_path)
    assert (cfg.bands, cfg.patch_size, cfg.num_classes) == (30, 25, 16)
    rows = profile(cfg)
    assert rows[0]["model"] == "hybridsn" and rows[0]["params"] == 5_122_416
    table = (tmp_path / "profile.md").read_text()
    assert "| hybridsn | 5,122,416 | 247.7 M |" in table
    assert "CPU ms / window (batch 1)" in table and "windows / s (batch 2)" in table
    [row] = _csv(tmp_path / "profile.csv")
    assert row["params"] == "5122416" and row["macs"] == "247683392"
    assert float(row["latency_ms_b1"]) > 0 and float(row["windows_per_s_b2"]) > 0


def test_profile_all_puts_every_network_in_one_table(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    small = ["bands=15", "patch_size=9", "num_classes=4", *FAST]
    with caplog.at_level(logging.WARNING):
        profile(compose_profile(["all=true", *small], tmp_path))
    rows = {row["model"]: row for row in _csv(tmp_path / "profile.csv")}
    # a network whose smallest input is larger is named and left out, the others profiled
    assert "chen" not in rows and "chen skipped: it needs at least" in caplog.text
    assert {"hybridsn", "hybridsn_se", "hybridsn_lite", "cnn2d", "cnn3d"} <= set(rows)
    assert "svm" not in rows  # not a network
    assert int(rows["hybridsn"]["params"]) == sum(p.numel() for p in HybridSN(15, 9, 4).parameters())
    lite = compose_profile(["model=hybridsn_lite", "model.net.width=0.5", *small], tmp_path / "lite")
    assert profile(lite)[0]["params"] < int(rows["hybridsn_lite"]["params"])


def test_profile_takes_the_window_from_a_scene(tmp_path: Path) -> None:
    """`data=synthetic data.patch_size=9`: the synthetic scene's bands after PCA (30 of its 60),
    patch 9 and its 6 classes; the hand-typed window keys are ignored when a scene is given."""
    cfg = compose_profile(["data=synthetic", "data.patch_size=9", "bands=7", "patch_size=11",
                           "num_classes=2", *FAST], tmp_path)
    assert cfg.data.scene == "synthetic" and cfg.seed == 345
    [row] = profile(cfg)
    assert row["model"] == "hybridsn"
    assert row["params"] == sum(p.numel() for p in HybridSN(30, 9, 6).parameters())
    text = (tmp_path / "profile.md").read_text()
    assert text.startswith("Windows of 30 bands x 9x9 pixels, 6 classes (scene synthetic); CPU, ")
    assert _csv(tmp_path / "profile.csv")[0]["params"] == str(row["params"])


def test_profile_without_data_needs_no_scene(tmp_path: Path) -> None:
    cfg = compose_profile(["model=cnn2d", "bands=12", "patch_size=7", "num_classes=3", *FAST], tmp_path)
    assert cfg.get("data") is None
    [row] = profile(cfg)
    assert row["model"] == "cnn2d"
    text = (tmp_path / "profile.md").read_text()
    assert text.startswith("Windows of 12 bands x 7x7 pixels, 3 classes; CPU, ")
