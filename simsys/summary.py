"""The summary table of a run: every result pooled over replicates, with its 95% interval.

``results`` has one row per (sweep point, replicate, model, training, reference, scope, group,
metric); the summary has one row per the same key without the replicate. Each row's ``estimate``,
``lo`` and ``hi`` come from the interval suited to its kind of quantity (:mod:`simsys.intervals`,
``docs/metrics.md``, section "Intervals"):

- per-group rates (TPR, FNR, ...; and the training labels' ``label_*`` rates) are pooled from the
  confusion counts the runner records (scope ``counts``), with a Wilson design-effect interval;
  ``cases`` and ``events`` give the support ("15 of 26");
- a rate's difference to the reference group (``<rate>_minus_reference``) is the difference of
  the two pooled rates, paired by replicate (the estimate the findings' gaps use);
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

    Vectorised over keys (a run has thousands); the numbers equal those of the scalar estimators
    in :mod:`simsys.intervals` (``tests/test_summary.py`` checks every row).
    """
    if results.empty:
        return pd.DataFrame()
    res = results.reset_index(drop=True)
    res = res.assign(group=res["group"].fillna("").astype(str))
    settings = [c for c in res.columns if c not in (*SUMMARY_KEYS, "replicate", "value", "reason")]
    codes = res.groupby(list(SUMMARY_KEYS), sort=False, dropna=False).ngroup().to_numpy()
    first = res.drop_duplicates(list(SUMMARY_KEYS)).index.to_numpy()
    keys = res.loc[first, list(SUMMARY_KEYS)].reset_index(drop=True)
    reps = np.sort(res["replicate"].unique())
    ri = np.searchsorted(reps, res["replicate"].to_numpy())
    K, R = len(first), len(reps)
    V = np.full((K, R), np.nan)
    V[codes, ri] = res["value"].to_numpy(np.float64)

    finite = np.isfinite(V)
    cnt = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, np.where(finite, V, 0.0).sum(axis=1) / np.maximum(cnt, 1), np.nan)
        dev = np.where(finite, V - mean[:, None], 0.0)
        sd = np.where(cnt > 1, np.sqrt((dev * dev).sum(axis=1) / np.maximum(cnt - 1, 1)), np.nan)
    est = mean.copy()
    lo = np.full(K, np.nan)
    hi = np.full(K, np.nan)
    method = np.where(cnt > 0, "mean-t", "undefined").astype(object)
    cases = np.full(K, np.nan)
    events = np.full(K, np.nan)
    n_rep = cnt.astype(np.int64)

    scope = keys["scope"].to_numpy()
    metric = keys["metric"].to_numpy()
    # means over replicates with a t interval, intersected with each quantity's range
    pairs = pd.Series(list(zip(scope, metric)))
    bounds = {pm: _bounds(*pm) for pm in set(pairs)}
    blo = np.array([(bounds[pm] or (-math.inf, math.inf))[0] for pm in pairs])
    bhi = np.array([(bounds[pm] or (-math.inf, math.inf))[1] for pm in pairs])
    q = I.t_quantiles(cnt - 1)
    with np.errstate(invalid="ignore"):
        half = np.where(cnt > 1, q * sd / np.sqrt(np.maximum(cnt, 1)), np.nan)
    lo, hi = np.maximum(mean - half, blo), np.minimum(mean + half, bhi)
    est = np.clip(mean, blo, bhi)

    # counts: summed
    is_count = scope == "counts"
    est[is_count] = np.where(cnt[is_count] > 0, np.where(finite[is_count], V[is_count], 0.0).sum(axis=1), np.nan)
    lo[is_count] = hi[is_count] = np.nan
    method[is_count] = "sum"

    # per-group rates: pooled from the confusion counts, Wilson at the effective sample size
    _pooled_rates(keys, V, est, lo, hi, method, cases, events, n_rep)

    # a rate's difference to the reference group: the contrast of pooled rates, paired by replicate
    # (the same estimate as the findings' gaps)
    _rate_differences(keys, V, est, lo, hi, method, cases, n_rep)

    # flags: the share of replicates flagged
    for i in np.flatnonzero((scope == "method") & pd.Series(metric).str.startswith("fair_only_against_observed.").to_numpy()):
        e = I.replicate_share(V[i])
        est[i], lo[i], hi[i], method[i], cases[i], events[i], n_rep[i] = (
            e.value, e.lo, e.hi, e.method, e.cases, e.events, e.replicates)

    frame = keys.copy()
    frame["estimate"], frame["lo"], frame["hi"], frame["n_replicates"] = est, lo, hi, n_rep
    frame["method"], frame["cases"], frame["events"] = method, cases, events
    frame["mean"], frame["sd"] = mean, sd
    for c in settings:
        frame[c] = res[c].to_numpy()[first]
    return frame[["point", *settings, *SUMMARY_KEYS[1:], "estimate", "lo", "hi", "n_replicates",
                  "method", "cases", "events", "mean", "sd"]]


