"""The walk over conf/model that the network tests share: every network and every pixel estimator
the configs name (`hsi.models.zoo`), and the helpers that exercise a network at its smallest input."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from hsi.models.zoo import estimator_configs, network_configs, smallest_input
from hsi.run.config import CONFIG_DIR

MODEL_DIR = CONFIG_DIR / "model"
NETWORKS = network_configs(MODEL_DIR)
ESTIMATORS = estimator_configs(MODEL_DIR)
CLASSES = 3


def randomise_batchnorm(net: nn.Module) -> None:
    """Non-trivial running statistics, so eval-mode batch norm is really exercised."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def window_for(net_cfg: DictConfig) -> tuple[int, int]:
    """The smallest input, with a window of at least 5x5 pixels (so a spectrum network has
    neighbours to ignore)."""
    bands, patch = smallest_input(net_cfg)
    return bands, max(patch, 5) | 1
