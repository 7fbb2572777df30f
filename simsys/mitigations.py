"""Bias-mitigation methods built in as baselines, and the interface a candidate method follows.

This module owns the built-in mitigations that a scenario names by short name in
``experiment.models`` (registered in :data:`MITIGATIONS`), each a scikit-learn-compatible
estimator that wraps a *base* model:

=============================  ==============================================================
short name                     method
=============================  ==============================================================
``reweighing``                 Kamiran & Calders 2012: weights P(A=a)P(Y=y) / P(A=a, Y=y)
``group_resampling``           resample groups to equal size (or Kamiran & Calders' uniform
                               sampling of the (group, label) cells)
``group_thresholds``           Hardt, Price & Srebro 2016: per-group thresholds for equal
                               opportunity, equalized odds (randomised) or demographic parity
``jiang_nachum``               Jiang & Nachum 2020: iterative re-weighting for label bias
``exponentiated_gradient``     fairlearn's ExponentiatedGradient (Agarwal et al. 2018)
``threshold_optimizer``        fairlearn's ThresholdOptimizer (Hardt et al. 2016)
=============================  ==============================================================

**The interface of a candidate method** (``docs/methods.md``): a class with scikit-learn's
conventions (constructor arguments stored unchanged, ``get_params`` / ``clone`` work) whose ::

    fit(X, y, sample_weight=None, sensitive_features=None)

may receive the integer group codes (``sensitive_features``, when the model spec has
``receives_group: true``, the default for the built-ins here) and sample weights; after ``fit``
it gives scores through ``predict_proba(X)[:, 1]`` (or ``decision_function``), or -- for
post-processors that need the group at prediction time -- 0/1 predictions through
``predict(X, sensitive_features=..., random_state=None)``. :class:`simsys.models.FittedModel`
explains how each kind is scored.

The fairlearn wrappers import fairlearn only when built or fitted, so that fairlearn stays an
optional extra (``pip install 'simsys[fairlearn]'``); without it they raise
:class:`~simsys.errors.ModelError` with that instruction.
"""

from __future__ import annotations

import importlib
import math
import numbers
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from simsys.errors import ModelError
from simsys.estimators import BUILTIN_MODELS, FAIRLEARN_CONSTRAINTS, FINAL_STEP, _sample_weight_key

__all__ = [
    "MITIGATIONS",
    "FairlearnExponentiatedGradient",
    "FairlearnThresholdOptimizer",
    "GroupResampling",
    "GroupThresholds",
    "JiangNachum",
    "Reweighing",
]

# --- message texts (the tests compare them) --------------------------------------------------------
_ERR_NO_GROUP = (
    "{owner}.fit: sensitive_features is required (the group codes); "
    "set receives_group: true in the model spec"
)
_ERR_GROUP_SHAPE = "{owner}: sensitive_features must have shape ({n},), got {shape}"
_ERR_PARAM = "The '{param}' parameter of {owner} must be {allowed}. Got {value!r} instead."
_ERR_NO_WEIGHTS = (
    "{owner}: the base estimator {base} does not accept sample_weight in fit; "
    "use a base model whose fit takes sample_weight (all built-ins do)"
)
_ERR_NO_FAIRLEARN = (
    "{owner} needs fairlearn, an optional extra: pip install 'simsys[fairlearn]' "
    "(or pip install fairlearn)"
)
_ERR_NOT_FITTED = "{owner}: call fit before {method}"

_BASE_ALLOWED = (
    f"a built-in model name ({', '.join(BUILTIN_MODELS)}), a nested model spec "
    "{model: ..., params: ...} or an estimator with a fit method"
)