def _rate_differences(keys: pd.DataFrame, V: np.ndarray, est, lo, hi, method, cases, n_rep) -> None:
    """Fill the ``<rate>_minus_reference`` rows (in place) with :func:`simsys.intervals.rate_contrast`.

    The reference group is the one group of the cell that has confusion counts but no
    ``_minus_reference`` row (the runner writes one per other group)."""
    suffix = "_minus_reference"
    is_diff = (keys["scope"] == "disparity") & keys["metric"].str.endswith(suffix)
    if not is_diff.any():
        return
    cell = ["point", "model", "training", "reference"]
    counts: dict[tuple, dict[str, np.ndarray]] = {}
    for i in np.flatnonzero((keys["scope"] == "counts").to_numpy()):
        r = keys.iloc[i]
        counts.setdefault((*(r[c] for c in cell), r["group"]), {})[r["metric"]] = V[i]
    compared: dict[tuple, set] = {}
    for i in np.flatnonzero(is_diff.to_numpy()):
        r = keys.iloc[i]
        compared.setdefault((*(r[c] for c in cell), r["metric"]), set()).add(r["group"])
    for i in np.flatnonzero(is_diff.to_numpy()):
        r = keys.iloc[i]
        base = r["metric"][: -len(suffix)]
        if base not in RATE_COUNTS:
            continue
        head = tuple(r[c] for c in cell)
        have = {g for (*h, g) in counts if tuple(h) == head and g not in ("", "overall")}
        refs = have - compared[(*head, r["metric"])]
        mine = counts.get((*head, r["group"]))
        if len(refs) != 1 or mine is None:
            continue
        xa, na = rate_counts(mine, base)
        xb, nb = rate_counts(counts[(*head, refs.pop())], base)
        e = I.rate_contrast([(1.0, xa, na), (-1.0, xb, nb)])
        est[i], lo[i], hi[i], method[i], cases[i], n_rep[i] = e.value, e.lo, e.hi, e.method, e.cases, e.replicates


def _pooled_rates(keys: pd.DataFrame, V: np.ndarray, est, lo, hi, method, cases, events, n_rep) -> None:
    """Fill the rows of per-group rates that have confusion counts (in place, vectorised)."""
    five = ["point", "model", "training", "reference", "group"]
    cnt_rows = keys[(keys["scope"] == "counts") & keys["metric"].isin(["tp", "fp", "fn", "tn"])]
    if cnt_rows.empty:
        return
    table = cnt_rows.assign(row=cnt_rows.index).pivot_table(index=five, columns="metric", values="row",
                                                             aggfunc="first")
    if not {"tp", "fp", "fn", "tn"} <= set(table.columns):
        return
    base = keys["metric"].map(lambda m: LABEL_RATES.get(m, m))
    want = (keys["scope"] == "group") & base.isin(list(RATE_COUNTS))
    if not want.any():
        return
    sel = keys[want]
    idx = sel.join(table, on=five, how="left")
    have = idx[["tp", "fp", "fn", "tn"]].notna().all(axis=1).to_numpy()
    rows = sel.index.to_numpy()[have]
    if not len(rows):
        return
    ix = {k: idx[k].to_numpy()[have].astype(np.int64) for k in ("tp", "fp", "fn", "tn")}
    b = base[rows].to_numpy()
    x = np.zeros((len(rows), V.shape[1]))
    n = np.zeros_like(x)
    for name, (num, den) in RATE_COUNTS.items():
        m = b == name
        if not m.any():
            continue
        x[m] = sum(V[ix[k][m]] for k in num)
        n[m] = sum(V[ix[k][m]] for k in den)
    ok = np.isfinite(x) & np.isfinite(n) & (n > 0)
    Rk = ok.sum(axis=1)
    X = np.where(ok, x, 0.0).sum(axis=1)
    N = np.where(ok, n, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(N > 0, X / np.where(N > 0, N, 1.0), np.nan)
        z = np.where(ok, (x - p[:, None] * n) / (N / np.maximum(Rk, 1))[:, None], 0.0)
        var = np.where(Rk > 1, (z * z).sum(axis=1) / (Rk * np.maximum(Rk - 1, 1)), np.nan)
        neff = np.where((p > 0) & (p < 1) & (var > 0), p * (1 - p) / var, N)
    lo_w, hi_w = I.wilson(p, neff, I.t_quantiles(Rk - 1))
    est[rows] = np.where(Rk > 0, p, np.nan)
    lo[rows] = np.where(Rk > 1, lo_w, np.nan)
    hi[rows] = np.where(Rk > 1, hi_w, np.nan)
    method[rows] = "wilson-deff"
    cases[rows], events[rows], n_rep[rows] = N, X, Rk


__all__ = ["LABEL_RATES", "METRIC_RANGE", "RATE_COUNTS", "rate_counts", "summarise"]
