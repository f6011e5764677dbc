"""The six model types of a sector, and the calibrated wrappers the registry stores.

Each registered model predicts a calibrated probability of its label (by default: the stock
beats its sector's median over the horizon, see `labels.py`). Base models are wrapped with a
monotone calibration learnt on their own out-of-fold predictions; the stacked ensemble is a
logistic regression with non-negative weights over the five base models' centred log-odds.
Calibration never reorders a model's scores: calibrated and raw AUC are equal.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from turbomode_pipeline.core.model_types import BASE_MODEL_TYPES, MODEL_TYPES, STACKED, ModelSettings  # noqa: F401


def make_base_model(model_type: str, settings: ModelSettings, seed: int):
    """An unfitted estimator; every one single-threaded so that sectors can run in parallel."""
    if settings.recipe == "exact":
        return _exact_model(model_type, settings, seed)
    if settings.recipe != "hist":
        raise ValueError(f"unknown recipe {settings.recipe!r}; known: hist, exact")
    if model_type == "xgboost":
        # one level shallower than before (not below 2): on three sectors' holdouts 0.012 better AUC
        return XGBClassifier(
            n_estimators=settings.boosting_rounds, max_depth=max(2, settings.max_depth - 3),
            learning_rate=settings.learning_rate, subsample=0.8, colsample_bytree=0.8,
            min_child_weight=settings.min_leaf / 10, tree_method="hist", max_bin=HIST_BINS, n_jobs=1, random_state=seed, eval_metric="logloss",
        )
    if model_type == "random_forest":
        # scikit-learn's forest on 64 quantile bins per feature (learnt on its own training rows): the
        # splitter sorts small integers
        return make_pipeline(
            QuantileBins(HIST_BINS),
            RandomForestClassifier(
                n_estimators=settings.trees, max_depth=settings.max_depth + 2, min_samples_leaf=settings.min_leaf,
                max_features="sqrt", max_samples=0.25, n_jobs=1, random_state=seed,
            ),
        )
    if model_type == "extra_trees":
        # random thresholds on a quarter of the rows per tree, the leaf size scaled with it
        return ExtraTreesClassifier(
            n_estimators=settings.trees, max_depth=settings.max_depth + 2, min_samples_leaf=max(1, settings.min_leaf // 4),
            max_features="sqrt", bootstrap=True, max_samples=0.25, n_jobs=1, random_state=seed,
        )
    if model_type == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=settings.boosting_rounds, max_depth=settings.max_depth - 2, learning_rate=settings.learning_rate,
            min_samples_leaf=settings.min_leaf, l2_regularization=1.0, early_stopping=False, random_state=seed,
        )
    if model_type == "logistic_regression":
        # the same penalised likelihood as lbfgs finds, by a few Newton steps (features are few)
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500, solver="newton-cholesky"))
    raise ValueError(f"unknown model type {model_type!r}; known: {', '.join(MODEL_TYPES)}")


HIST_BINS = 64  # bins per feature of the XGBoost models and of the random forest


class QuantileBins(TransformerMixin, BaseEstimator):
    """Each feature as the index of its quantile bin (edges learnt on the training rows), as float32:
    a monotone map, so a tree on the bins splits where a tree on the values could."""

    def __init__(self, bins: int = HIST_BINS):
        self.bins = bins

    def fit(self, x, y=None):
        x = np.asarray(x, dtype=np.float32)
        step = max(1, len(x) // 50_000)
        self.edges_ = np.quantile(x[::step], np.linspace(0, 1, self.bins + 1)[1:-1], axis=0).T.astype(np.float32)
        return self

    def transform(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        binned = np.empty(x.shape, dtype=np.float32, order="F")
        for column, edges in enumerate(self.edges_):
            binned[:, column] = np.searchsorted(edges, x[:, column], side="right")
        return binned


def _exact_model(model_type: str, settings: ModelSettings, seed: int):
    """The estimators before issue 29 (`ModelSettings.before_issue_29`), for the bench's comparison."""
    if model_type == "xgboost":
        return XGBClassifier(
            n_estimators=settings.boosting_rounds, max_depth=settings.max_depth - 2, learning_rate=settings.learning_rate,
            subsample=0.8, colsample_bytree=0.8, min_child_weight=settings.min_leaf / 10, tree_method="hist",
            n_jobs=1, random_state=seed, eval_metric="logloss",
        )
    if model_type == "random_forest":
        return RandomForestClassifier(
            n_estimators=settings.trees, max_depth=settings.max_depth + 2, min_samples_leaf=settings.min_leaf,
            max_features="sqrt", max_samples=0.25, n_jobs=1, random_state=seed,
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


MIN_SLOPE = 1e-6  # a calibration slope is never below this: a calibrated model ranks as its raw scores do
META_L2 = 1e-3  # ridge on the meta-model's weights over standardised inputs


def log_odds(probability: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def fit_increasing_logistic(x: np.ndarray, labels: np.ndarray, l2: float = 0.0) -> tuple[float, np.ndarray]:
    """Intercept and weights of P(label) = sigmoid(b + x @ w) by maximum likelihood, every weight
    held at or above MIN_SLOPE: the probability rises with every column of `x`, so it can never
    turn a model's ranking upside down. `l2` penalises the weights (not the intercept)."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64).reshape(len(labels), -1)
    y = np.asarray(labels, dtype=np.float64)

    def loss(params):
        score = params[0] + x @ params[1:]
        p = sigmoid(score)
        value = np.mean(np.logaddexp(0, score) - y * score) + 0.5 * l2 * params[1:] @ params[1:]
        grad_score = (p - y) / len(y)
        return value, np.concatenate([[grad_score.sum()], x.T @ grad_score + l2 * params[1:]])

    base_rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
    start = np.concatenate([[np.log(base_rate / (1 - base_rate))], np.full(x.shape[1], MIN_SLOPE)])
    bounds = [(None, None)] + [(MIN_SLOPE, None)] * x.shape[1]
    fitted = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return float(fitted.x[0]), np.asarray(fitted.x[1:])


class MonotoneCalibrator:
    """P = sigmoid(intercept + slope x centred log-odds), slope >= MIN_SLOPE (see `fit_calibrator`)."""

    def __init__(self, intercept: float, slope: float):
        self.intercept = float(intercept)
        self.slope = float(slope)

    def predict(self, centred_log_odds: np.ndarray) -> np.ndarray:
        return sigmoid(self.intercept + self.slope * np.asarray(centred_log_odds, dtype=np.float64))


def fit_calibrator(centred_log_odds: np.ndarray, labels: np.ndarray) -> MonotoneCalibrator:
    """Platt scaling with the slope held positive, learnt on out-of-sample scores.

    The scores are each model's log-odds less that model's mean log-odds on its own training
    data (`score_centre`): walk-forward blocks are scored by different models, each offset by
    its own training period's base rate, and pooled raw scores would mostly say which block a
    row came from (a negative slope inverted 33 of 55 models before). Two parameters cannot
    overfit a weak signal: with none the slope goes to its floor and every probability to the
    base rate.
    """
    intercept, slope = fit_increasing_logistic(centred_log_odds, labels)
    return MonotoneCalibrator(intercept, slope[0])


CENTRE_ROWS = 20_000  # rows of the training data a model's centre is measured on (every k-th)


def score_centre(model, x_train: np.ndarray) -> float:
    """Mean log-odds of a fitted model over (every k-th row of) its own training data."""
    step = max(1, len(x_train) // CENTRE_ROWS)
    return float(log_odds(model.predict_proba(x_train[::step])[:, 1]).mean())


class CalibratedModel(BaseEstimator, ClassifierMixin):
    """A fitted base model, the centre of its scores and the monotone calibration of the centred scores."""

    def __init__(self, model, calibrator: MonotoneCalibrator, feature_names: list[str], centre: float = 0.0):
        self.model = model
        self.calibrator = calibrator
        self.feature_names = feature_names
        self.centre = centre
        self.classes_ = np.array([0, 1])

    def raw_probability(self, features) -> np.ndarray:
        return self.model.predict_proba(_matrix(features, self.feature_names))[:, 1]

    def centred_log_odds(self, features) -> np.ndarray:
        return log_odds(self.raw_probability(features)) - self.centre

    def predict_proba(self, features) -> np.ndarray:
        up = self.calibrator.predict(self.centred_log_odds(features))
        return np.column_stack([1 - up, up])

    def predict(self, features) -> np.ndarray:
        return (self.predict_proba(features)[:, 1] >= 0.5).astype(int)


class StackedEnsemble(BaseEstimator, ClassifierMixin):
    """P = sigmoid(intercept + sum of non-negative weights x the base models' centred log-odds / scale).

    The meta-model is a logistic regression learnt on the base models' out-of-sample centred
    scores (`fit_stacker`): it is its own calibration, and, every weight being positive, it
    rises with every base model's score (no base model enters upside down)."""

    def __init__(self, base_models: dict[str, CalibratedModel], intercept: float, weights: np.ndarray, scale: np.ndarray):
        self.base_models = base_models
        self.intercept = float(intercept)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.feature_names = next(iter(base_models.values())).feature_names
        self.classes_ = np.array([0, 1])

    def base_scores(self, features) -> np.ndarray:
        return np.column_stack([m.centred_log_odds(features) for m in self.base_models.values()])

    def score(self, features) -> np.ndarray:
        return (self.base_scores(features) / self.scale) @ self.weights

    def predict_proba(self, features) -> np.ndarray:
        up = sigmoid(self.intercept + self.score(features))
        return np.column_stack([1 - up, up])

    def predict(self, features) -> np.ndarray:
        return (self.predict_proba(features)[:, 1] >= 0.5).astype(int)


def fit_stacker(centred_scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Intercept, non-negative weights and input scales of the meta-model (see StackedEnsemble)."""
    scale = np.maximum(centred_scores.std(axis=0), 1e-9)
    intercept, weights = fit_increasing_logistic(centred_scores / scale, labels, l2=META_L2)
    return intercept, weights, scale


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