# =====================================================================================================
# helpers shared by the methods
# =====================================================================================================
def _encode_groups(sensitive_features: Any, n: int, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct group values and each row's index into them (``np.unique``)."""
    if sensitive_features is None:
        raise ValueError(_ERR_NO_GROUP.format(owner=owner))
    a = np.asarray(sensitive_features)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(_ERR_GROUP_SHAPE.format(owner=owner, n=n, shape=a.shape))
    values, codes = np.unique(a, return_inverse=True)
    return values, codes.reshape(-1).astype(np.int64)


def _lookup_groups(values: np.ndarray, sensitive_features: Any, n: int, owner: str) -> np.ndarray:
    """Codes of ``sensitive_features`` in the fitted ``values``; -1 for a group unseen in fit."""
    if sensitive_features is None:
        raise ValueError(
            f"{owner}.predict: sensitive_features is required (the group codes); "
            "the runner passes them when the model spec has receives_group: true"
        )
    a = np.asarray(sensitive_features)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(_ERR_GROUP_SHAPE.format(owner=owner, n=n, shape=a.shape))
    idx = np.searchsorted(values, a)
    clipped = np.minimum(idx, values.shape[0] - 1)
    known = (idx < values.shape[0]) & (values[clipped] == a)
    return np.where(known, clipped, -1).astype(np.int64)


def _check_binary(y: Any, n: int, owner: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{owner}: y must have shape ({n},), got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{owner}: y must contain only 0 and 1")
    return y.astype(np.int64)


def _weights_or_ones(sample_weight: Any, n: int, owner: str) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{owner}: sample_weight must be {n} finite non-negative numbers")
    return w


def _make_base(base: Any, random_state: int | None) -> Any:
    """A fresh, unfitted base estimator: a built-in by name, or a clone of the given estimator."""
    if isinstance(base, str):
        est = BUILTIN_MODELS[base][0]()
        if random_state is not None:
            params = est.get_params()
            for key in ("random_state", f"{FINAL_STEP}__random_state"):
                if key in params:
                    est.set_params(**{key: int(random_state)})
        return est
    return clone(base)


def _fit_weighted(est: Any, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, owner: str) -> Any:
    """``est.fit(X, y)`` with ``w`` routed to the estimator's sample-weight parameter."""
    if w is None:
        return est.fit(X, y)
    key = _sample_weight_key(est)
    if key is None:
        raise ModelError(_ERR_NO_WEIGHTS.format(owner=owner, base=type(est).__name__))
    return est.fit(X, y, **{key: w})


def _positive_score(est: Any, X: np.ndarray) -> np.ndarray:
    """Score of class 1: predict_proba, else the squashed decision function, else predict."""
    if hasattr(est, "predict_proba"):
        proba = np.asarray(est.predict_proba(X))
        return proba[:, np.flatnonzero(np.asarray(est.classes_) == 1)[0]].astype(np.float64)
    if hasattr(est, "decision_function"):
        return expit(np.asarray(est.decision_function(X), dtype=np.float64))
    return np.asarray(est.predict(X), dtype=np.float64)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any, lo: int | None = None) -> bool:
    """An integer (not a bool), at least ``lo`` when given."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and (lo is None or v >= lo)


def _fairlearn(module: str, owner: str):
    """``fairlearn.<module>``, imported now (fairlearn is an optional extra)."""
    try:
        return importlib.import_module(f"fairlearn.{module}")
    except ImportError as exc:
        raise ModelError(_ERR_NO_FAIRLEARN.format(owner=owner)) from exc


class _Mitigation(ClassifierMixin, BaseEstimator):
    """Shared plumbing: parameter checks, the base model, scores of a fitted base.

    ``_parameter_constraints`` is present (empty) so that :func:`simsys.models.build_model`
    calls :meth:`_validate_params` when the scenario is loaded; the checks themselves are
    written out in :meth:`_checks`, with scikit-learn's message shape (``The 'x' parameter of
    C must be ...``) so that the error names the key path of the parameter.
    """

    _parameter_constraints: dict = {}  # noqa: RUF012 (read-only marker, see the docstring)

    def _checks(self) -> list[tuple[str, bool, str]]:
        """(parameter, is valid, what is allowed) for every parameter; subclasses extend it."""
        base = getattr(self, "base", None)
        ok = (isinstance(base, str) and base in BUILTIN_MODELS) or (
            not isinstance(base, str) and callable(getattr(base, "fit", None))
        )
        rs = self.random_state
        return [
            ("base", ok, _BASE_ALLOWED),
            ("random_state", rs is None or _is_int(rs),
             "an int or None"),
        ]

    def _validate_params(self) -> None:
        for param, ok, allowed in self._checks():
            if not ok:
                raise ValueError(_ERR_PARAM.format(param=param, owner=type(self).__name__,
                                                   allowed=allowed, value=getattr(self, param)))

    def _check_fitted(self, method: str) -> None:
        if not hasattr(self, "classes_"):
            raise ModelError(_ERR_NOT_FITTED.format(owner=type(self).__name__, method=method))


class _Scored(_Mitigation):
    """A method whose fitted ``estimator_`` gives the scores (pre-processing, in-processing)."""

    def predict_proba(self, X):
        """Class probabilities of the base model fitted on the re-weighted / re-sampled data."""
        self._check_fitted("predict_proba")
        s = _positive_score(self.estimator_, np.asarray(X, dtype=np.float64))
        return np.column_stack([1.0 - s, s])

    def predict(self, X):
        """``predict_proba(X)[:, 1] >= 0.5``."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


