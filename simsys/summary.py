"""The summary table of a run: every result pooled over replicates, with its 95% interval.

``results`` has one row per (sweep point, replicate, model, training, reference, scope, group,
metric); the summary has one row per the same key without the replicate. Each row's ``estimate``,
``lo`` and ``hi`` come from the interval suited to its kind of quantity (:mod:`simsys.intervals`,
``docs/metrics.md``, section "Intervals"):

- per-group rates (TPR, FNR, ...; and the training labels' ``label_*`` rates) are pooled from the
  confusion counts the runner records (scope ``counts``), with a Wilson design-effect interval;
  ``cases`` and ``events`` give the support ("15 of 26");
- everything else is the mean over replicates with a t interval, intersected with the quantity's
  range (a max - min gap of rates stays in [0, 1], a difference of two gaps in [-1, 1]);
- ``fair_only_against_observed`` flags are the share of replicates flagged, with a Wilson interval;
- counts are summed.

``mean`` and ``sd`` are the plain mean and standard deviation over replicates, for reference.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from simsys import intervals as I

#: How each per-group rate is made of the confusion counts: (numerator terms, denominator terms).
RATE_COUNTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tpr": (("tp",), ("tp", "fn")),
    "fnr": (("fn",), ("tp", "fn")),
    "fpr": (("fp",), ("fp", "tn")),
    "tnr": (("tn",), ("fp", "tn")),
    "ppv": (("tp",), ("tp", "fp")),
    "npv": (("tn",), ("tn", "fn")),
    "selection_rate": (("tp", "fp"), ("tp", "fp", "fn", "tn")),
    "accuracy": (("tp", "tn"), ("tp", "fp", "fn", "tn")),
    "prevalence": (("tp", "fn"), ("tp", "fp", "fn", "tn")),
}
#: The training labels' rates (model ``data``): the recorded label is the "prediction" of the truth.
LABEL_RATES = {"label_fnr": "fnr", "label_fpr": "fpr", "label_prevalence": "prevalence",
               "label_selection_rate": "selection_rate"}

#: Ranges of per-group metrics that are not count ratios (intervals are intersected with them).
METRIC_RANGE: dict[str, tuple[float, float]] = {
    "auroc": (0.0, 1.0), "brier": (0.0, 1.0), "ece": (0.0, 1.0),
    "calibration_in_the_large": (-1.0, 1.0), "n": (0.0, math.inf), "label_n": (0.0, math.inf),
    **{k: (0.0, 1.0) for k in RATE_COUNTS}, **{k: (0.0, 1.0) for k in LABEL_RATES},
}

SUMMARY_KEYS = ("point", "model", "training", "reference", "scope", "group", "metric")


def rate_counts(counts: dict[str, np.ndarray], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-replicate (events, cases) of a rate from a group's ``tp/fp/fn/tn`` arrays."""
    spec = RATE_COUNTS.get(LABEL_RATES.get(metric, metric))
    if spec is None or not all(k in counts for k in ("tp", "fp", "fn", "tn")):
        return None
    num, den = spec
    return sum(counts[k] for k in num), sum(counts[k] for k in den)


def _bounds(scope: str, metric: str) -> tuple[float, float] | None:
    """The range a summary quantity lies in (None: unbounded)."""
    if scope in ("group", "threshold"):
        return METRIC_RANGE.get(metric, (0.0, 1.0) if scope == "threshold" else None)
    if scope == "disparity":
        for suffix in ("_difference", "_ratio", "_minus_reference"):
            if metric.endswith(suffix):
                base = metric[: -len(suffix)]
                lo, hi = METRIC_RANGE.get(base, (math.nan, math.nan))
                if not math.isfinite(hi - lo):
                    return (0.0, math.inf) if suffix == "_difference" else None
                if suffix == "_difference":
                    return (0.0, hi - lo)
                if suffix == "_ratio":
                    return (0.0, 1.0) if lo >= 0 else None
                return (-(hi - lo), hi - lo)
        return (0.0, 1.0)  # fairlearn's aggregates: differences and ratios of rates
    if scope == "amplification":
        if metric == "directional_bias_amplification":
            return (-1.0, 1.0)
        base, _, part = metric.partition(".")
        lo, hi = METRIC_RANGE.get(base[: -len("_difference")], (0.0, 1.0))
        span = hi - lo
        if part in ("d_model", "d_data"):
            return (0.0, span)
        if part == "ratio":
            return (0.0, math.inf)
        return (-span, span)
    return None


