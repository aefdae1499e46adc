"""Accuracy measures of HSI classification, from torchmetrics.

OA = micro accuracy; AA = mean recall over the classes that have test pixels (a class without any
is left out, not counted as 0); kappa = Cohen's kappa.
"""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCohenKappa, MulticlassConfusionMatrix
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_cohen_kappa,
    multiclass_confusion_matrix,
)


def recalls(confusion: torch.Tensor) -> list[float | None]:
    """Per-class recall from a confusion matrix (rows = truth); None for a class with no sample."""
    confusion = confusion.double()
    support = confusion.sum(1)
    return [float(confusion[k, k] / support[k]) if support[k] > 0 else None for k in range(len(support))]


def average_accuracy(confusion: torch.Tensor) -> float:
    tested = [r for r in recalls(confusion) if r is not None]
    return float(sum(tested) / len(tested)) if tested else 0.0


class AverageAccuracy(MulticlassConfusionMatrix):
    """AA: mean recall over the classes present in the targets (torchmetrics' macro accuracy counts
    a class with no target but some false positives as recall 0)."""

    def compute(self) -> torch.Tensor:
        return torch.tensor(average_accuracy(super().compute()))


def classification_metrics(num_classes: int) -> MetricCollection:
    """OA = micro accuracy, AA = mean per-class recall over tested classes, Cohen's kappa."""
    return MetricCollection({
        "oa": MulticlassAccuracy(num_classes, average="micro"),
        "aa": AverageAccuracy(num_classes),
        "kappa": MulticlassCohenKappa(num_classes),
    })


def accuracy_report(preds: torch.Tensor, targets: torch.Tensor,
                    num_classes: int) -> dict[str, float | list]:
    """OA, AA, kappa, per-class accuracy (recall; None for a class without test pixels), the
    untested classes' indices and the confusion matrix (rows = truth)."""
    confusion = multiclass_confusion_matrix(preds, targets, num_classes)
    per_class = recalls(confusion)
    return {
        "oa": float(multiclass_accuracy(preds, targets, num_classes, average="micro")),
        "aa": average_accuracy(confusion),
        "kappa": float(multiclass_cohen_kappa(preds, targets, num_classes)),
        "per_class_accuracy": per_class,
        "untested": [k for k, r in enumerate(per_class) if r is None],
        "confusion_matrix": confusion.tolist(),
    }
