"""The six model types of a sector, and the calibrated wrappers the registry stores.

Each registered model predicts a calibrated probability that a trade entered at the
session's close goes up (label 1, see `labels.py`). Base models are wrapped with the
calibration learnt on their own out-of-fold predictions; the stacked ensemble is a logistic
regression over the five base models' raw probabilities, calibrated the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from xgboost import XGBClassifier

BASE_MODEL_TYPES = ("xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "logistic_regression")
STACKED = "stacked_ensemble"
MODEL_TYPES = (*BASE_MODEL_TYPES, STACKED)


@dataclass(frozen=True)
class ModelSettings:
    """Capacity of the tree models; `fast()` is for demos and tests, stated as such."""

    trees: int = 200
    boosting_rounds: int = 300
    max_depth: int = 6
    min_leaf: int = 100
    learning_rate: float = 0.03
    folds: int = 4

    @classmethod
    def fast(cls) -> ModelSettings:
        return cls(trees=60, boosting_rounds=120, max_depth=4, min_leaf=100, learning_rate=0.06, folds=3)


def make_base_model(model_type: str, settings: ModelSettings, seed: int):
    """An unfitted estimator; every one single-threaded so that sectors can run in parallel."""
    if model_type == "xgboost":
        return XGBClassifier(
            n_estimators=settings.boosting_rounds, max_depth=settings.max_depth - 2, learning_rate=settings.learning_rate,
            subsample=0.8, colsample_bytree=0.8, min_child_weight=settings.min_leaf / 10, tree_method="hist",
            n_jobs=1, random_state=seed, eval_metric="logloss",
        )
    if model_type == "random_forest":
        return RandomForestClassifier(
            n_estimators=settings.trees, max_depth=settings.max_depth + 2, min_samples_leaf=settings.min_leaf,
            max_features="sqrt", max_samples=0.5, n_jobs=1, random_state=seed,
        )
    if model_type == "extra_trees":
        return ExtraTreesClassifier(
            n_estimators=settings.trees, max_depth=settings.max_depth + 2, min_samples_leaf=settings.min_leaf,
            max_features="sqrt", n_jobs=1, random_state=seed,
        )
    if model_type == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=settings.boosting_rounds, max_depth=settings.max_depth - 2, learning_rate=settings.learning_rate,
            min_samples_leaf=settings.min_leaf, l2_regularization=1.0, early_stopping=False, random_state=seed,
        )
    if model_type == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    raise ValueError(f"unknown model type {model_type!r}; known: {', '.join(MODEL_TYPES)}")


def make_meta_model():
    """The stacked ensemble's meta-model over the base models' raw probabilities.

    The base models' log-odds are nearly collinear; strong L2 on standardised inputs shares the
    weight among them instead of letting large weights of opposite sign cancel out, which
    extrapolates badly once the final models' probabilities drift from the out-of-fold ones.
    """
    return make_pipeline(
        FunctionTransformer(_log_odds_columns), StandardScaler(), LogisticRegression(C=0.01, max_iter=500)
    )


def _log_odds_columns(probability: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_calibrator(raw: np.ndarray, labels: np.ndarray) -> SigmoidCalibrator:
    """Map from a model's raw out-of-fold probability to the observed frequency."""
    return SigmoidCalibrator().fit(raw, labels)


class SigmoidCalibrator:
    """Platt scaling on the log-odds of the raw probability.

    Two parameters cannot overfit a weak signal the way a free-form (isotonic) map does: with
    no signal the slope goes to 0 and every probability to the observed base rate.
    """

    def fit(self, raw: np.ndarray, labels: np.ndarray) -> SigmoidCalibrator:
        self.logistic = LogisticRegression(C=1e6, max_iter=500).fit(_log_odds(raw), labels)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return self.logistic.predict_proba(_log_odds(raw))[:, 1]


def _log_odds(probability: np.ndarray) -> np.ndarray:
    return _log_odds_columns(probability).reshape(-1, 1)


class CalibratedModel(BaseEstimator, ClassifierMixin):
    """A fitted base model and the calibration learnt on its out-of-fold predictions."""

    def __init__(self, model, calibrator: SigmoidCalibrator, feature_names: list[str]):
        self.model = model
        self.calibrator = calibrator
        self.feature_names = feature_names
        self.classes_ = np.array([0, 1])

    def raw_probability(self, features) -> np.ndarray:
        return self.model.predict_proba(_matrix(features, self.feature_names))[:, 1]

    def predict_proba(self, features) -> np.ndarray:
        up = self.calibrator.predict(self.raw_probability(features))
        return np.column_stack([1 - up, up])

    def predict(self, features) -> np.ndarray:
        return (self.predict_proba(features)[:, 1] >= 0.5).astype(int)


class StackedEnsemble(BaseEstimator, ClassifierMixin):
    """A meta-model (`make_meta_model`) over the base models' raw probabilities, itself calibrated."""

    def __init__(self, base_models: dict[str, CalibratedModel], meta, calibrator: SigmoidCalibrator):
        self.base_models = base_models
        self.meta = meta
        self.calibrator = calibrator
        self.feature_names = next(iter(base_models.values())).feature_names
        self.classes_ = np.array([0, 1])

    def base_probabilities(self, features) -> np.ndarray:
        return np.column_stack([m.raw_probability(features) for m in self.base_models.values()])

    def predict_proba(self, features) -> np.ndarray:
        up = self.calibrator.predict(self.meta.predict_proba(self.base_probabilities(features))[:, 1])
        return np.column_stack([1 - up, up])

    def predict(self, features) -> np.ndarray:
        return (self.predict_proba(features)[:, 1] >= 0.5).astype(int)


def _matrix(features, names: list[str]) -> np.ndarray:
    """A float matrix in the training column order, from a pandas or polars frame or an array."""
    if hasattr(features, "columns"):
        features = features[names]
        return features.to_numpy().astype(np.float64)
    return np.asarray(features, dtype=np.float64)


def feature_importance(model) -> np.ndarray | None:
    """Importances of a fitted base model (absolute coefficients for the linear one)."""
    inner = model[-1] if hasattr(model, "steps") else model
    if hasattr(inner, "feature_importances_"):
        return np.asarray(inner.feature_importances_, dtype=float)
    if hasattr(inner, "coef_"):
        return np.abs(np.asarray(inner.coef_, dtype=float)).ravel()
    return None
