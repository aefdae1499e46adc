"""The network contract itself (hsi.models.contract): check_input, the trunk / head split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hsi.errors import ConfigError
from hsi.models.contract import Network


class Tiny(Network):
    dense = True

    @classmethod
    def input_limits(cls, kernel: int = 3, **net_kwargs: object) -> tuple[int, int]:
        return 13, kernel

    def __init__(self, in_bands: int, patch_size: int, num_classes: int, kernel: int = 3) -> None:
        super().__init__()
        self.check_input(in_bands, patch_size, kernel=kernel)
        side = patch_size - kernel + 1
        self.features = nn.Sequential(nn.Flatten(1, 2), nn.Conv2d(in_bands, 3, kernel), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, num_classes))


def test_check_input_names_the_minimum_and_the_key() -> None:
    Tiny(13, 3, 2)  # the minimum passes
    too_few = r"Tiny needs at least 13 bands .*; got 12\. Raise data.pca.components"
    with pytest.raises(ConfigError, match=too_few):
        Tiny(12, 3, 2)
    with pytest.raises(ConfigError, match=r"at least 5x5 pixels .*; got 3\. Raise data.patch_size"):
        Tiny(13, 3, 2, kernel=5)


def test_forward_is_head_of_trunk() -> None:
    net, x = Tiny(13, 5, 4), torch.randn(2, 1, 13, 5, 5)
    assert net.head is net.classifier
    torch.testing.assert_close(net.trunk(x), net.features(x))
    torch.testing.assert_close(net(x), net.classifier(net.features(x)))


def test_a_network_without_trunk_or_features_says_so() -> None:
    class Headless(Network):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = nn.Linear(2, 2)

    with pytest.raises(NotImplementedError, match="Headless must define trunk"):
        Headless()(torch.zeros(1, 2))


def test_takes_is_one_of_two_inputs() -> None:
    with pytest.raises(TypeError, match="takes='cube'"):
        type("Odd", (Network,), {"takes": "cube"})
