"""HybridSN shapes and sizes, the LightningModule, and the accuracy measures."""

from __future__ import annotations

import pytest
import torch

from hsi.models import HSIClassifier, HybridSN
from hsi.models.metrics import accuracy_report

NET = {"_target_": "hsi.models.HybridSN"}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_recipe_parameter_count() -> None:
    assert _count(HybridSN(in_bands=30, patch_size=25, num_classes=16)) == 5_122_416


@pytest.mark.parametrize(("patch", "bands", "classes"), [(25, 30, 16), (9, 13, 2), (11, 15, 6),
                                                        (19, 40, 9), (15, 20, 13)])
def test_shapes_follow_the_data(patch: int, bands: int, classes: int) -> None:
    net = HybridSN(in_bands=bands, patch_size=patch, num_classes=classes)
    out = net(torch.randn(3, 1, bands, patch, patch))
    assert out.shape == (3, classes)
    first_dense = net.classifier[1]
    assert first_dense.in_features == 64 * (patch - 8) ** 2
    assert net.features_2d[0].in_channels == 32 * (bands - 12)


def test_too_small_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 13 bands") as error:
        HybridSN(in_bands=12, patch_size=25, num_classes=3)
    assert "data.pca.components" in str(error.value)
    with pytest.raises(ValueError, match="at least 9x9") as error:
        HybridSN(in_bands=30, patch_size=7, num_classes=3)
    assert "data.patch_size" in str(error.value)


def test_state_dict_keys_are_the_notebook_layout() -> None:
    """Checkpoints written before HybridSN moved onto TrunkHead (now the Network contract) keep
    loading: same keys, same shapes."""
    keys = list(HybridSN(in_bands=30, patch_size=25, num_classes=16).state_dict())
    assert keys[:3] == ["features_3d.0.weight", "features_3d.0.bias", "features_3d.1.weight"]
    assert {k.split(".")[0] for k in keys} == {"features_3d", "features_2d", "classifier"}
    assert [k for k in keys if k.startswith("classifier")] == [
        f"classifier.{i}.{p}" for i in (1, 4, 7) for p in ("weight", "bias")]
    assert [k for k in keys if k.startswith("features_2d")] == [
        "features_2d.0.weight", "features_2d.0.bias", "features_2d.1.weight", "features_2d.1.bias",
        "features_2d.1.running_mean", "features_2d.1.running_var", "features_2d.1.num_batches_tracked"]


def test_accuracy_measures_on_a_hand_made_confusion() -> None:
    # truth: class 0 x8 (6 right), class 1 x2 (1 right); OA = 7/10, AA = (0.75 + 0.5) / 2
    targets = torch.tensor([0] * 8 + [1] * 2)
    preds = torch.tensor([0] * 6 + [1] * 2 + [1, 0])
    report = accuracy_report(preds, targets, 2)
    assert report["oa"] == pytest.approx(0.7)
    assert report["aa"] == pytest.approx(0.625)
    # kappa: p_o = 0.7, p_e = (7*8 + 3*2) / 100 = 0.62
    assert report["kappa"] == pytest.approx((0.7 - 0.62) / (1 - 0.62), abs=1e-6)
    assert report["per_class_accuracy"] == pytest.approx([0.75, 0.5])
    assert report["confusion_matrix"] == [[6, 2], [1, 1]]


def test_classifier_checkpoint_round_trip(tmp_path) -> None:
    import lightning as L

    model = HSIClassifier(net=NET, in_bands=15, patch_size=9, num_classes=3,
                          class_names=["a", "b", "c"])
    trainer = L.Trainer(max_epochs=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    restored = HSIClassifier.load_from_checkpoint(tmp_path / "m.ckpt")
    x = torch.randn(2, 1, 15, 9, 9)
    model.eval()
    restored.eval()
    torch.testing.assert_close(restored(x), model(x))
    assert restored.hparams.class_names == ["a", "b", "c"]


def test_class_weights_reach_the_loss() -> None:
    model = HSIClassifier(net=NET, in_bands=15, patch_size=9, num_classes=2,
                          class_weights=[1.0, 3.0])
    torch.testing.assert_close(model.criterion.weight, torch.tensor([1.0, 3.0]))