# =====================================================================================================
# pre-processing: reweighing, resampling
# =====================================================================================================
class Reweighing(_Scored):
    """Reweighing (Kamiran & Calders 2012, "Data preprocessing techniques for classification
    without discrimination", Knowledge and Information Systems 33:1-33).

    Each training row of group a with label y gets the weight

        w(a, y) = P(A = a) P(Y = y) / P(A = a, Y = y)

    (empirical, from the training data; weighted by ``sample_weight`` when given, and multiplied
    with it), so that in the weighted data the label is independent of the group; the base model
    is then fitted with these weights. The labels are not changed.

    Parameters
    ----------
    base : str or estimator, default "logistic_regression"
        A built-in model name or an estimator (cloned); its fit must take ``sample_weight``.
    random_state : int or None
        Seed of a base given by name.

    Attributes
    ----------
    groups_ : ndarray
        The distinct groups seen in fit.
    cell_weights_ : ndarray of shape (n_groups, 2)
        w(a, y) for each group (row) and label (column); NaN for an empty cell.
    estimator_ : estimator
        The fitted base model.
    """

    def __init__(self, base: Any = "logistic_regression", random_state: int | None = None):
        self.base = base
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None, sensitive_features=None):
        """Fit the base model on the reweighed training data."""
        self._validate_params()
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        owner = type(self).__name__
        y = _check_binary(y, n, owner)
        self.groups_, a = _encode_groups(sensitive_features, n, owner)
        w0 = _weights_or_ones(sample_weight, n, owner)
        cell = a * 2 + y
        joint = np.bincount(cell, weights=w0, minlength=2 * self.groups_.shape[0]).reshape(-1, 2)
        total = joint.sum()
        p_a = joint.sum(axis=1, keepdims=True) / total
        p_y = joint.sum(axis=0, keepdims=True) / total
        with np.errstate(divide="ignore", invalid="ignore"):
            self.cell_weights_ = np.where(joint > 0, p_a * p_y / (joint / total), np.nan)
        weights = self.cell_weights_.reshape(-1)[cell] * w0
        self.estimator_ = _fit_weighted(_make_base(self.base, self.random_state), X, y, weights, owner)
        self.classes_ = np.array([0, 1])
        return self


class GroupResampling(_Scored):
    """Group-balanced resampling: the base model is fitted on a resample of the training data.

    ``by="group"``: every group is drawn with replacement to the same size, n / (number of
    groups) rows (rounded), so that each group weighs the same in the fit (the usual remedy for
    under-representation). ``by="group_label"``: Kamiran & Calders' (2012) *uniform sampling*:
    each (group, label) cell is drawn with replacement to its expected size under independence,
    round(n P(A = a) P(Y = y)), the sampling counterpart of :class:`Reweighing`.
    With ``sample_weight``, rows are drawn within their cell with probability proportional to it.

    Parameters
    ----------
    base : str or estimator, default "logistic_regression"
    by : {"group", "group_label"}, default "group"
    random_state : int or None
        Seed of the resampling (``numpy.random.default_rng``) and of a base given by name.

    Attributes
    ----------
    groups_ : ndarray
    sample_index_ : ndarray of int
        Rows of the training data in the resample, in the order drawn.
    estimator_ : estimator
    """

    def __init__(self, base: Any = "logistic_regression", by: str = "group",
                 random_state: int | None = None):
        self.base = base
        self.by = by
        self.random_state = random_state

    def _checks(self):
        return [*super()._checks(), ("by", self.by in ("group", "group_label"),
                                     "one of 'group', 'group_label'")]

    def fit(self, X, y, sample_weight=None, sensitive_features=None):
        """Fit the base model on a group-balanced resample."""
        self._validate_params()
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        owner = type(self).__name__
        y = _check_binary(y, n, owner)
        self.groups_, a = _encode_groups(sensitive_features, n, owner)
        w = _weights_or_ones(sample_weight, n, owner)
        rng = np.random.default_rng(self.random_state)
        G = self.groups_.shape[0]
        if self.by == "group":
            cells = a
            sizes = np.full(G, round(n / G))
        else:
            cells = a * 2 + y
            joint = np.bincount(cells, weights=w, minlength=2 * G).reshape(-1, 2)
            total = joint.sum()
            expected = np.outer(joint.sum(axis=1), joint.sum(axis=0)) / total**2 * n
            sizes = np.rint(expected).astype(np.int64).reshape(-1)
        parts = []
        for c, size in enumerate(sizes):
            rows = np.flatnonzero(cells == c)
            if rows.size == 0 or size == 0:
                continue
            p = w[rows] / w[rows].sum() if w[rows].sum() > 0 else None
            parts.append(rng.choice(rows, size=int(size), replace=True, p=p))
        self.sample_index_ = np.concatenate(parts)
        idx = self.sample_index_
        self.estimator_ = _fit_weighted(_make_base(self.base, self.random_state), X[idx], y[idx],
                                        None, owner)
        self.classes_ = np.array([0, 1])
        return self


