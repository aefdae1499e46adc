"""What hsi.train does beyond a plain loop costs nothing it need not (issue 33: no framework tax)."""

from __future__ import annotations

from pathlib import Path

from hsi.train import train


def test_a_run_without_monitor_writes_each_epoch_once(synthetic_cfg, tmp_path: Path) -> None:
    """The seed recipe (no validation, no monitor) keeps the latest epoch: one file, last.ckpt,
    written once per epoch instead of twice (epoch_NNN.ckpt and last.ckpt, the same weights)."""
    metrics = train(synthetic_cfg("trainer.max_epochs=2", "data.split.val_ratio=0", "logger=none",
                                  "callbacks.model_checkpoint.monitor=null", "map=false"))
    files = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert files == {"last.ckpt"}
    assert Path(metrics["checkpoint"]).name == "last.ckpt"


def test_a_monitored_run_keeps_its_best_and_last(synthetic_cfg, tmp_path: Path) -> None:
    metrics = train(synthetic_cfg("trainer.max_epochs=2", "logger=none", "map=false"))
    files = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "last.ckpt" in files and any(f.startswith("epoch_") for f in files)
    assert Path(metrics["checkpoint"]).name.startswith("epoch_")