def summarise(results: pd.DataFrame, experiment=None) -> pd.DataFrame:
    """Pool every result over replicates (see the module docstring); one row per summary key.

    Columns: the keys, the swept settings, ``estimate``, ``lo``, ``hi`` (95% interval),
    ``method`` (which interval), ``cases`` and ``events`` (pooled support of a rate),
    ``n_replicates`` (replicates that entered), and ``mean`` / ``sd`` over replicates.
    """
    if results.empty:
        return pd.DataFrame()
    res = results.copy()
    res["group"] = res["group"].fillna("").astype(str)
    settings = [c for c in res.columns if c not in (*SUMMARY_KEYS, "replicate", "value", "reason")]
    reps = sorted(res["replicate"].unique())
    rindex = {r: i for i, r in enumerate(reps)}
    R = len(reps)
    ri = res["replicate"].map(rindex).to_numpy()
    values = res["value"].to_numpy(np.float64)
    keys = list(zip(*(res[k].tolist() for k in SUMMARY_KEYS)))
    arrays: dict[tuple, np.ndarray] = {}
    for key, r, v in zip(keys, ri, values):
        a = arrays.get(key)
        if a is None:
            a = arrays[key] = np.full(R, np.nan)
        a[r] = v
    first = {}
    for key, row in zip(keys, range(len(res))):
        first.setdefault(key, row)
    counts: dict[tuple, dict[str, np.ndarray]] = {}
    for key, a in arrays.items():
        point, model, training, reference, scope, group, metric = key
        if scope == "counts":
            counts.setdefault((point, model, training, reference, group), {})[metric] = a
    out = []
    for key, a in arrays.items():
        point, model, training, reference, scope, group, metric = key
        est = _estimate(key, a, counts)
        ok = a[np.isfinite(a)]
        out.append((*key, est.value, est.lo, est.hi, est.method, est.cases, est.events, est.replicates,
                    float(ok.mean()) if len(ok) else math.nan,
                    float(ok.std(ddof=1)) if len(ok) > 1 else math.nan, first[key]))
    cols = [*SUMMARY_KEYS, "estimate", "lo", "hi", "method", "cases", "events", "n_replicates",
            "mean", "sd", "_row"]
    frame = pd.DataFrame(out, columns=cols)
    for c in settings:
        frame[c] = res[c].to_numpy()[frame["_row"].to_numpy()]
    frame = frame.drop(columns="_row")
    return frame[["point", *settings, *SUMMARY_KEYS[1:], "estimate", "lo", "hi", "n_replicates",
                  "method", "cases", "events", "mean", "sd"]]


def _estimate(key: tuple, a: np.ndarray, counts: dict) -> I.Estimate:
    point, model, training, reference, scope, group, metric = key
    if scope == "counts":
        ok = a[np.isfinite(a)]
        total = float(ok.sum()) if len(ok) else math.nan
        return I.Estimate(total, math.nan, math.nan, len(ok), "sum")
    if scope == "group":
        c = counts.get((point, model, training, reference, group))
        xn = rate_counts(c, metric) if c else None
        if xn is not None:
            return I.pooled_rate(*xn)
    if scope == "method" and metric.startswith("fair_only_against_observed."):
        return I.replicate_share(a)
    return I.mean_contrast([(1.0, a)], bounds=_bounds(scope, metric))


__all__ = ["LABEL_RATES", "METRIC_RANGE", "RATE_COUNTS", "rate_counts", "summarise"]
