"""RBF support-vector machine on pixel spectra: the classic baseline, through scikit-learn."""

from __future__ import annotations

from typing import Any

from hsi.models.estimators import Grid, PixelEstimator


class SpectralSVM(PixelEstimator):
    """Standardised spectra -> RBF SVC (C, gamma). With `grid`, C and gamma are chosen by
    cross-validation on the training pixels only (stratified folds), never on test pixels."""

    settings = ("C", "gamma")

    def __init__(self, C: float = 100.0, gamma: str | float = "scale", grid: Grid | None = None,
                 cv: int = 3, seed: int = 0) -> None:
        self.C, self.gamma = C, gamma
        super().__init__(grid, cv, seed)

    def make_classifier(self) -> Any:
        from sklearn.svm import SVC

        return SVC(kernel="rbf", C=self.C, gamma=self.gamma, random_state=self.seed)