# =====================================================================================================
# label-bias correction: Jiang & Nachum 2020
# =====================================================================================================
class JiangNachum(_Scored):
    """Label-bias correction by iterative re-weighting (Jiang & Nachum 2020, "Identifying and
    Correcting Label Bias in Machine Learning", AISTATS; as in the authors' released code).

    The observed labels are taken to be unbiased labels overwritten by a biased labeler; the
    correction re-weights examples and leaves the labels unchanged. With one multiplier
    lambda_k per group k, all starting at 0, repeat ``n_iter`` times:

    1. e_i = -sum_k lambda_k 1[i in k];  w~_i = sigmoid(2 e_i);
       w_i = 1 - w~_i if y_i = 1 else w~_i   (times ``sample_weight`` when given);
    2. fit the base model with weights w; yhat = its 0/1 prediction on the training data;
    3. violation, ``constraint="demographic_parity"``: viol_k = mean(yhat) - mean(yhat | k);
       ``"equal_opportunity"``: the same over the positives only,
       viol_k = mean(yhat | y = 1) - mean(yhat | y = 1, k) (0 for a group without positives);
    4. lambda_k += learning_rate * viol_k.

    A group that the model under-selects gets a positive violation, a growing lambda_k, and so
    more weight on its positives and less on its negatives. The fitted model is the one of the
    last iteration (as in the authors' code). ``sigmoid(2 e)`` is their
    ``exp(e) / (exp(e) + exp(-e))``.

    Parameters
    ----------
    base : str or estimator, default "logistic_regression"
        Its fit must take ``sample_weight``.
    constraint : {"demographic_parity", "equal_opportunity"}
    n_iter : int, default 100
    learning_rate : float, default 1.0
    random_state : int or None

    Attributes
    ----------
    groups_ : ndarray
    multipliers_ : ndarray of shape (n_groups,)
        lambda after the last update.
    violations_ : ndarray of shape (n_iter, n_groups)
        viol_k at each iteration (the last row belongs to the returned model).
    weights_ : ndarray
        The weights the returned model was fitted with.
    estimator_ : estimator
    """

    def __init__(self, base: Any = "logistic_regression", constraint: str = "demographic_parity",
                 n_iter: int = 100, learning_rate: float = 1.0, random_state: int | None = None):
        self.base = base
        self.constraint = constraint
        self.n_iter = n_iter
        self.learning_rate = learning_rate
        self.random_state = random_state

    def _checks(self):
        it = self.n_iter
        return [*super()._checks(),
                ("constraint", self.constraint in ("demographic_parity", "equal_opportunity"),
                 "one of 'demographic_parity', 'equal_opportunity'"),
                ("n_iter", _is_int(it, 1),
                 "an int >= 1"),
                ("learning_rate", _is_number(self.learning_rate) and self.learning_rate > 0,
                 "a number > 0")]

    @staticmethod
    def debias_weights(y: np.ndarray, groups: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
        """w_i of step 1 for labels ``y``, group codes ``groups`` and ``multipliers`` (lambda)."""
        e = -np.asarray(multipliers, dtype=np.float64)[groups]
        w_tilde = expit(2.0 * e)
        return np.where(np.asarray(y) > 0, 1.0 - w_tilde, w_tilde)

    def fit(self, X, y, sample_weight=None, sensitive_features=None):
        """Run the re-weighting iterations and keep the last model."""
        self._validate_params()
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        owner = type(self).__name__
        y = _check_binary(y, n, owner)
        self.groups_, a = _encode_groups(sensitive_features, n, owner)
        w0 = None if sample_weight is None else _weights_or_ones(sample_weight, n, owner)
        G = self.groups_.shape[0]
        lam = np.zeros(G)
        rows = y > 0 if self.constraint == "equal_opportunity" else np.ones(n, dtype=bool)
        count = np.bincount(a[rows], minlength=G).astype(np.float64)
        history = np.empty((int(self.n_iter), G))
        est = None
        for it in range(int(self.n_iter)):
            w = self.debias_weights(y, a, lam)
            if w0 is not None:
                w = w * w0
            est = _fit_weighted(_make_base(self.base, self.random_state), X, y, w, owner)
            yhat = _positive_score(est, X) >= 0.5
            overall = yhat[rows].mean() if rows.any() else 0.0
            with np.errstate(invalid="ignore", divide="ignore"):
                by_group = np.bincount(a[rows], weights=yhat[rows], minlength=G) / count
            viol = np.where(count > 0, overall - by_group, 0.0)
            history[it] = viol
            self.weights_ = w
            lam = lam + float(self.learning_rate) * viol
        self.multipliers_ = lam
        self.violations_ = history
        self.estimator_ = est
        self.classes_ = np.array([0, 1])
        return self


# =====================================================================================================
# post-processing: per-group thresholds (Hardt, Price & Srebro 2016)
# =====================================================================================================
def _weighted_curve(s: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Thresholds in descending order with the weighted TP and FP at ``score >= threshold``.

    Entry 0 is just above the largest score (nothing predicted positive); entry i > 0 is the
    i-th highest distinct score. Rows tied at a score fall on the same side.
    """
    order = np.argsort(-s, kind="stable")
    ss, yy, ww = s[order], y[order], w[order]
    tps = np.cumsum(ww * yy)
    fps = np.cumsum(ww * (1 - yy))
    last = np.r_[np.flatnonzero(np.diff(ss)), ss.size - 1] if ss.size else np.array([], int)
    top = np.nextafter(ss[0], np.inf) if ss.size else 0.5
    return np.r_[top, ss[last]], np.r_[0.0, tps[last]], np.r_[0.0, fps[last]]


def _upper_hull(fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    """Indices of the upper-left convex hull of ROC points sorted by (fpr, tpr) ascending."""
    hull: list[int] = []
    for i in range(fpr.shape[0]):
        if hull and fpr[i] == fpr[hull[-1]]:
            hull.pop()  # same fpr, tpr not lower (the curve is non-decreasing): keep the later
        while len(hull) >= 2:
            o, m = hull[-2], hull[-1]
            cross = (fpr[m] - fpr[o]) * (tpr[i] - tpr[o]) - (tpr[m] - tpr[o]) * (fpr[i] - fpr[o])
            if cross >= 0:  # m lies on or below the chord o -> i
                hull.pop()
            else:
                break
        hull.append(i)
    return np.asarray(hull, dtype=np.int64)


class GroupThresholds(_Mitigation):
    """Per-group thresholds on a base model's scores (Hardt, Price & Srebro 2016, "Equality of
    Opportunity in Supervised Learning", NeurIPS).

    The base model is fitted on the training data (minus a ``holdout`` share, if given); the
    thresholds are then chosen on the scores of the training data (or of the holdout), with
    the labels of that data, to maximise accuracy subject to the constraint:

    * ``"equal_opportunity"``: equal true-positive rates. For a target TPR t, group g's
      threshold is the highest one whose TPR_g >= t; t is ``target`` if given, otherwise the
      achievable TPR value that maximises the (weighted) accuracy of the resulting rule.
      Deterministic; rates are equal up to the granularity of the scores. With ``tolerance``
      > 0, group g's threshold is instead the most accurate (on the threshold data) among those
      with |TPR_g - t| <= tolerance (the highest with TPR_g >= t when none is that close), and t
      runs over a grid of 401 values in [0, 1]: a relaxed constraint, which keeps a small group
      from chasing the sampling noise of the others' rates.
    * ``"demographic_parity"``: the same with selection rates instead of TPRs.
    * ``"equalized_odds"``: equal TPR *and* FPR, which in general needs randomisation (Hardt et
      al., section 4): for each common FPR f, the best common TPR is min_g of the upper convex
      hull of group g's ROC curve at f; f maximises accuracy. Each group reaches (f, TPR) by
      mixing its two hull thresholds around f and, to come down to the common TPR, the coin
      "positive with probability f". ``predict`` then draws from ``random_state``.

    Prediction needs the group: ``predict(X, sensitive_features=..., random_state=None)`` gives
    0/1; the runner treats the model like fairlearn's ThresholdOptimizer (hard predictions, no
    AUROC). A group unseen in fit, or without positives (negatives) in the threshold data, uses
    the base model's 0.5 threshold.

    Parameters
    ----------
    base : str or estimator, default "logistic_regression"
    constraint : {"equal_opportunity", "equalized_odds", "demographic_parity"}
    target : float in [0, 1] or None
        Target TPR (selection rate for demographic parity); None chooses it. Not used for
        equalized odds.
    tolerance : float in [0, 1), default 0
        Allowed distance of each group's rate from the common target (equal opportunity and
        demographic parity).
    holdout : float in [0, 1), default 0
        Share of each (group, label) cell held out of the base model's fit to choose thresholds.
    random_state : int or None
        Seed of the holdout split, of a base given by name, and of randomised predictions when
        ``predict`` gets none.

    Attributes
    ----------
    groups_ : ndarray
    thresholds_ : dict
        Group value -> threshold (equal opportunity, demographic parity).
    target_ : float
        The common TPR (selection rate) reached on the threshold data; for equalized odds the
        common TPR, with ``fpr_`` the common FPR.
    mixing_ : dict
        Equalized odds: group value -> (threshold_high, threshold_low, q, w, f), see ``predict``.
    estimator_ : estimator
    """

    def __init__(self, base: Any = "logistic_regression", constraint: str = "equal_opportunity",
                 target: float | None = None, tolerance: float = 0.0, holdout: float = 0.0,
                 random_state: int | None = None):
        self.base = base
        self.constraint = constraint
        self.target = target
        self.tolerance = tolerance
        self.holdout = holdout
        self.random_state = random_state

    _CONSTRAINTS = ("equal_opportunity", "equalized_odds", "demographic_parity")

    def _checks(self):
        t, h = self.target, self.holdout
        return [*super()._checks(),
                ("constraint", self.constraint in self._CONSTRAINTS,
                 "one of " + ", ".join(f"'{c}'" for c in self._CONSTRAINTS)),
                ("target", t is None or (_is_number(t) and 0 <= t <= 1), "a number in [0, 1] or None"),
                ("tolerance", _is_number(self.tolerance) and 0 <= self.tolerance < 1,
                 "a number in [0, 1)"),
                ("holdout", _is_number(h) and 0 <= h < 1, "a number in [0, 1)")]

    def fit(self, X, y, sample_weight=None, sensitive_features=None):
        """Fit the base model, then choose the group thresholds."""
        self._validate_params()
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        owner = type(self).__name__
        y = _check_binary(y, n, owner)
        self.groups_, a = _encode_groups(sensitive_features, n, owner)
        w = _weights_or_ones(sample_weight, n, owner)
        fit_rows = np.ones(n, dtype=bool)
        if self.holdout > 0:
            rng = np.random.default_rng(self.random_state)
            for c in np.unique(a * 2 + y):
                rows = np.flatnonzero(a * 2 + y == c)
                k = round(self.holdout * rows.size)
                fit_rows[rng.permutation(rows)[:k]] = False
        thr_rows = ~fit_rows if self.holdout > 0 else fit_rows
        self.estimator_ = _fit_weighted(
            _make_base(self.base, self.random_state), X[fit_rows], y[fit_rows],
            None if sample_weight is None else w[fit_rows], owner)
        s = _positive_score(self.estimator_, X[thr_rows])
        yt, at, wt = y[thr_rows], a[thr_rows], w[thr_rows]
        curves = {}
        for g in range(self.groups_.shape[0]):
            m = at == g
            thr, tp, fp = _weighted_curve(s[m], yt[m], wt[m])
            P, N = tp[-1], fp[-1]
            # the rates the constraint needs must be defined in the group (else: threshold 0.5)
            defined = {"equal_opportunity": P > 0, "equalized_odds": P > 0 and N > 0,
                       "demographic_parity": P + N > 0}[self.constraint]
            if m.any() and defined:
                curves[g] = (thr, tp, fp, P, N)
        if self.constraint == "equalized_odds":
            self._fit_equalized_odds(curves)
        else:
            self._fit_single_rate(curves)
        self.classes_ = np.array([0, 1])
        return self

    def _fit_single_rate(self, curves) -> None:
        def stat(c):
            _thr, tp, fp, P, N = c
            return tp / P if self.constraint == "equal_opportunity" else (tp + fp) / (P + N)

        tol = float(self.tolerance)
        if self.target is not None:
            candidates = np.array([float(self.target)])
        elif tol > 0:
            candidates = np.linspace(0.0, 1.0, 401)
        else:
            candidates = np.unique(np.concatenate([stat(c) for c in curves.values()] or [[0.5]]))
        correct = np.zeros(candidates.shape[0])
        picks = {}
        for g, c in curves.items():
            _thr, tp, fp, _P, N = c
            st = stat(c)
            # the highest threshold whose rate reaches t (rates rise along the array)
            idx = np.minimum(np.searchsorted(st, candidates - 1e-12, side="left"), st.size - 1)
            if tol > 0:
                right = tp + (N - fp)
                lo = np.searchsorted(st, candidates - tol - 1e-12, side="left")
                hi = np.searchsorted(st, candidates + tol + 1e-12, side="right")
                for i in np.flatnonzero(lo < hi):
                    idx[i] = lo[i] + int(np.argmax(right[lo[i]:hi[i]]))
            picks[g] = idx
            correct += tp[idx] + (N - fp[idx])
        best = int(np.argmax(correct))
        self.target_ = float(candidates[best])
        self.thresholds_ = {self.groups_[g].item(): float(curves[g][0][picks[g][best]])
                            for g in curves}

    def _fit_equalized_odds(self, curves) -> None:
        hulls = {}
        for g, (thr, tp, fp, P, N) in curves.items():
            fpr, tpr = fp / N, tp / P
            h = _upper_hull(fpr, tpr)
            hulls[g] = (fpr[h], tpr[h], thr[h], P, N)
        if not hulls:
            self.fpr_, self.target_, self.mixing_ = np.nan, np.nan, {}
            return
        grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, 1001),
                                         *[hf for hf, *_ in hulls.values()]]))
        common = np.min([np.interp(grid, hf, ht) for hf, ht, *_ in hulls.values()], axis=0)
        P_all = sum(h[3] for h in hulls.values())
        N_all = sum(h[4] for h in hulls.values())
        accuracy = P_all * common + N_all * (1.0 - grid)
        best = int(np.argmax(accuracy))
        f, t = float(grid[best]), float(common[best])
        self.fpr_, self.target_ = f, t
        self.mixing_ = {}
        for g, (hf, ht, hthr, _P, _N) in hulls.items():
            j = int(np.clip(np.searchsorted(hf, f, side="right") - 1, 0, hf.size - 2))
            span = hf[j + 1] - hf[j]
            q = (f - hf[j]) / span if span > 0 else 0.0  # probability of the lower threshold
            top = float(np.interp(f, hf, ht))
            mix = (t - f) / (top - f) if top - f > 1e-12 else 1.0
            self.mixing_[self.groups_[g].item()] = (float(hthr[j]), float(hthr[j + 1]),
                                                    float(q), float(min(max(mix, 0.0), 1.0)), f)

    def predict(self, X, sensitive_features=None, random_state=None):
        """0/1 predictions with the threshold (or randomised rule) of each row's group.

        For equalized odds a row of group g is predicted, with probability w, by the hull rule
        (score >= threshold_low with probability q, else score >= threshold_high) and otherwise
        positive with probability f; draws come from ``random_state`` (default: the estimator's).
        """
        self._check_fitted("predict")
        X = np.asarray(X, dtype=np.float64)
        s = _positive_score(self.estimator_, X)
        codes = _lookup_groups(self.groups_, sensitive_features, X.shape[0], type(self).__name__)
        out = (s >= 0.5).astype(np.int64)
        if self.constraint != "equalized_odds":
            for value, thr in self.thresholds_.items():
                m = codes == int(np.searchsorted(self.groups_, value))
                out[m] = (s[m] >= thr).astype(np.int64)
            return out
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        u = rng.random((3, X.shape[0]))
        for value, (t_hi, t_lo, q, w, f) in self.mixing_.items():
            m = codes == int(np.searchsorted(self.groups_, value))
            hull = np.where(u[1, m] < q, s[m] >= t_lo, s[m] >= t_hi)
            out[m] = np.where(u[0, m] < w, hull, u[2, m] < f).astype(np.int64)
        return out



# =====================================================================================================
# fairlearn (optional extra)
# =====================================================================================================
class FairlearnExponentiatedGradient(_Scored):
    """fairlearn's ``ExponentiatedGradient`` reduction (Agarwal et al. 2018, "A Reductions
    Approach to Fair Classification", ICML) over a base model, by short name.

    ``constraints`` names the moment: ``equalized_odds``, ``true_positive_rate_parity`` (equal
    opportunity), ``demographic_parity``, ``false_positive_rate_parity``, ``error_rate_parity``.
    The score is the probability that the randomised classifier predicts 1
    (``_pmf_predict(X)[:, 1]``). Sample weights reach the base model's final step through
    ``sample_weight_name``. Needs fairlearn (optional extra).

    Parameters
    ----------
    base : str or estimator, default "logistic_regression"
    constraints : str, default "equalized_odds"
    eps, max_iter, nu, eta0 :
        As in fairlearn (``eps`` the allowed constraint violation).
    random_state : int or None
    """

    def __init__(self, base: Any = "logistic_regression", constraints: str = "equalized_odds",
                 eps: float = 0.01, max_iter: int = 50, nu: float | None = None,
                 eta0: float = 2.0, random_state: int | None = None):
        self.base = base
        self.constraints = constraints
        self.eps = eps
        self.max_iter = max_iter
        self.nu = nu
        self.eta0 = eta0
        self.random_state = random_state

    def _checks(self):
        _fairlearn("reductions", "exponentiated_gradient")
        mi = self.max_iter
        return [*super()._checks(),
                ("constraints", self.constraints in FAIRLEARN_CONSTRAINTS,
                 "one of " + ", ".join(f"'{c}'" for c in FAIRLEARN_CONSTRAINTS)),
                ("eps", _is_number(self.eps) and self.eps > 0, "a number > 0"),
                ("max_iter", _is_int(mi, 1),
                 "an int >= 1")]

    def fit(self, X, y, sensitive_features=None):
        """Run the reduction (fairlearn does not take sample weights here)."""
        self._validate_params()
        reductions = _fairlearn("reductions", "exponentiated_gradient")
        X = np.asarray(X, dtype=np.float64)
        owner = type(self).__name__
        y = _check_binary(y, X.shape[0], owner)
        _encode_groups(sensitive_features, X.shape[0], owner)
        base = _make_base(self.base, self.random_state)
        key = _sample_weight_key(base) or "sample_weight"
        self.estimator_ = reductions.ExponentiatedGradient(
            base, getattr(reductions, FAIRLEARN_CONSTRAINTS[self.constraints])(),
            eps=self.eps, max_iter=self.max_iter, nu=self.nu, eta0=self.eta0,
            sample_weight_name=key)
        self.estimator_.fit(X, y, sensitive_features=np.asarray(sensitive_features))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        """[1 - p, p] with p the probability that the randomised classifier predicts 1."""
        self._check_fitted("predict_proba")
        p = np.clip(np.asarray(self.estimator_._pmf_predict(np.asarray(X, dtype=np.float64)))[:, 1],
                    0.0, 1.0)
        return np.column_stack([1.0 - p, p])


_TO_CONSTRAINTS = ("demographic_parity", "equalized_odds", "false_negative_rate_parity",
                   "false_positive_rate_parity", "selection_rate_parity",
                   "true_negative_rate_parity", "true_positive_rate_parity")


class FairlearnThresholdOptimizer(_Mitigation):
    """fairlearn's ``ThresholdOptimizer`` (Hardt, Price & Srebro 2016) over a base model.

    A post-processor: ``predict(X, sensitive_features=..., random_state=None)`` gives randomised
    0/1 predictions. ``constraints`` as in fairlearn (``true_positive_rate_parity`` is equal
    opportunity). Needs fairlearn (optional extra).

    Parameters
    ----------
    base : str or estimator, default "logistic_regression"
    constraints : str, default "equalized_odds"
    objective : str, default "accuracy_score"
    grid_size : int, default 1000
    random_state : int or None
    """

    def __init__(self, base: Any = "logistic_regression", constraints: str = "equalized_odds",
                 objective: str = "accuracy_score", grid_size: int = 1000,
                 random_state: int | None = None):
        self.base = base
        self.constraints = constraints
        self.objective = objective
        self.grid_size = grid_size
        self.random_state = random_state

    def _checks(self):
        _fairlearn("postprocessing", "threshold_optimizer")
        gs = self.grid_size
        return [*super()._checks(),
                ("constraints", self.constraints in _TO_CONSTRAINTS,
                 "one of " + ", ".join(f"'{c}'" for c in _TO_CONSTRAINTS)),
                ("grid_size", _is_int(gs, 2),
                 "an int >= 2")]

    def fit(self, X, y, sample_weight=None, sensitive_features=None):
        """Fit the base model (with ``sample_weight``, if given) and the group thresholds."""
        self._validate_params()
        post = _fairlearn("postprocessing", "threshold_optimizer")
        X = np.asarray(X, dtype=np.float64)
        owner = type(self).__name__
        y = _check_binary(y, X.shape[0], owner)
        _encode_groups(sensitive_features, X.shape[0], owner)
        base = _make_base(self.base, self.random_state)
        kwargs = {}
        if sample_weight is not None:
            key = _sample_weight_key(base)
            if key is None:
                raise ModelError(_ERR_NO_WEIGHTS.format(owner=owner, base=type(base).__name__))
            kwargs[key] = _weights_or_ones(sample_weight, X.shape[0], owner)
        self.estimator_ = post.ThresholdOptimizer(
            estimator=base, constraints=self.constraints, objective=self.objective,
            grid_size=self.grid_size, predict_method="auto")
        self.estimator_.fit(X, y, sensitive_features=np.asarray(sensitive_features), **kwargs)
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X, sensitive_features=None, random_state=None):
        """Randomised 0/1 predictions (seeded by ``random_state``, default the estimator's)."""
        self._check_fitted("predict")
        if sensitive_features is None:
            raise ValueError(f"{type(self).__name__}.predict: sensitive_features is required")
        rs = self.random_state if random_state is None else random_state
        return np.asarray(self.estimator_.predict(np.asarray(X, dtype=np.float64),
                                                  sensitive_features=np.asarray(sensitive_features),
                                                  random_state=rs), dtype=np.int64)


#: Short names usable as ``model:`` in ``experiment.models``, mapped to their classes.
MITIGATIONS: dict[str, type] = {
    "exponentiated_gradient": FairlearnExponentiatedGradient,
    "group_resampling": GroupResampling,
    "group_thresholds": GroupThresholds,
    "jiang_nachum": JiangNachum,
    "reweighing": Reweighing,
    "threshold_optimizer": FairlearnThresholdOptimizer,
}
