"""The model types and their capacity settings, apart from `model_zoo` so that naming them does
not import scikit-learn and XGBoost (seconds at every process start)."""

from __future__ import annotations

from dataclasses import dataclass

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
