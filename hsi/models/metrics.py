"""Accuracy measures of HSI classification, from torchmetrics."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCohenKappa
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_cohen_kappa,
    multiclass_confusion_matrix,
)


def classification_metrics(num_classes: int) -> MetricCollection:
    """OA = micro accuracy, AA = mean per-class recall (macro accuracy), Cohen's kappa."""
    return MetricCollection({
        "oa": MulticlassAccuracy(num_classes, average="micro"),
        "aa": MulticlassAccuracy(num_classes, average="macro"),
        "kappa": MulticlassCohenKappa(num_classes),
    })


def accuracy_report(preds: torch.Tensor, targets: torch.Tensor,
                    num_classes: int) -> dict[str, float | list]:
    """OA, AA, kappa, per-class accuracy (recall) and the confusion matrix (rows = truth)."""
    per_class = multiclass_accuracy(preds, targets, num_classes, average=None)
    return {
        "oa": float(multiclass_accuracy(preds, targets, num_classes, average="micro")),
        "aa": float(multiclass_accuracy(preds, targets, num_classes, average="macro")),
        "kappa": float(multiclass_cohen_kappa(preds, targets, num_classes)),
        "per_class_accuracy": [float(v) for v in per_class],
        "confusion_matrix": multiclass_confusion_matrix(preds, targets, num_classes).tolist(),
    }
