"""The files a run leaves behind: metrics, per-class report, confusion matrix (CSV and figure)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from hsi.utils.files import atomic_write, atomic_write_json, atomic_write_text


def classification_report_text(preds: np.ndarray, targets: np.ndarray,
                               class_names: list[str]) -> str:
    """Per-class precision, recall and F1 to 4 digits (scikit-learn)."""
    from sklearn.metrics import classification_report

    return classification_report(targets, preds, labels=list(range(len(class_names))),
                                 target_names=class_names, digits=4, zero_division=0)


def confusion_matrix_csv(confusion: np.ndarray, class_names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, np.asarray(confusion)):
        writer.writerow([name, *(int(v) for v in row)])
    return buffer.getvalue()


def confusion_matrix_figure(confusion: np.ndarray, class_names: list[str], title: str = ""):
    """Row-normalised confusion matrix with counts, as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    size = max(5.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    return fig


def write_run_outputs(output_dir: str | Path, report: dict[str, Any], class_names: list[str],
                      extra: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.json, classification_report.txt, confusion_matrix.csv/.png; return metrics."""
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    preds = np.asarray(report["preds"])
    targets = np.asarray(report["targets"])
    confusion = np.asarray(report["confusion_matrix"])
    metrics = {
        "oa": report["oa"], "aa": report["aa"], "kappa": report["kappa"],
        "per_class_accuracy": dict(zip(class_names, report["per_class_accuracy"])),
        "class_names": class_names,
        **extra,
    }
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "classification_report.txt",
                      classification_report_text(preds, targets, class_names))
    atomic_write_text(out / "confusion_matrix.csv", confusion_matrix_csv(confusion, class_names))
    fig = confusion_matrix_figure(confusion, class_names,
                                  f"OA {report['oa']:.4f}  AA {report['aa']:.4f}  "
                                  f"kappa {report['kappa']:.4f}")
    atomic_write(out / "confusion_matrix.png", lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return metrics


def log_to_tensorboard(loggers: list[Any], hparams: dict[str, Any], report: dict[str, Any],
                       class_names: list[str], step: int) -> None:
    """Hyperparameters with the final metrics, and the confusion matrix as a figure."""
    import matplotlib.pyplot as plt
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        logger.log_hyperparams(hparams, metrics={f"hp/{k}": report[k] for k in ("oa", "aa", "kappa")})
        fig = confusion_matrix_figure(np.asarray(report["confusion_matrix"]), class_names)
        logger.experiment.add_figure("test/confusion_matrix", fig, global_step=step)
        plt.close(fig)
        logger.experiment.flush()


def finish_run(output_dir: str | Path, datamodule: Any, report: dict[str, Any], extra: dict[str, Any],
               loggers: list[Any], step: int, hparams: dict[str, Any], seed: int) -> dict[str, Any]:
    """Write a run's files and TensorBoard summaries; return metrics.json's content."""
    import logging

    # leakage: test pixels inside a training window; split: the method and, for disjoint and
    # per_class splits, the achieved per-class shares
    extra = {**datamodule.sizes(), **extra, "leakage": datamodule.leakage(),
             "split": datamodule.split_report, "scene": datamodule.scene.name, "seed": seed}
    metrics = write_run_outputs(output_dir, report, datamodule.class_names, extra)
    log_to_tensorboard(loggers, hparams, report, datamodule.class_names, step)
    logging.getLogger("hsi").info(
        "Test OA %.4f  AA %.4f  kappa %.4f  (%d test pixels); outputs in %s",
        metrics["oa"], metrics["aa"], metrics["kappa"], extra["n_test"], output_dir)
    return metrics
