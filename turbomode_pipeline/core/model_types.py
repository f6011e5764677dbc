"""The model types and their capacity settings, apart from `model_zoo` so that naming them does
not import scikit-learn and XGBoost (seconds at every process start)."""

from __future__ import annotations

from dataclasses import dataclass

BASE_MODEL_TYPES = ("xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "logistic_regression")
STACKED = "stacked_ensemble"
MODEL_TYPES = (*BASE_MODEL_TYPES, STACKED)


RECIPES = ("hist", "exact")


@dataclass(frozen=True)
class ModelSettings:
    """Capacity of the tree models; `fast()` is for demos and tests, stated as such.

    `recipe` "hist" (issue 29): histogram-based forests (random_forest on 64 quantile bins per feature;
    extra trees on a quarter of the rows per tree), 64 bins for XGBoost, a Newton solver for the logistic
    regression, float32 data built once per sector and shared by the models and folds. "exact": the
    estimators before it (scikit-learn forests on float64), kept for `make bench` to compare.

    `scored_folds`: how many of the last walk-forward blocks are fitted and scored out of sample (the
    calibration data and the cross-validation AUC); the blocks before them only train. None: every one.
    """

    trees: int = 100
    boosting_rounds: int = 100
    max_depth: int = 6
    min_leaf: int = 100
    learning_rate: float = 0.09
    folds: int = 4
    scored_folds: int | None = 2
    recipe: str = "hist"

    @classmethod
    def fast(cls) -> ModelSettings:
        return cls(trees=60, boosting_rounds=120, max_depth=4, min_leaf=100, learning_rate=0.06, folds=3, scored_folds=None)

    @classmethod
    def before_issue_29(cls) -> ModelSettings:
        """The full settings and estimators the weekly run trained with before issue 29 (528 s for 66 models)."""
        return cls(trees=200, boosting_rounds=300, learning_rate=0.03, scored_folds=None, recipe="exact")
