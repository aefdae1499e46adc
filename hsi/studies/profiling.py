"""Cost tables of networks (the library behind `python -m hsi.profile`).

Per network: parameters, multiply-accumulates per window, weight size, CPU latency per window at
the first batch size and throughput at the others, for one window shape: a scene's (`data=<scene>`:
its bands after PCA, its patch size and its classes) or `bands`, `patch_size`, `num_classes` as typed.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from hsi.errors import ConfigError
from hsi.models.cost import count_macs, count_parameters, measure_latency, weights_mb, window_shape
from hsi.models.zoo import network_configs, smallest_input
from hsi.run.config import CONFIG_DIR
from hsi.utils.files import atomic_write_text
from hsi.utils.run_files import PROFILE_CSV, PROFILE_TABLE

log = logging.getLogger(__name__)


def build_net(net_cfg: DictConfig | dict, bands: int, patch_size: int, num_classes: int) -> nn.Module:
    """The network of a `model.net` config for windows of `bands` x `patch_size` x `patch_size`."""
    return instantiate(net_cfg, in_bands=bands, patch_size=patch_size, num_classes=num_classes)


def profile_net(net: nn.Module, bands: int, patch_size: int, batch_sizes: list[int], repeats: int,
                batch_repeats: int, warmup: int = 1) -> dict[str, Any]:
    """One table row (without the name): size, MACs per window, latency and throughput."""
    shape = window_shape(bands, patch_size)
    row: dict[str, Any] = {"params": count_parameters(net), "macs": count_macs(net, shape),
                           "weights_mb": round(weights_mb(net), 3)}
    for i, batch in enumerate(batch_sizes):
        seconds = measure_latency(net, shape, batch, repeats if i == 0 else batch_repeats, warmup)
        if i == 0:
            row[f"latency_ms_b{batch}"] = round(seconds / batch * 1e3, 3)
        else:
            row[f"windows_per_s_b{batch}"] = round(batch / seconds, 1)
    return row


def model_configs(cfg: DictConfig) -> dict[str, Any]:
    """{model name: net config}: every network in `conf/model/` with `all=true` (models without a
    `net`, such as the SVM, are skipped), else the composed `model`."""
    if cfg.get("all"):
        return dict(network_configs(CONFIG_DIR / "model"))
    choice = HydraConfig.get().runtime.choices.get("model") if HydraConfig.initialized() else None
    name = choice or cfg.model._target_.rsplit(".", 1)[-1]
    if "net" not in cfg.model:
        raise ConfigError(f"model {name} has no network (model.net) to profile")
    return {name: cfg.model.net}


_HEADERS = {"model": "model", "params": "params", "macs": "MACs / window", "weights_mb": "weights (MB)"}


def _header(key: str) -> str:
    if key.startswith("latency_ms_b"):
        return f"CPU ms / window (batch {key.removeprefix('latency_ms_b')})"
    if key.startswith("windows_per_s_b"):
        return f"windows / s (batch {key.removeprefix('windows_per_s_b')})"
    return _HEADERS.get(key, key)


def _cell(key: str, value: Any) -> str:
    if key == "macs":
        return f"{value / 1e6:,.1f} M"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table, headers from the first row's keys."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(_header(k) for k in keys) + " |",
             "|" + "|".join("---" if k == "model" else "---:" for k in keys) + "|"]
    lines += ["| " + " | ".join(_cell(k, row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class WindowShape(NamedTuple):
    """The window a network is profiled for, and the scene it comes from (None: typed by hand)."""

    bands: int
    patch_size: int
    num_classes: int
    scene: str | None = None


def window_of(cfg: DictConfig) -> WindowShape:
    """`cfg.data`'s window when a scene is composed (`data=<scene>`): the datamodule is set up
    and asked for its bands after PCA, its patch size and its classes, so no data-config key is
    read here; else `cfg.bands`, `cfg.patch_size` and `cfg.num_classes`."""
    if cfg.get("data") is None:
        return WindowShape(cfg.bands, cfg.patch_size, cfg.num_classes)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    scene = datamodule.scene.name if datamodule.scene is not None else None
    return WindowShape(int(datamodule.in_bands), int(datamodule.hparams.patch_size),
                       int(datamodule.num_classes), scene)


def caption(window: WindowShape) -> str:
    """The line above the table: the window, the scene it comes from, the CPU and torch."""
    threads = torch.get_num_threads()
    source = f" (scene {window.scene})" if window.scene else ""
    return (f"Windows of {window.bands} bands x {window.patch_size}x{window.patch_size} pixels, "
            f"{window.num_classes} classes{source}; CPU, {threads} thread{'s' * (threads != 1)}, "
            f"torch {torch.__version__}.")


def profile(cfg: DictConfig) -> list[dict[str, Any]]:
    """Profile the configured network(s); write profile.md and profile.csv; return the rows."""
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    window = window_of(cfg)
    rows = []
    for name, net_cfg in model_configs(cfg).items():
        bands, side = smallest_input(net_cfg) if cfg.get("all") else (1, 1)
        if window.bands < bands or window.patch_size < side:  # all=true: the rest of the zoo still runs
            log.warning("%s skipped: it needs at least %d bands and %dx%d windows (bands= / patch_size=).",
                        name, bands, side, side)
            continue
        net = build_net(net_cfg, window.bands, window.patch_size, window.num_classes)
        row = profile_net(net, window.bands, window.patch_size, list(cfg.batch_sizes), cfg.repeats,
                          cfg.batch_repeats, cfg.warmup)
        rows.append({"model": name, **row})
        log.info("%s: %s", name, row)
    output_dir = Path(cfg.paths.output_dir)
    text = caption(window) + "\n\n" + markdown_table(rows)
    atomic_write_text(output_dir / PROFILE_TABLE, text)
    atomic_write_text(output_dir / PROFILE_CSV, csv_text(rows))
    print(text)
    return rows
