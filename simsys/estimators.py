"""The estimators simsys builds by name, and how weights reach them.

This module owns the pieces both :mod:`simsys.models` (building any model) and
:mod:`simsys.mitigations` (the built-in fairness methods, which wrap a base model) need: the
built-in models' recipes (:data:`BUILTIN_MODELS`), the name of their final pipeline step, the
fairlearn constraint names, and the ``fit`` keyword that carries sample weights. Keeping them
here lets imports point one way: models -> mitigations -> estimators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import has_fit_parameter

#: Name of the final step in every built-in pipeline; ``params`` are applied to this step.
FINAL_STEP = "model"

#: Fairlearn constraint names accepted as the ``constraints`` parameter of a
#: ``fairlearn.reductions`` mitigator, mapped to the name of the moment class built for it.
FAIRLEARN_CONSTRAINTS: dict[str, str] = {
    "demographic_parity": "DemographicParity",
    "equalized_odds": "EqualizedOdds",
    "error_rate_parity": "ErrorRateParity",
    "false_positive_rate_parity": "FalsePositiveRateParity",
    "true_positive_rate_parity": "TruePositiveRateParity",
}


# --------------------------------------------------------------------------------------------
# Built-in models
# --------------------------------------------------------------------------------------------


def _imputer() -> SimpleImputer:
    # add_indicator: missingness may itself depend on group or outcome (a bias we simulate), so the
    # model should be able to see it. keep_empty_features: a column that is all-NaN in one training
    # split must not change the number of columns between fit and predict.
    return SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True)


def _logistic_regression(**params: Any) -> Pipeline:
    final = LogisticRegression(max_iter=1000).set_params(**params)
    return Pipeline([("impute", _imputer()), ("scale", StandardScaler()), (FINAL_STEP, final)])


def _gradient_boosting(**params: Any) -> HistGradientBoostingClassifier:
    # No imputer: histogram gradient boosting learns a direction for missing values at each split.
    return HistGradientBoostingClassifier().set_params(**params)


def _random_forest(**params: Any) -> Pipeline:
    # n_jobs=1: parallelism belongs to the runner (one model per process), not to the model.
    final = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, n_jobs=1)
    return Pipeline([("impute", _imputer()), (FINAL_STEP, final.set_params(**params))])


def _mlp(**params: Any) -> Pipeline:
    final = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, max_iter=500)
    final.set_params(**params)
    return Pipeline([("impute", _imputer()), ("scale", StandardScaler()), (FINAL_STEP, final)])


#: Built-in short names -> (builder, class of the final estimator that ``params`` apply to).
BUILTIN_MODELS: dict[str, tuple[Callable[..., Any], type]] = {
    "gradient_boosting": (_gradient_boosting, HistGradientBoostingClassifier),
    "logistic_regression": (_logistic_regression, LogisticRegression),
    "mlp": (_mlp, MLPClassifier),
    "random_forest": (_random_forest, RandomForestClassifier),
}


def _sample_weight_key(estimator: Any) -> str | None:
    """The ``fit`` keyword that carries sample weights, or None when ``fit`` has none."""
    if isinstance(estimator, Pipeline):
        # A Pipeline rejects a bare sample_weight; it must be routed to a step by name.
        step, final = estimator.steps[-1]
        return f"{step}__sample_weight" if has_fit_parameter(final, "sample_weight") else None
    # has_fit_parameter looks for an explicit parameter: fit(X, y, **kwargs) (fairlearn's
    # ExponentiatedGradient) does not count, since there the weights would not reach the loss.
    return "sample_weight" if has_fit_parameter(estimator, "sample_weight") else None


__all__ = ["BUILTIN_MODELS", "FAIRLEARN_CONSTRAINTS", "FINAL_STEP"]
