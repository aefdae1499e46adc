"""RBF support-vector machine on pixel spectra: the classic baseline, through scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SpectralSVM:
    """Standardised spectra -> RBF SVC. With `grid`, C and gamma are chosen by cross-validation
    on the training pixels only (stratified folds), never on test pixels."""

    def __init__(self, C: float = 100.0, gamma: str | float = "scale",
                 grid: dict[str, Sequence[float | str]] | None = None, cv: int = 3,
                 seed: int = 0) -> None:
        self.C, self.gamma, self.grid, self.cv, self.seed = C, gamma, grid, cv, seed
        self.model = None
        self.best_params: dict[str, float | str] = {"C": C, "gamma": gamma}

    def fit(self, spectra: np.ndarray, targets: np.ndarray) -> SpectralSVM:
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        pipeline = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=self.C, gamma=self.gamma,
                                                       random_state=self.seed))
        if self.grid:
            smallest = int(np.bincount(targets).min())
            folds = StratifiedKFold(n_splits=max(2, min(self.cv, smallest)), shuffle=True,
                                    random_state=self.seed)
            search = GridSearchCV(pipeline, {f"svc__{k}": list(v) for k, v in self.grid.items()},
                                  cv=folds, n_jobs=1)
            search.fit(spectra, targets)
            self.model = search.best_estimator_
            self.best_params = {k.removeprefix("svc__"): v for k, v in search.best_params_.items()}
        else:
            self.model = pipeline.fit(spectra, targets)
        return self

    def predict(self, spectra: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the SVM first")
        return self.model.predict(spectra)
