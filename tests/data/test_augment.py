"""Augmentation of training batches (`augment=none|flips|spectral|all`, hsi/data/sampling/augment.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from hsi.data import HSIDataModule
from hsi.data.sampling.augment import BatchAugment, same_class_partners
from hsi.errors import ConfigError
from hsi.train import train
from tests.conftest import compose_train

PRESETS = ("none", "flips", "spectral", "all")
EVERYTHING = dict(flip=True, rotate=True, scale=0.2, noise=0.1, band_dropout=0.2, band_shift=2,
                  mix=0.5)


def _preset(name: str, tmp_path: Path) -> BatchAugment:
    cfg = compose_train(["data=synthetic", f"augment={name}", "seed=7"], tmp_path)
    return BatchAugment.from_any(OmegaConf.to_container(cfg.data.augment, resolve=True))


def _batch(n: int = 48, bands: int = 12, p: int = 5, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, bands, p, p, generator=g), torch.randint(0, classes, (n,), generator=g)


def _symmetries(window: torch.Tensor) -> list[torch.Tensor]:
    """The 8 images of a (..., p, p) window under the symmetries of the square."""
    turns = [torch.rot90(window, k, dims=(-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_compose_and_keep_labels_shapes_and_dtypes(name: str, tmp_path: Path) -> None:
    augment = _preset(name, tmp_path)
    assert augment.seed == 7 and augment.active == (name != "none")
    for dtype in (torch.float32, torch.float64):
        x, y = _batch()
        x = x.to(dtype)
        before = y.clone()
        out, labels = augment(x, y)
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        assert torch.equal(labels, before) and torch.equal(y, before)
        assert torch.isfinite(out).all()


def test_a_fixed_seed_gives_the_same_batch() -> None:
    x, y = _batch()
    first, second = BatchAugment(**EVERYTHING, seed=3), BatchAugment(**EVERYTHING, seed=3)
    for _ in range(3):  # the same stream, batch after batch
        a, b = first(x, y)[0], second(x, y)[0]
        assert torch.equal(a, b) and not torch.equal(a, x)
    other = BatchAugment(**EVERYTHING, seed=4)(x, y)[0]
    assert not torch.equal(other, BatchAugment(**EVERYTHING, seed=3)(x, y)[0])


def test_augmentation_leaves_the_global_random_stream_alone() -> None:
    x, y = _batch()
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    BatchAugment(**EVERYTHING, seed=1)(x, y)
    assert torch.equal(torch.rand(5), expected)


@pytest.mark.parametrize(("flip", "rotate", "count"), [(True, True, 8), (True, False, 2), (False, True, 4)])
def test_flips_and_rotations_are_exact_permutations_of_a_windows_pixels(flip: bool, rotate: bool,
                                                                       count: int) -> None:
    x, y = _batch(n=200, p=7)
    out, _ = BatchAugment(flip=flip, rotate=rotate, seed=0)(x, y)
    used = set()
    for i in range(len(x)):
        matches = [k for k, image in enumerate(_symmetries(x[i])) if torch.equal(image, out[i])]
        assert matches, f"window {i} is not a symmetry of its input"
        used.add(matches[0])
    assert len(used) == count  # every allowed symmetry occurs, no other one
    assert (used <= {0, 4}) if not rotate else True
    # the same permutation for every band of a window: exact values, nothing interpolated
    assert torch.equal(torch.sort(out.flatten(2), dim=2).values, torch.sort(x.flatten(2), dim=2).values)


def test_mixing_mixes_only_windows_of_the_same_class() -> None:
    n, classes = 300, 5
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, classes, (n,), generator=g)
    # window i is constant, of a value inside its class's own interval [10 c, 10 c + 1)
    value = 10 * y.double() + torch.rand(n, generator=g, dtype=torch.float64)
    x = value.view(n, 1, 1, 1, 1).expand(n, 1, 6, 3, 3).clone()
    out, labels = BatchAugment(mix=1.0, seed=2)(x, y)
    assert torch.equal(labels, y)
    mixed = out.flatten(1)
    assert torch.allclose(mixed, mixed[:, :1].expand_as(mixed))  # still constant windows
    got = mixed[:, 0]
    changed = 0
    for c in range(classes):
        members = y == c
        low, high = value[members].min(), value[members].max()
        assert ((got[members] >= low - 1e-12) & (got[members] <= high + 1e-12)).all()
        changed += int((got[members] != value[members]).sum())
    assert changed > n // 2  # with mix=1 nearly every window (not a class's only one) changes

    partners = same_class_partners(y, torch.Generator().manual_seed(0))
    assert torch.equal(y[partners], y) and not (partners == torch.arange(n)).any()
    alone = torch.tensor([3, 1, 1, 0])  # a class alone in the batch keeps its own window
    partners = same_class_partners(alone, torch.Generator().manual_seed(0))
    assert partners.tolist()[0] == 0 and partners.tolist()[3] == 3 and partners.tolist()[1:3] == [2, 1]


def _datamodule(**augment) -> HSIDataModule:
    dm = HSIDataModule("synthetic", pca={"components": 8, "cache": False}, patch_size=5,
                       height=24, width=24, bands=20, classes=4, batch_size=16,
                       augment={**augment, "seed": 0} if augment else None)
    dm.setup()
    return dm


def test_only_training_batches_of_windows_are_augmented() -> None:
    dm = _datamodule(**EVERYTHING)
    batch = next(iter(dm.train_dataloader()))
    val = next(iter(dm.val_dataloader()))
    tile = {"tile": torch.zeros(1, 8, 9, 28), "pos": torch.zeros(3, 2, dtype=torch.long),
            "target": torch.zeros(3, dtype=torch.long), "index": torch.arange(3)}
    assert dm.on_after_batch_transfer(batch, 0) is batch  # no trainer: nothing to augment for
    for stage in ("validating", "testing", "predicting", "sanity_checking"):
        dm.trainer = SimpleNamespace(training=False, global_rank=0, stage=stage)
        assert dm.on_after_batch_transfer(val, 0) is val
    dm.trainer = SimpleNamespace(training=True, global_rank=0)
    assert dm.on_after_batch_transfer(tile, 0) is tile  # dense tiles (dicts) are never touched
    x, y = dm.on_after_batch_transfer(batch, 0)
    assert torch.equal(y, batch[1]) and x.shape == batch[0].shape and not torch.equal(x, batch[0])


def test_the_datamodule_keeps_plain_settings_and_drops_an_inactive_augment() -> None:
    dm = _datamodule(flip=True, noise=0.01)
    assert dm.hparams["augment"] == {"_target_": "hsi.data.sampling.augment.BatchAugment", "flip": True,
                                     "rotate": False, "scale": 0.0, "noise": 0.01,
                                     "band_dropout": 0.0, "band_shift": 0, "mix": 0.0, "seed": 0}
    again = HSIDataModule(**dm.hparams)
    assert again.augment == dm.augment
    off = _datamodule(flip=False)
    assert off.augment is None and off.hparams["augment"] is None
    assert _datamodule().augment is None


def test_a_checkpoint_naming_the_old_augment_module_still_builds() -> None:
    """Checkpoints written before hsi/data/augment.py moved to hsi/data/sampling/ hold its old
    `_target_` (hsi.data.compat)."""
    from hsi.data.compat import AUGMENT_TARGET

    dm = _datamodule(flip=True, noise=0.01)
    assert dm.hparams["augment"]["_target_"] == AUGMENT_TARGET
    old = {**dm.hparams, "augment": {**dm.hparams["augment"], "_target_": "hsi.data.augment.BatchAugment"}}
    assert HSIDataModule(**old).augment == dm.augment


@pytest.mark.parametrize(("settings", "message"), [
    ({"noise": -0.1}, r"data\.augment\.noise=-0\.1 must be a number >= 0"),
    ({"mix": 1.5}, r"data\.augment\.mix=1\.5 is a probability"),
    ({"scale": 1.0}, r"data\.augment\.scale=1\.0 must be below 1"),
    ({"flip": "yes"}, r"data\.augment\.flip='yes' must be true or false"),
    ({"band_shift": 1.5}, r"data\.augment\.band_shift=1\.5 must be a whole number >= 0"),
    ({"flips": True}, r"data\.augment\.flips is not an augmentation setting"),
])
def test_bad_settings_name_their_key(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BatchAugment.from_any(settings)


def test_augment_none_leaves_the_recipe_bit_identical(synthetic_cfg, tmp_path: Path) -> None:
    """A tiny run with `augment=none` (the default) and one composed without the group at all."""
    runs = {}
    for name, extra in (("none", "augment=none"), ("without", "~augment")):
        cfg = synthetic_cfg("trainer.max_epochs=2", "map=false", "logger=none", extra)
        cfg.paths.output_dir = str(tmp_path / name)
        assert ("augment" in cfg.data) == (name == "none")
        runs[name] = train(cfg)
    for key in ("oa", "aa", "kappa", "per_class_accuracy"):
        assert runs["none"][key] == runs["without"][key], key
    weights = [torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
               for name in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    saved = json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert saved["oa"] == runs["without"]["oa"]


def test_a_training_run_augments_every_training_batch_and_nothing_else(
        synthetic_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = BatchAugment.__call__

    def spy(self, x, y, generator=None):
        calls.append(len(x))
        return original(self, x, y, generator)

    monkeypatch.setattr(BatchAugment, "__call__", spy)
    cfg = synthetic_cfg("augment=all", "trainer.max_epochs=2", "map=false", "logger=none")
    metrics = train(cfg)
    assert 0.0 <= metrics["oa"] <= 1.0
    per_epoch = -(-metrics["n_train"] // cfg.data.batch_size)
    assert len(calls) == 2 * per_epoch and sum(calls) == 2 * metrics["n_train"]
