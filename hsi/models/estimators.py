"""Pixel estimators: scikit-learn classifiers on each pixel's (PCA-reduced) spectrum, one contract.

A `PixelEstimator` standardises the spectra, then fits its classifier (`make_classifier`); with
`grid`, the classifier's settings are chosen by cross-validation on the training pixels only
(stratified folds), never on test pixels. `hsi.run.training.train_estimator` fits it on the
training pixels' spectra and tests it on the test pixels' (the same data, split, metrics and run
files as a network; its checkpoint is the pickled estimator, `model.pkl`). `model=svm` (an RBF
SVM, `hsi.models.svm`), `model=rf` (a random forest) and `model=knn` (k nearest neighbours).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from hsi.errors import ConfigError

Grid = Mapping[str, Sequence[Any]]


class PixelEstimator:
    """Standardised spectra -> a scikit-learn classifier; `fit(spectra, targets)`, `predict(spectra)`,
    `best_params` (the settings used, chosen by `grid` when given).

    Subclasses set `settings` (their classifier's keyword names) and `make_classifier()`.
    """

    settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, grid: Grid | None = None, cv: int = 3, seed: int = 0) -> None:
        self.grid, self.cv, self.seed = grid, cv, seed
        self.model: Any = None
        unknown = sorted(set(grid or {}) - set(self.settings))
        if unknown:
            raise ConfigError(f"model.grid: {', '.join(unknown)} are not settings of {type(self).__name__}; "
                              f"choose from {', '.join(self.settings)}.")
        self.best_params: dict[str, Any] = {k: getattr(self, k) for k in self.settings}

    def make_classifier(self) -> Any:
        """The scikit-learn classifier with this estimator's settings."""
        raise NotImplementedError

    def fit(self, spectra: np.ndarray, targets: np.ndarray) -> PixelEstimator:
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        pipeline = make_pipeline(StandardScaler(), self.make_classifier())
        step = pipeline.steps[-1][0]
        if self.grid:
            smallest = int(np.bincount(targets).min())
            folds = StratifiedKFold(n_splits=max(2, min(self.cv, smallest)), shuffle=True,
                                    random_state=self.seed)
            search = GridSearchCV(pipeline, {f"{step}__{k}": list(v) for k, v in self.grid.items()},
                                  cv=folds, n_jobs=1)
            search.fit(spectra, targets)
            self.model = search.best_estimator_
            self.best_params |= {k.removeprefix(f"{step}__"): v for k, v in search.best_params_.items()}
        else:
            self.model = pipeline.fit(spectra, targets)
        return self

    def predict(self, spectra: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"fit the {type(self).__name__} first")
        return self.model.predict(spectra)


class SpectralRandomForest(PixelEstimator):
    """Random forest (Breiman, 2001) on standardised spectra: `n_estimators` trees, each split
    over `max_features` of the bands, grown to `max_depth` (null: until the leaves are pure)."""

    settings = ("n_estimators", "max_features", "max_depth", "min_samples_leaf")

    def __init__(self, n_estimators: int = 200, max_features: str | float | int | None = "sqrt",
                 max_depth: int | None = None, min_samples_leaf: int = 1, n_jobs: int = 1,
                 grid: Grid | None = None, cv: int = 3, seed: int = 0) -> None:
        self.n_estimators, self.max_features = n_estimators, max_features
        self.max_depth, self.min_samples_leaf, self.n_jobs = max_depth, min_samples_leaf, n_jobs
        super().__init__(grid, cv, seed)

    def make_classifier(self) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=self.n_estimators, max_features=self.max_features,
                                      max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
                                      n_jobs=self.n_jobs, random_state=self.seed)


class SpectralKNN(PixelEstimator):
    """k nearest neighbours on standardised spectra (Euclidean), each neighbour's vote weighted
    by `weights` (`distance`: by 1 / distance, as DeepHyperX's `nearest` does; or `uniform`)."""

    settings = ("n_neighbors", "weights")

    def __init__(self, n_neighbors: int = 5, weights: str = "distance", grid: Grid | None = None,
                 cv: int = 3, seed: int = 0) -> None:
        self.n_neighbors, self.weights = n_neighbors, weights
        super().__init__(grid, cv, seed)

    def make_classifier(self) -> Any:
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=self.n_neighbors, weights=self.weights)
