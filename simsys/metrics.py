"""Metrics of a binary classifier, per group: performance, calibration, disparities, amplification.

This module owns every number simsys reports about a fitted model's predictions:

- :func:`binary_metrics`: per-group and overall rates (TPR, FPR, PPV, ...), AUROC, Brier score, ECE
  and calibration-in-the-large, each NaN where undefined, with the reason recorded;
- fairlearn-identical aggregate disparities (:func:`demographic_parity_difference`,
  :func:`equalized_odds_difference`, ...), the underdiagnosis gap of Seyyed-Kalantari et al. (2021)
  and generic NaN-aware :func:`difference` / :func:`ratio` helpers;
- :func:`directional_bias_amplification` (Wang & Russakovsky 2021, attribute -> task);
- a compiled bootstrap (:func:`bootstrap_metrics`, :func:`bootstrap_interval`).

Inputs are NumPy arrays: ``y_true`` and ``y_pred`` hold 0/1 (any int, float or bool dtype),
``y_score`` probabilities in [0, 1], ``groups`` integer codes ``0 .. n_groups - 1``. Per-group
results are float64 arrays of length ``n_groups + 1`` whose last entry is the overall value.
pandas appears only in :func:`metrics_table`, which turns results into a tidy table. The heavy
lifting is in :mod:`simsys.kernels.metric_kernels`; the formulas and their sources are written out
in ``docs/metrics.md``.

Invalid inputs raise ``ValueError`` (``TypeError`` for a wrong type) whose text names the argument,
says what was found and what is allowed; the texts are the module constants ``_ERR_*``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from simsys.kernels.metric_kernels import (
    A_POS,
    A_PRED,
    A_W,
    METRIC_NAMES,
    N_ACC,
    _draw_counts,
    _evaluate_metrics,
    _resample_metrics,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BOOTSTRAP_METRICS",
    "ECE_BINS",
    "METRIC_NAMES",
    "binary_metrics",
    "bootstrap_counts",
    "bootstrap_interval",
    "bootstrap_metrics",
    "confusion_counts",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "difference",
    "difference_to_reference",
    "directional_bias_amplification",
    "equal_opportunity_difference",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "metrics_table",
    "ratio",
    "undefined_reason",
    "underdiagnosis_gap",
    "underdiagnosis_rate",
]

#: The disparity and tolerance of the "fair against the recorded labels but not against the truth"
#: check when ``experiment.method_checks`` does not set them (``docs/metrics.md``).
DEFAULT_CHECK_METRIC = "equal_opportunity_difference"
DEFAULT_CHECK_TOLERANCE = 0.05

#: Number of equal-width calibration bins on [0, 1] for the ECE (Guo et al. 2017; Hall et al. 2022).
ECE_BINS = 15
_ECE_EDGES = np.linspace(0.0, 1.0, ECE_BINS + 1)

#: Every metric the bootstrap supports (all of :data:`METRIC_NAMES`).
BOOTSTRAP_METRICS = METRIC_NAMES
_SCORE_METRICS = frozenset({"auroc", "brier", "ece", "calibration_in_the_large"})
_CODE = {name: code for code, name in enumerate(METRIC_NAMES)}

Method = Literal["between_groups", "to_overall"]
Agg = Literal["worst_case", "mean"]
Undefined = Literal["zero", "nan"]

# --- reasons recorded for an undefined (NaN) metric --------------------------------------------------
REASON_EMPTY = "empty group"
REASON_NO_POSITIVES = "no positives in group"
REASON_NO_NEGATIVES = "no negatives in group"
REASON_NO_PRED_POSITIVES = "no predicted positives"
REASON_NO_PRED_NEGATIVES = "no predicted negatives"
REASON_ONE_CLASS = "only one class"
REASON_NO_SCORES = "no scores given"

# --- error texts: where, what was found, what is allowed --------------------------------------------
_ERR_NOT_1D = "{name}: expected a 1-D array, got shape {shape}"
_ERR_EMPTY = "{name}: expected at least one row, got none"
_ERR_LENGTH = "{name}: expected {expected} rows (as many as {ref}), got {got}"
_ERR_NOT_BINARY = "{name}: expected only the values 0 and 1, got {bad!r}"
_ERR_DTYPE = "{name}: expected a bool, integer or float array, got dtype {dtype}"
_ERR_GROUP_DTYPE = "{name}: expected integer group codes, got dtype {dtype}"
_ERR_GROUP_RANGE = "{name}: expected group codes in [0, {hi}], got {bad}"
_ERR_N_GROUPS = "n_groups: expected a positive integer, got {got!r}"
_ERR_SCORE = "y_score: expected finite probabilities in [0, 1], got {bad!r}"
_ERR_METHOD = "method: expected 'between_groups' or 'to_overall', got {got!r}"
_ERR_AGG = "agg: expected 'worst_case' or 'mean', got {got!r}"
_ERR_UNDEFINED = "undefined: expected 'zero' or 'nan', got {got!r}"
_ERR_METRIC = "metrics: unknown metric {got!r}; allowed: {allowed}"
_ERR_METRICS_EMPTY = "metrics: expected at least one metric name, got none"
_ERR_NEEDS_SCORE = "metrics: {got!r} needs y_score, got y_score=None"
_ERR_SEED = "seed: expected an int >= 0 or a numpy.random.SeedSequence, got {got!r}"
_ERR_N_RESAMPLES = "n_resamples: expected a positive integer, got {got!r}"
_ERR_LEVEL = "level: expected a number in (0, 1), got {got!r}"
_ERR_SAMPLES = "samples: expected an array with a leading resample axis, got shape {shape}"
_ERR_REFERENCE = "reference_index: expected an integer index into {n} values, got {got!r}"
_ERR_UNKNOWN = "metric: unknown metric {got!r}; allowed: {allowed}"
_ERR_VALUES = "values: expected a 1-D array of numbers, got shape {shape}"


# =====================================================================================================
# input conversion
# =====================================================================================================
def _as_1d(name: str, x: object, n: int | None, ref: str = "y_true") -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(_ERR_NOT_1D.format(name=name, shape=arr.shape))
    if n is None:
        if arr.shape[0] == 0:
            raise ValueError(_ERR_EMPTY.format(name=name))
    elif arr.shape[0] != n:
        raise ValueError(_ERR_LENGTH.format(name=name, expected=n, ref=ref, got=arr.shape[0]))
    return arr


def _as_binary(name: str, x: object, n: int | None = None, ref: str = "y_true") -> np.ndarray:
    """A 0/1 array of any bool/int/float dtype as C-contiguous float64 (what the kernels read)."""
    arr = _as_1d(name, x, n, ref)
    if arr.dtype.kind not in "biuf":
        raise TypeError(_ERR_DTYPE.format(name=name, dtype=arr.dtype))
    out = np.ascontiguousarray(arr, dtype=np.float64)
    bad = (out != 0.0) & (out != 1.0)  # also catches NaN
    if bad.any():
        raise ValueError(_ERR_NOT_BINARY.format(name=name, bad=arr[np.argmax(bad)].item()))
    return out


def _as_codes(name: str, x: object, n: int | None = None, ref: str = "y_true",
              n_groups: int | None = None) -> np.ndarray:
    """Integer group codes as C-contiguous int64, checked against ``[0, n_groups - 1]``."""
    arr = _as_1d(name, x, n, ref)
    if arr.dtype.kind not in "iu":
        raise TypeError(_ERR_GROUP_DTYPE.format(name=name, dtype=arr.dtype))
    out = np.ascontiguousarray(arr, dtype=np.int64)
    lo, hi = (int(out.min()), int(out.max())) if out.size else (0, 0)
    limit = (n_groups - 1) if n_groups is not None else np.iinfo(np.int64).max
    if lo < 0 or hi > limit:
        bad = lo if lo < 0 else hi
        shown = limit if n_groups is not None else "inf"
        raise ValueError(_ERR_GROUP_RANGE.format(name=name, hi=shown, bad=bad))
    return out


def _as_scores(y_score: object, n: int) -> np.ndarray:
    arr = _as_1d("y_score", y_score, n)
    if arr.dtype.kind not in "biuf":
        raise TypeError(_ERR_DTYPE.format(name="y_score", dtype=arr.dtype))
    out = np.ascontiguousarray(arr, dtype=np.float64)
    bad = ~((out >= 0.0) & (out <= 1.0))  # NaN fails both comparisons
    if bad.any():
        raise ValueError(_ERR_SCORE.format(bad=out[np.argmax(bad)].item()))
    return out


def _check_n_groups(n_groups: object) -> int:
    if isinstance(n_groups, bool) or not isinstance(n_groups, numbers.Integral) or n_groups < 1:
        raise ValueError(_ERR_N_GROUPS.format(got=n_groups))
    return int(n_groups)


def _check_method(method: str) -> None:
    if method not in ("between_groups", "to_overall"):
        raise ValueError(_ERR_METHOD.format(got=method))


def _check_undefined(undefined: str) -> None:
    if undefined not in ("zero", "nan"):
        raise ValueError(_ERR_UNDEFINED.format(got=undefined))


# =====================================================================================================
# per-group metrics
# =====================================================================================================
class _OrderCache:
    """The sort orders and bins of the last (scores, groups) pair, reused when the same arrays come
    again: the runner scores one model's predictions against the truth and then against the
    observed labels, and the sorts (two thirds of the cost of :func:`binary_metrics`) depend only
    on the scores and the groups.

    Keyed by the identity of the arrays passed, which stay referenced here (so an id cannot be
    reused), and used only for read-only arrays (``a.flags.writeable = False``): their contents
    cannot have changed between two calls.
    """

    def __init__(self):
        self._entry = None  # (scores, groups, n_groups, value), replaced as a whole (thread-safe)

    def get(self, scores, groups, n_groups):
        e = self._entry
        if (e is not None and e[0] is scores and e[1] is groups and e[2] == n_groups
                and isinstance(scores, np.ndarray) and not scores.flags.writeable
                and isinstance(groups, np.ndarray) and not groups.flags.writeable):
            return e[3]
        return None

    def put(self, scores, groups, n_groups, value):
        self._entry = (scores, groups, n_groups, value)


_ORDER_CACHE = _OrderCache()


class _Prepared:
    """Validated, converted and (when needed) sorted arrays in the layout the kernels read."""

    def __init__(self, y_true, y_pred, y_score, groups, n_groups, *, need_auc, need_bins):
        self.y = _as_binary("y_true", y_true)
        n = self.y.shape[0]
        self.p = _as_binary("y_pred", y_pred, n)
        self.has_score = y_score is not None
        self.s = _as_scores(y_score, n) if self.has_score else np.zeros(n)
        self.n_groups = _check_n_groups(n_groups)
        self.g = _as_codes("groups", groups, n, n_groups=self.n_groups)
        need_auc = need_auc and self.has_score
        need_bins = need_bins and self.has_score
        self.need_auc, self.need_bins = bool(need_auc), bool(need_bins)
        empty_f, empty_i = np.empty(0), np.empty(0, dtype=np.int64)
        cached = _ORDER_CACHE.get(y_score, groups, self.n_groups) if need_auc or need_bins else None
        if need_bins:
            # Bins (e_b, e_b+1], the first closed at 0: the convention of Guo et al.'s released code.
            self.bins = (cached[0] if cached else
                         np.searchsorted(_ECE_EDGES[1:-1], self.s, side="left").astype(np.int64))
        else:
            self.bins = empty_i
        if need_auc:
            if cached:
                self.order_by_score, self.order_by_group, self.bounds = cached[1:]
            else:
                # one float sort; the by-group order is then a stable sort of small integer codes
                # (a radix sort in NumPy), equal to np.lexsort((s, g)) at a fraction of its cost
                self.order_by_score = np.argsort(self.s, kind="stable").astype(np.int64)
                small = np.int16 if self.n_groups < np.iinfo(np.int16).max else np.int64
                by_group = np.argsort(self.g[self.order_by_score].astype(small), kind="stable")
                self.order_by_group = self.order_by_score[by_group]
                self.bounds = np.searchsorted(self.g[self.order_by_group],
                                              np.arange(self.n_groups + 1)).astype(np.int64)
                if need_bins:
                    _ORDER_CACHE.put(y_score, groups, self.n_groups,
                                     (self.bins, self.order_by_score, self.order_by_group, self.bounds))
            self.y_by_group = self.y[self.order_by_group]
            self.s_by_group = self.s[self.order_by_group]
            self.y_by_score = self.y[self.order_by_score]
            self.s_by_score = self.s[self.order_by_score]
        else:
            self.order_by_group = self.order_by_score = empty_i
            self.bounds = np.zeros(self.n_groups + 1, dtype=np.int64)
            self.y_by_group = self.s_by_group = self.y_by_score = self.s_by_score = empty_f

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    def kernel_arrays(self) -> tuple:
        return (self.y, self.p, self.s, self.g, self.bins,
                self.y_by_group, self.s_by_group, self.order_by_group, self.bounds,
                self.y_by_score, self.s_by_score, self.order_by_score)


def undefined_reason(metric: str, *, n: float, n_pos: float, n_pred_pos: float,
                     has_score: bool = True) -> str | None:
    """Why ``metric`` is undefined (NaN) for a group with these counts, or None if it is defined.

    Parameters
    ----------
    metric : str
        One of :data:`METRIC_NAMES`.
    n, n_pos, n_pred_pos : float
        Rows, true positives (``y_true == 1``) and predicted positives (``y_pred == 1``) in the
        group (weighted counts are fine).
    has_score : bool, default True
        Whether scores were given; the score-based metrics are undefined without them.

    Returns
    -------
    str or None
        One of ``"empty group"``, ``"no positives in group"``, ``"no negatives in group"``,
        ``"no predicted positives"``, ``"no predicted negatives"``, ``"only one class"``,
        ``"no scores given"``; None when the metric is defined.
    """
    if metric not in _CODE:
        raise ValueError(_ERR_UNKNOWN.format(got=metric, allowed=", ".join(METRIC_NAMES)))
    if metric == "n":
        return None
    if metric in _SCORE_METRICS and not has_score:
        return REASON_NO_SCORES
    if n == 0:
        return REASON_EMPTY
    n_neg, n_pred_neg = n - n_pos, n - n_pred_pos
    if metric in ("tpr", "fnr") and n_pos == 0:
        return REASON_NO_POSITIVES
    if metric in ("fpr", "tnr") and n_neg == 0:
        return REASON_NO_NEGATIVES
    if metric == "ppv" and n_pred_pos == 0:
        return REASON_NO_PRED_POSITIVES
    if metric == "npv" and n_pred_neg == 0:
        return REASON_NO_PRED_NEGATIVES
    if metric == "auroc" and (n_pos == 0 or n_neg == 0):
        return REASON_ONE_CLASS
    return None


def binary_metrics(y_true, y_pred, y_score, groups, n_groups, *, with_reasons: bool = False):
    """Performance and calibration metrics of a binary classifier, per group and overall.

    For group ``g`` with n_g rows, TP/FP/TN/FN its confusion counts and s_i the scores:

    - ``n`` = n_g; ``prevalence`` = mean(y); ``selection_rate`` = mean(yhat);
    - ``tpr`` = TP/(TP+FN), ``fnr`` = FN/(TP+FN) (= the underdiagnosis rate when "sick" is the
      positive class, Seyyed-Kalantari et al. 2021), ``fpr`` = FP/(FP+TN), ``tnr`` = TN/(FP+TN),
      ``ppv`` = TP/(TP+FP), ``npv`` = TN/(TN+FN), ``accuracy`` = (TP+TN)/n_g;
    - ``auroc``: the Mann-Whitney statistic with ties counted one half, equal to
      ``sklearn.metrics.roc_auc_score``;
    - ``brier`` = mean((s - y)^2) (Brier 1950);
    - ``ece`` = sum_b (n_b/n_g) |mean(y_b) - mean(s_b)| over 15 equal-width bins of [0, 1]
      (Guo et al. 2017, as used by Hall et al. 2022), bins (b/15, (b+1)/15] with 0 in the first;
    - ``calibration_in_the_large`` = mean(s) - mean(y) (positive: over-predicts risk).

    A metric whose denominator is empty is NaN, never 0 (unlike fairlearn's rates, which sklearn
    turns into 0; the fairlearn-identical aggregates below reproduce that instead).

    Parameters
    ----------
    y_true, y_pred : array_like, shape (n,)
        True and predicted labels, 0/1 of any bool, integer or float dtype.
    y_score : array_like of shape (n,) or None
        Predicted probabilities of the positive class, in [0, 1]. If None, the score-based
        metrics (auroc, brier, ece, calibration_in_the_large) are NaN ("no scores given").
    groups : array_like of int, shape (n,)
        Group codes in ``0 .. n_groups - 1``.
    n_groups : int
        Number of groups; groups without rows get NaN ("empty group") and n = 0.
    with_reasons : bool, default False
        Also return why each NaN is NaN.

    Returns
    -------
    values : dict[str, numpy.ndarray]
        Metric name (in :data:`METRIC_NAMES` order) -> float64 array of shape (n_groups + 1,);
        the last entry is the overall value.
    reasons : dict[str, tuple[str | None, ...]]
        Only with ``with_reasons``: for each metric and entry, the reason it is undefined (see
        :func:`undefined_reason`) or None.
    """
    prep = _Prepared(y_true, y_pred, y_score, groups, n_groups, need_auc=True, need_bins=True)
    g1 = prep.n_groups + 1
    codes = np.arange(len(METRIC_NAMES), dtype=np.int64)
    out = np.empty((codes.shape[0], g1))
    acc = np.empty((g1, N_ACC))
    ybin, sbin = np.empty((g1, ECE_BINS)), np.empty((g1, ECE_BINS))
    auc = np.empty(g1)
    _evaluate_metrics(*prep.kernel_arrays(), np.ones(prep.n), prep.n_groups, codes,
                      prep.need_auc, prep.need_bins, acc, ybin, sbin, auc, out)
    values = {name: out[code].copy() for name, code in _CODE.items()}
    if not prep.has_score:
        for name in _SCORE_METRICS:
            values[name][:] = np.nan
    if not with_reasons:
        return values
    reasons = {
        name: tuple(
            undefined_reason(name, n=acc[g, A_W], n_pos=acc[g, A_POS], n_pred_pos=acc[g, A_PRED],
                             has_score=prep.has_score)
            for g in range(g1)
        )
        for name in METRIC_NAMES
    }
    return values, reasons


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """TP, FP, FN, TN per group and overall: float64 array of shape (4, n_groups + 1)."""
    y = y_true.astype(np.int64)
    p = y_pred.astype(np.int64)
    cell = groups.astype(np.int64) * 4 + (1 - y) * 2 + (1 - p)  # tp=0, fn=1, fp=2, tn=3 within a group
    c = np.bincount(cell, minlength=4 * n_groups).reshape(n_groups, 4).astype(np.float64)
    out = np.empty((4, n_groups + 1))
    out[:, :n_groups] = c[:, [0, 2, 1, 3]].T
    out[:, n_groups] = out[:, :n_groups].sum(axis=1)
    return out


def underdiagnosis_rate(y_true, y_pred, groups, n_groups) -> np.ndarray:
    """Underdiagnosis rate per group and overall: the FNR with "sick" as the positive class.

    Seyyed-Kalantari et al. (2021, Nat Med 27:2176) define it, for the "No Finding" label, as
    P(model says No Finding | actually sick, group g); with ``y_true = 1`` for sick and
    ``y_pred = 1`` for "the model flags disease" this is FN / (TP + FN).

    Parameters
    ----------
    y_true, y_pred : array_like, shape (n,)
        0/1 labels (1 = sick / flagged).
    groups : array_like of int, shape (n,)
        Group codes in ``0 .. n_groups - 1``.
    n_groups : int
        Number of groups.

    Returns
    -------
    numpy.ndarray
        float64, shape (n_groups + 1,), the last entry overall; NaN for a group without sick rows.
    """
    y = _as_binary("y_true", y_true)
    p = _as_binary("y_pred", y_pred, y.shape[0])
    k = _check_n_groups(n_groups)
    g = _as_codes("groups", groups, y.shape[0], n_groups=k)
    pos = np.bincount(g, weights=y, minlength=k)
    fn = np.bincount(g, weights=y * (1.0 - p), minlength=k)
    pos, fn = np.append(pos, y.sum()), np.append(fn, (y * (1.0 - p)).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pos > 0, fn / pos, np.nan)


def metrics_table(values: Mapping[str, np.ndarray],
                  reasons: Mapping[str, Sequence[str | None]] | None = None, *,
                  group_names: Sequence[str] | None = None) -> pd.DataFrame:
    """A tidy (long) table of per-group results: one row per (group, metric).

    Parameters
    ----------
    values : mapping
        As returned by :func:`binary_metrics` (name -> array of n_groups + 1, overall last).
    reasons : mapping, optional
        The matching reasons (``with_reasons=True``); missing means "not recorded" (None).
    group_names : sequence of str, optional
        Names of groups 0 .. n_groups - 1; default their codes as strings. The overall entry is
        named ``"overall"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``group``, ``group_code`` (-1 for overall), ``metric``, ``value``,
        ``undefined_reason``.
    """
    import pandas as pd  # the one place pandas is needed; keep it off the import path otherwise

    rows = []
    for name, arr in values.items():
        arr = np.asarray(arr, dtype=np.float64)
        n_groups = arr.shape[0] - 1
        labels = list(group_names) if group_names is not None else [str(i) for i in range(n_groups)]
        if len(labels) != n_groups:
            raise ValueError(_ERR_LENGTH.format(name="group_names", expected=n_groups,
                                                ref=f"groups in {name!r}", got=len(labels)))
        why = reasons.get(name) if reasons is not None else None
        for j in range(n_groups + 1):
            rows.append({
                "group": labels[j] if j < n_groups else "overall",
                "group_code": j if j < n_groups else -1,
                "metric": name,
                "value": float(arr[j]),
                "undefined_reason": why[j] if why is not None else None,
            })
    return pd.DataFrame(rows, columns=["group", "group_code", "metric", "value",
                                       "undefined_reason"])


# =====================================================================================================
# generic aggregates
# =====================================================================================================
def _values_1d(values: object) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(_ERR_VALUES.format(shape=arr.shape))
    return arr


def _nan_extremes(arr: np.ndarray) -> tuple[float, float]:
    """(min, max) ignoring NaN, as pandas (and so fairlearn) does; (NaN, NaN) when nothing is left."""
    finite = arr[~np.isnan(arr)]
    if finite.size == 0:
        return np.nan, np.nan
    return float(finite.min()), float(finite.max())


def _defined_extremes(arr: np.ndarray) -> tuple[float, float]:
    """(min, max) over the groups where the metric is defined; (NaN, NaN) when fewer than two are.

    A gap needs two groups: with one group undefined (say, no positives) out of two, reporting a
    gap of 0 would claim parity that nobody measured.
    """
    finite = arr[~np.isnan(arr)]
    if finite.size < 2:
        return np.nan, np.nan
    return float(finite.min()), float(finite.max())


def difference(values) -> float:
    """max - min of ``values`` over the groups where it is defined (NaN if fewer than two are).

    Pass the group entries only (``arr[:-1]`` of a :func:`binary_metrics` array), not the overall.
    """
    lo, hi = _defined_extremes(_values_1d(values))
    return hi - lo


def ratio(values) -> float:
    """min / max of ``values`` over the groups where it is defined; NaN if fewer than two are or the
    max is 0."""
    lo, hi = _defined_extremes(_values_1d(values))
    if np.isnan(hi) or hi == 0.0:
        return np.nan
    return lo / hi


def difference_to_reference(values, reference_index: int) -> np.ndarray:
    """Signed differences ``values - values[reference_index]`` (e.g. each group minus White).

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``values``; the reference entry is 0 (NaN if the reference is NaN).
        ``np.nanmax(np.abs(...))`` of it is fairlearn's ``to_overall`` difference when the
        reference is the overall value.
    """
    arr = _values_1d(values)
    if (isinstance(reference_index, bool) or not isinstance(reference_index, numbers.Integral)
            or not -arr.shape[0] <= reference_index < arr.shape[0]):
        raise ValueError(_ERR_REFERENCE.format(n=arr.shape[0], got=reference_index))
    return arr - arr[reference_index]


# =====================================================================================================
# fairlearn-identical disparities
# =====================================================================================================
def _rates_like_fairlearn(metric: str, y_true, y_pred, groups,
                          undefined: str) -> tuple[np.ndarray, float]:
    """Group rates over the groups present, and the overall rate, computed as fairlearn 0.15 does.

    fairlearn's TPR/FPR/FNR come from ``sklearn.metrics.confusion_matrix(normalize="true")``, which
    replaces 0/0 by 0: a group without positives has TPR = FNR = 0, not NaN. ``undefined="zero"``
    reproduces that; ``"nan"`` leaves such a group out of the aggregate instead.
    """
    if metric not in ("selection_rate", "tpr", "fnr", "fpr"):  # pragma: no cover - internal
        raise AssertionError(metric)
    return _all_rates_like_fairlearn(y_true, y_pred, groups, undefined)[metric]


def _all_rates_like_fairlearn(y_true, y_pred, groups, undefined: str) -> dict:
    """Selection rate, TPR, FNR and FPR (by group present, overall) from one pass of counts."""
    p = _as_binary("y_pred", y_pred)
    n = p.shape[0]
    y = _as_binary("y_true", y_true, n, ref="y_pred") if y_true is not None else None
    g = _as_codes("groups", groups, n, ref="y_pred")
    # groups present, in code order (as np.unique would give), found in O(n) without a sort
    present = np.bincount(g) > 0
    inv = (np.cumsum(present) - 1)[g]
    k = int(present.sum())

    def per_group(w: np.ndarray | None) -> np.ndarray:
        if w is None:
            c = np.bincount(inv, minlength=k).astype(np.float64)
            return np.append(c, float(n))
        return np.append(np.bincount(inv, weights=w, minlength=k), w.sum())

    fill = 0.0 if undefined == "zero" else np.nan

    def rate(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, num / den, fill)
        return r[:-1], float(r[-1])

    total, selected = per_group(None), per_group(p)
    out = {"selection_rate": rate(selected, total)}
    if y is not None:
        pos, tp = per_group(y), per_group(y * p)
        neg, fp = total - pos, selected - tp
        out.update(tpr=rate(tp, pos), fnr=rate(pos - tp, pos), fpr=rate(fp, neg))
    return out


def fairness_differences(y_true, y_pred, groups) -> dict[str, float]:
    """The four fairlearn-style differences a run reports, from one pass of counts.

    ``demographic_parity_difference``, ``equal_opportunity_difference``,
    ``equalized_odds_difference`` (worst case) and ``underdiagnosis_gap``, each between groups and
    identical to the function of that name (the runner calls this once per model and label).
    """
    r = _all_rates_like_fairlearn(y_true, y_pred, groups, "zero")
    d = {k: _difference_like_fairlearn(*r[k], "between_groups") for k in r}
    return {
        "demographic_parity_difference": d["selection_rate"],
        "equal_opportunity_difference": d["tpr"],
        "equalized_odds_difference": _combine_like_fairlearn((d["tpr"], d["fpr"]), "worst_case", max),
        "underdiagnosis_gap": d["fnr"],
    }


def _difference_like_fairlearn(by_group: np.ndarray, overall: float, method: str) -> float:
    """``MetricFrame.difference``: max |group - min| (between_groups) or max |group - overall|."""
    if method == "between_groups":
        lo, hi = _nan_extremes(by_group)
        return hi - lo
    gaps = np.abs(by_group - overall)
    return _nan_extremes(gaps)[1]


def _ratio_like_fairlearn(by_group: np.ndarray, overall: float, method: str) -> float:
    """``MetricFrame.ratio``: min / max, or min over groups of group/overall folded below 1.

    fairlearn folds x = group/overall to 1/x when x > 1 (so 1/(g/o), not o/g: kept bit for bit);
    0/0 is NaN and is skipped, g/0 is inf and folds to 0.
    """
    if method == "between_groups":
        lo, hi = _nan_extremes(by_group)
        if np.isnan(hi) or hi == 0.0:  # pandas: 0/0 -> NaN
            return np.nan
        return lo / hi
    with np.errstate(invalid="ignore", divide="ignore"):
        x = by_group / overall
        x = np.where(x > 1.0, 1.0 / x, x)
    return _nan_extremes(x)[0]


def demographic_parity_difference(y_pred, groups, *, method: Method = "between_groups") -> float:
    """Demographic parity difference, as ``fairlearn.metrics.demographic_parity_difference``.

    max_a - min_a of the selection rate E[h(X) | A = a] over the groups present
    (``method="between_groups"``), or max_a |E[h(X) | A = a] - E[h(X)]| (``"to_overall"``).

    Parameters
    ----------
    y_pred : array_like, shape (n,)
        0/1 predictions.
    groups : array_like of int, shape (n,)
        Group codes (any non-negative integers; only the codes present count).
    method : {"between_groups", "to_overall"}
        As fairlearn's ``MetricFrame.difference``.

    Returns
    -------
    float
    """
    _check_method(method)
    by_group, overall = _rates_like_fairlearn("selection_rate", None, y_pred, groups, "zero")
    return _difference_like_fairlearn(by_group, overall, method)


def demographic_parity_ratio(y_pred, groups, *, method: Method = "between_groups") -> float:
    """Demographic parity ratio, as ``fairlearn.metrics.demographic_parity_ratio``.

    min_a / max_a of the selection rate (NaN if the largest is 0), or with ``"to_overall"`` the
    smallest over groups of rate_a / rate_overall folded to be at most 1.
    """
    _check_method(method)
    by_group, overall = _rates_like_fairlearn("selection_rate", None, y_pred, groups, "zero")
    return _ratio_like_fairlearn(by_group, overall, method)


def equal_opportunity_difference(y_true, y_pred, groups, *, method: Method = "between_groups",
                                 undefined: Undefined = "zero") -> float:
    """Equal opportunity difference: the TPR difference, as fairlearn's function of that name.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (n,)
        0/1 labels and predictions.
    groups : array_like of int, shape (n,)
        Group codes.
    method : {"between_groups", "to_overall"}
        As fairlearn's ``MetricFrame.difference``.
    undefined : {"zero", "nan"}, default "zero"
        TPR of a group without positives: 0 as in fairlearn (sklearn's confusion matrix turns 0/0
        into 0), or NaN, which leaves the group out.

    Returns
    -------
    float
    """
    _check_method(method)
    _check_undefined(undefined)
    by_group, overall = _rates_like_fairlearn("tpr", y_true, y_pred, groups, undefined)
    return _difference_like_fairlearn(by_group, overall, method)


def _check_agg(agg: str) -> None:
    if agg not in ("worst_case", "mean"):
        raise ValueError(_ERR_AGG.format(got=agg))


def equalized_odds_difference(y_true, y_pred, groups, *, agg: Agg = "worst_case",
                              method: Method = "between_groups",
                              undefined: Undefined = "zero") -> float:
    """Equalized odds difference, as ``fairlearn.metrics.equalized_odds_difference``.

    ``agg="worst_case"``: the larger of the TPR difference and the FPR difference; ``"mean"``:
    their mean (NaN-skipping, like pandas). The worst case is taken with Python's ``max`` over
    (TPR, FPR) in that order, exactly as fairlearn does. ``undefined`` as in
    :func:`equal_opportunity_difference` (for FPR: a group without negatives).
    """
    _check_agg(agg)
    _check_method(method)
    _check_undefined(undefined)
    tpr, tpr_all = _rates_like_fairlearn("tpr", y_true, y_pred, groups, undefined)
    fpr, fpr_all = _rates_like_fairlearn("fpr", y_true, y_pred, groups, undefined)
    d = (_difference_like_fairlearn(tpr, tpr_all, method),
         _difference_like_fairlearn(fpr, fpr_all, method))
    return _combine_like_fairlearn(d, agg, max)


def equalized_odds_ratio(y_true, y_pred, groups, *, agg: Agg = "worst_case",
                         method: Method = "between_groups",
                         undefined: Undefined = "zero") -> float:
    """Equalized odds ratio, as ``fairlearn.metrics.equalized_odds_ratio``.

    ``agg="worst_case"``: the smaller of the TPR ratio and the FPR ratio (Python's ``min`` over
    (TPR, FPR), as fairlearn); ``"mean"``: their NaN-skipping mean.
    """
    _check_agg(agg)
    _check_method(method)
    _check_undefined(undefined)
    tpr, tpr_all = _rates_like_fairlearn("tpr", y_true, y_pred, groups, undefined)
    fpr, fpr_all = _rates_like_fairlearn("fpr", y_true, y_pred, groups, undefined)
    r = (_ratio_like_fairlearn(tpr, tpr_all, method), _ratio_like_fairlearn(fpr, fpr_all, method))
    return _combine_like_fairlearn(r, agg, min)


def _combine_like_fairlearn(pair: tuple[float, float], agg: str, worst) -> float:
    if agg == "worst_case":
        # Python's max/min over a pandas Series, as fairlearn calls them: with a NaN the result
        # depends on the order (a NaN first wins, a NaN second loses). Kept for identical numbers.
        return float(worst(pair))
    arr = np.asarray(pair)
    return float(arr[~np.isnan(arr)].mean()) if not np.isnan(arr).all() else np.nan


def underdiagnosis_gap(y_true, y_pred, groups, *, method: Method = "between_groups",
                       undefined: Undefined = "zero") -> float:
    """Underdiagnosis gap: max - min over groups of the FNR (Seyyed-Kalantari et al. 2021).

    Identical to ``fairlearn.metrics.MetricFrame(metrics=false_negative_rate, ...).difference(method)``
    with the default ``undefined="zero"`` (a group without sick rows then has FNR 0, as in
    fairlearn); ``undefined="nan"`` leaves such a group out, which is usually what a clinician means.
    """
    _check_method(method)
    _check_undefined(undefined)
    fnr, fnr_all = _rates_like_fairlearn("fnr", y_true, y_pred, groups, undefined)
    return _difference_like_fairlearn(fnr, fnr_all, method)


# =====================================================================================================
# bias amplification
# =====================================================================================================
def directional_bias_amplification(a_train, t_train, a_test, t_pred, t_test, *,
                                   n_groups: int | None = None) -> float:
    """Directional bias amplification A -> T (Wang & Russakovsky 2021, ICML), for one binary task.

    BiasAmp(A->T) = 1/(|A||T|) sum_{a,t} [ y_at D_at + (1 - y_at)(-D_at) ] with
    y_at = 1[P(A_a=1, T_t=1) > P(A_a=1) P(T_t=1)] from the training labels and
    D_at = P(That_t=1 | A_a=1) - P(T_t=1 | A_a=1) on the test set.

    Choices, following the authors' released code (``directional_biasamp.py``,
    ``biasamp_attribute_to_task``):

    - A is the one-hot encoding of the group codes (|A| = n_groups); T is the single task "diagnosis
      positive" (|T| = 1). Adding the negative class as a second task changes nothing: both y_at
      and D_at flip sign for it, so its terms equal those of the positive class.
    - y_at enters as sign(P(a,t) - P(a)P(t)), as in the code: a group exactly independent of the
      task in training (and a group absent from training) contributes 0, where the paper's
      indicator would give -D_at. The probabilities are computed as the code does,
      (n_at/m) vs (n_t/m)(n_a/m), so ties are decided identically.
    - The mean skips NaN terms (``np.nanmean``): a group absent from the test set is left out.
    - The later revision of the code drops training rows with no positive task label before
      computing y_at; with a single task that would make every y_at 0, so it is not applied.

    Parameters
    ----------
    a_train, a_test : array_like of int
        Group codes of the training and test rows.
    t_train, t_test : array_like
        True 0/1 task labels of the training and test rows.
    t_pred : array_like
        Predicted 0/1 task labels of the test rows.
    n_groups : int, optional
        |A|; default one more than the largest code seen.

    Returns
    -------
    float
        Positive: the model exaggerates the training co-occurrence of groups and diagnosis.
    """
    t_tr = _as_binary("t_train", t_train)
    a_tr = _as_codes("a_train", a_train, t_tr.shape[0], ref="t_train")
    t_te = _as_binary("t_test", t_test)
    t_hat = _as_binary("t_pred", t_pred, t_te.shape[0], ref="t_test")
    a_te = _as_codes("a_test", a_test, t_te.shape[0], ref="t_test")
    k = max(int(a_tr.max()), int(a_te.max())) + 1 if n_groups is None else _check_n_groups(n_groups)
    if n_groups is not None:
        _as_codes("a_train", a_tr, n_groups=k)
        _as_codes("a_test", a_te, n_groups=k)
    m = t_tr.shape[0]
    n_t = float(t_tr.sum())
    n_a = np.bincount(a_tr, minlength=k).astype(np.float64)
    n_at = np.bincount(a_tr, weights=t_tr, minlength=k)
    y_at = np.sign(n_at / m - (n_t / m) * (n_a / m))
    size = np.bincount(a_te, minlength=k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        that_given_a = np.bincount(a_te, weights=t_hat, minlength=k) / size
        t_given_a = np.bincount(a_te, weights=t_te, minlength=k) / size
    values = y_at * (that_given_a - t_given_a)
    if np.isnan(values).all():
        return np.nan
    return float(np.nanmean(values))


# =====================================================================================================
# bootstrap
# =====================================================================================================
def _resample_keys(seed: object, n_resamples: int) -> np.ndarray:
    """One 64-bit key per resample, from ``SeedSequence.generate_state``.

    ``generate_state`` does not advance the seed sequence, so the same seed (or the same
    SeedSequence object) always gives the same keys, and key ``r`` does not depend on how many
    resamples were asked for: the first 100 of 1,000 resamples are the 100 of a 100-resample run.
    """
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        ss = np.random.SeedSequence(int(seed))
    else:
        raise TypeError(_ERR_SEED.format(got=seed))
    return ss.generate_state(n_resamples, dtype=np.uint64)


def _check_n_resamples(n_resamples: object) -> int:
    if (isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral)
            or n_resamples < 1):
        raise ValueError(_ERR_N_RESAMPLES.format(got=n_resamples))
    return int(n_resamples)


def bootstrap_counts(n_rows: int, *, n_resamples: int, seed) -> np.ndarray:
    """The resamples :func:`bootstrap_metrics` uses: how often each row is drawn in each.

    Parameters
    ----------
    n_rows : int
        Number of rows.
    n_resamples : int
        Number of resamples.
    seed : int or numpy.random.SeedSequence
        The same seed as given to :func:`bootstrap_metrics`.

    Returns
    -------
    numpy.ndarray
        int64, shape (n_resamples, n_rows); each row sums to n_rows. ``np.repeat(x, counts[r])``
        is resample ``r`` of ``x``.
    """
    n_resamples = _check_n_resamples(n_resamples)
    if isinstance(n_rows, bool) or not isinstance(n_rows, numbers.Integral) or n_rows < 1:
        raise ValueError(_ERR_EMPTY.format(name="n_rows"))
    keys = _resample_keys(seed, n_resamples)
    out = np.empty((n_resamples, int(n_rows)), dtype=np.int64)
    buf = np.empty(int(n_rows))
    for r in range(n_resamples):
        _draw_counts(keys[r], buf)
        out[r] = buf
    return out


def bootstrap_metrics(y_true, y_pred, y_score, groups, n_groups, *, n_resamples: int = 100,
                      seed, metrics: Sequence[str] = ("selection_rate", "tpr", "fpr")
                      ) -> np.ndarray:
    """Nonparametric bootstrap of per-group metrics, computed in compiled code.

    Each resample draws n rows with replacement from all n rows (Efron 1979; the row bootstrap
    that fairlearn's ``MetricFrame(n_boot=...)`` performs), so group sizes vary between resamples.
    A resample is represented by its multinomial counts, used as row weights by the same kernel
    that computes :func:`binary_metrics`; with weights all 1 the kernel returns the point estimate.

    Parameters
    ----------
    y_true, y_pred, y_score, groups, n_groups
        As in :func:`binary_metrics`. ``y_score`` may be None if no score-based metric is asked.
    n_resamples : int, default 100
        Number of bootstrap resamples.
    seed : int or numpy.random.SeedSequence
        Root seed. Resample ``r`` uses the ``r``-th 64-bit word of
        ``SeedSequence(seed).generate_state`` as the key of a counter-based generator, so the
        same seed gives identical results (on any machine, for any ``n_resamples`` prefix).
    metrics : sequence of str
        Names from :data:`BOOTSTRAP_METRICS` (all of :data:`METRIC_NAMES`).

    Returns
    -------
    numpy.ndarray
        float64, shape (n_resamples, len(metrics), n_groups + 1), the last group entry overall.
        A metric undefined in a resample (e.g. no positives drawn in a small group) is NaN there;
        :func:`bootstrap_interval` skips those.
    """
    n_resamples = _check_n_resamples(n_resamples)
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError(_ERR_METRICS_EMPTY)
    for name in metrics:
        if name not in _CODE:
            raise ValueError(_ERR_METRIC.format(got=name, allowed=", ".join(BOOTSTRAP_METRICS)))
        if y_score is None and name in _SCORE_METRICS:
            raise ValueError(_ERR_NEEDS_SCORE.format(got=name))
    keys = _resample_keys(seed, n_resamples)
    prep = _Prepared(y_true, y_pred, y_score, groups, n_groups,
                     need_auc="auroc" in metrics, need_bins="ece" in metrics)
    codes = np.array([_CODE[name] for name in metrics], dtype=np.int64)
    out = np.empty((n_resamples, codes.shape[0], prep.n_groups + 1))
    _resample_metrics(keys, *prep.kernel_arrays(), prep.n_groups, ECE_BINS, codes,
                      prep.need_auc, prep.need_bins, out)
    return out


def bootstrap_interval(samples, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) along the resample axis.

    Parameters
    ----------
    samples : array_like, shape (n_resamples, ...)
        E.g. the output of :func:`bootstrap_metrics`.
    level : float, default 0.95
        Coverage; the interval is the ((1 - level)/2, (1 + level)/2) quantiles (linear
        interpolation, NumPy's default), ignoring NaN resamples.

    Returns
    -------
    lower, upper : numpy.ndarray
        Shape ``samples.shape[1:]``; NaN where every resample is NaN.
    """
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(_ERR_SAMPLES.format(shape=arr.shape))
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < level < 1.0:
        raise ValueError(_ERR_LEVEL.format(got=level))
    alpha = (1.0 - float(level)) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN, on purpose
        lower, upper = np.nanquantile(arr, [alpha, 1.0 - alpha], axis=0)
    return lower, upper
