"""The consistency loss of semi-supervised training on constructed networks."""

from __future__ import annotations

import pytest
import torch

from hsi.errors import ConfigError
from hsi.models.consistency import ConsistencyLoss


def test_only_confident_windows_count_and_they_are_trained_towards_their_pseudo_label() -> None:
    x = torch.randn(8, 1, 5, 3, 3)
    logits = torch.zeros(8, 4)
    logits[:4, 2] = 10.0  # four windows confidently class 2, four undecided (uniform)
    loss_fn = ConsistencyLoss(threshold=0.9, strong={"flip": True, "noise": 0.1})
    loss, counted = loss_fn(lambda _x: logits, x)
    assert counted.item() == pytest.approx(0.5)
    expected = torch.nn.functional.cross_entropy(logits[:4], torch.full((4,), 2), reduction="sum") / 8
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # nothing confident: nothing to learn
    loss, counted = loss_fn(lambda _x: torch.zeros(8, 4), x)
    assert loss.item() == 0 and counted.item() == 0


def test_the_strong_copy_is_what_gets_the_gradient() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(45, 3))
    x = torch.randn(16, 1, 5, 3, 3)
    loss, _ = ConsistencyLoss(threshold=0.0, strong={"noise": 0.5})(net, x)
    loss.backward()
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"threshold": 1.0}, "semi.threshold"), ({"weight": -1}, "semi.weight"),
    ({"strong": {"flips": True}}, "flips"),
])
def test_bad_settings_are_refused_in_one_line(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        ConsistencyLoss(**kwargs)
