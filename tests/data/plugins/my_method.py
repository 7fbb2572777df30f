"""A user-defined bias-mitigation method, kept OUTSIDE the simsys package (docs/methods.md).

Scenario files name it as ``model: "my_method.py:UpweightPositives"`` (the path is relative to the
scenario file) and need ``simsys run ... --allow-import``, since loading the file runs it.
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class UpweightPositives(ClassifierMixin, BaseEstimator):
    """Weights each group's positives so that its weighted odds of a positive label equal the
    highest group's: a correction for under-diagnosis (labels missing positives) in a group."""

    def __init__(self, C=1.0):
        self.C = C

    def fit(self, X, y, sample_weight=None, sensitive_features=None):
        y, g = np.asarray(y), np.asarray(sensitive_features)
        odds = {k: y[g == k].mean() / (1 - y[g == k].mean()) for k in np.unique(g)}
        boost = np.array([max(odds.values()) / odds[k] for k in g])
        w = np.where(y == 1, boost, 1.0) * (1.0 if sample_weight is None else sample_weight)
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(X, y, sample_weight=w)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)
