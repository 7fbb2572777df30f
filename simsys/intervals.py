"""Estimates and 95% intervals for the quantities a run reports, over its replicates.

A simsys number varies for two reasons: the patients drawn (within a cell) and the replicate
(a new training set, hence a new model fit, and a new test set). Every interval here accounts for
both, by treating each replicate as one independent cluster (the primary sampling unit of survey
statistics): the variance is estimated from the spread *between replicates* of a linearised
statistic (Taylor linearisation; Woodruff 1971), so whatever varies from replicate to replicate --
model fit, training patients, test patients -- is in it, and the degrees of freedom are R - 1.

Per kind of quantity (``docs/metrics.md``, section "Intervals", has the formulas):

- **a rate** (FNR, TPR, a group's share, ...): the pooled rate ``sum(x) / sum(n)`` over the
  replicates (the ratio estimator; "15 of 26 melanomas over 3 replicates"), with a **Wilson score
  interval** (Brown, Cai & DasGupta 2001 recommend it over Wald) computed at the **effective
  sample size** ``n_eff = p(1-p) / var`` (Kish's design effect; the same device as Korn & Graubard
  1998, which NCHS uses for survey proportions) and Student's ``t(R-1)`` quantile in place of the
  normal one. It never leaves [0, 1] and it reduces to the plain Wilson interval when the
  replicates vary no more than binomial sampling would. (Simulated coverage with 3-10 replicates
  and 60-6,000 cases: 93-96%; a floor at the binomial variance over-covers, to 97-100%, and a
  Satterthwaite variant under-covers, to 86%: both were tried and rejected.)
- **a contrast of rates** (a gap between two groups, a model's gap minus the same model's gap
  trained on the clean twin, a paired comparison between models or sweep points): the same
  contrast of pooled rates, with a ``t(R-1)`` interval from the replicate-level linearised values.
  Because the terms of a contrast are computed in the same replicate (common random numbers), the
  interval is that of the *paired* difference (Law & Kelton, "Simulation Modeling and Analysis",
  comparing alternative configurations), usually far narrower than two separate intervals. It is
  intersected with the contrast's range (e.g. [-1, 1] for a difference of two rates).
- **a ratio of two rates** (Aequitas' disparity ratio, the four-fifths rule): on the log scale,
  ``log(p_a / p_b)`` linearised the same way, then exponentiated: it stays positive.
- **a mean of per-replicate values** that are not count ratios (AUROC, Brier score, ECE,
  calibration-in-the-large, a threshold): the mean over replicates with a ``t(R-1)`` interval, and
  contrasts of such values paired by replicate; intersected with the quantity's range.
- **a share of replicates** (how often a flag was raised): a Wilson interval over the R replicates.

With one replicate there is no between-replicate variation to estimate: the estimate is given and
the interval is NaN (the findings say to run more replicates). Replicates where a term is
undefined (NaN: a failed fit, an empty group) are left out of that quantity, as complete pairs.

This module holds no knowledge of runs or scenarios: arrays in, :class:`Estimate` out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
"""Coverage of every interval simsys reports."""

MIN_CASES = 30
"""Fewest cases (the denominator of a rate, pooled over replicates) behind a rate simsys states.

The NCHS Data Presentation Standards for Proportions (Parker et al. 2017) require a denominator,
and an effective sample size, of at least 30 before a proportion is shown.
"""



@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% interval and what stands behind it.

    Attributes
    ----------
    value : float
        The estimate (NaN when undefined).
    lo, hi : float
        The 95% interval; NaN with one replicate or when undefined.
    replicates : int
        Replicates that entered (complete ones).
    method : str
        Which interval: ``wilson-deff``, ``linearised-t``, ``log-linearised-t``, ``mean-t``,
        ``wilson-replicates``.
    cases, events : float or None
        For a rate: the pooled denominator (cases) and numerator (events) over the replicates.
        For a contrast of rates: the smallest denominator among its terms.
    n_eff : float or None
        Effective sample size of a rate (Kish): ``p(1-p) / var``.
    sd_replicate : float
        Standard deviation of the replicate-level (linearised) values, on the estimate's scale:
        what one more replicate adds in precision; used to say how many replicates a claim needs.
    """

    value: float
    lo: float
    hi: float
    replicates: int
    method: str
    cases: float | None = None
    events: float | None = None
    n_eff: float | None = None
    sd_replicate: float = math.nan

    @property
    def defined(self) -> bool:
        return math.isfinite(self.value)

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2 if self.has_interval else math.nan

    def excludes(self, x: float = 0.0) -> bool:
        """Whether the interval lies entirely on one side of ``x``."""
        return self.has_interval and (self.lo > x or self.hi < x)


NAN = Estimate(math.nan, math.nan, math.nan, 0, "undefined")


@functools.lru_cache(maxsize=4096)
def t_quantile(df: float, level: float = LEVEL) -> float:
    """Student's t quantile for a two-sided interval (the normal one for infinite df)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


def t_quantiles(df, level: float = LEVEL) -> np.ndarray:
    """:func:`t_quantile` for an array of degrees of freedom (NaN where df < 1)."""
    from scipy import stats

    df = np.asarray(df, dtype=np.float64)
    out = np.full(df.shape, np.nan)
    ok = df >= 1
    out[ok] = stats.t.ppf(0.5 + level / 2, df[ok])
    return out


def _clip(lo: float, hi: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is None:
        return lo, hi
    return max(lo, bounds[0]), min(hi, bounds[1])


def wilson(p, n, q):
    """Wilson's score interval for a proportion ``p`` from ``n`` cases at critical value ``q``.

    Works on numbers and, elementwise, on arrays (the summary table computes thousands at once);
    NaN where ``n`` is not positive.
    """
    p, n, q = (np.asarray(v, dtype=np.float64) for v in (p, n, q))
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(n > 0, n, np.nan)
        q2 = q * q
        den = 1.0 + q2 / n
        centre = (p + q2 / (2 * n)) / den
        half = q * np.sqrt(np.maximum(p * (1 - p) / n + q2 / (4 * n * n), 0.0)) / den
    lo, hi = np.maximum(0.0, centre - half), np.minimum(1.0, centre + half)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def _complete(*arrays: np.ndarray) -> np.ndarray:
    ok = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a)
    return ok


def pooled_rate(x: Sequence[float], n: Sequence[float], *, level: float = LEVEL) -> Estimate:
    """A rate pooled over replicates, ``sum(x) / sum(n)``, with its Wilson design-effect interval.

    Parameters
    ----------
    x, n : array_like, shape (R,)
        Events and cases in each replicate (e.g. false negatives and true positives of one group).
        Replicates with NaN, or with no cases, are left out.
    """
    x = np.asarray(x, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    ok = _complete(x, n) & (n > 0)
    x, n = x[ok], n[ok]
    R = len(x)
    if R == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "wilson-deff", 0.0, 0.0)
    X, N = float(x.sum()), float(n.sum())
    p = X / N
    if R < 2:
        return Estimate(p, math.nan, math.nan, 1, "wilson-deff", N, X)
    nbar = N / R
    z = (x - p * n) / nbar
    var = float((z * z).sum() / (R * (R - 1)))
    q = t_quantile(R - 1, level)
    if 0.0 < p < 1.0 and var > 0.0:
        n_eff = p * (1 - p) / var
    else:  # no events (or no non-events) anywhere: binomial sampling is all there is to go on
        n_eff = N
    lo, hi = wilson(p, n_eff, q)
    return Estimate(p, lo, hi, R, "wilson-deff", N, X, n_eff, math.sqrt(var * R))


def rate_contrast(terms: Sequence[tuple[float, Sequence[float], Sequence[float]]], *,
                  bounds: tuple[float, float] | None = (-1.0, 1.0), level: float = LEVEL) -> Estimate:
    """A linear contrast of pooled rates, ``sum_k c_k * p_k``, with a paired t interval.

    ``terms`` are ``(c_k, x_k, n_k)`` with per-replicate events and cases of each rate. Every term
    comes from the same replicates (common random numbers), so the replicate-level linearised
    values ``sum_k c_k (x_kr - p_k n_kr) / mean(n_k)`` carry the pairing; the interval is
    ``estimate +- t(R-1) sqrt(sum_r z_r^2 / (R (R-1)))``, intersected with ``bounds``.
    """
    arrays = [(float(c), np.asarray(x, np.float64), np.asarray(n, np.float64)) for c, x, n in terms]
    ok = np.ones(len(arrays[0][1]), dtype=bool)
    for _, x, n in arrays:
        ok &= _complete(x, n) & (n > 0)
    R = int(ok.sum())
    if R == 0:
        return NAN
    value = 0.0
    z = np.zeros(R)
    cases = math.inf
    for c, x, n in arrays:
        x, n = x[ok], n[ok]
        N = float(n.sum())
        p = float(x.sum()) / N
        value += c * p
        z += c * (x - p * n) / (N / R)
        cases = min(cases, N)
    if R < 2:
        return Estimate(value, math.nan, math.nan, 1, "linearised-t", cases)
    var = float((z * z).sum() / (R * (R - 1)))
    half = t_quantile(R - 1, level) * math.sqrt(var)
    lo, hi = _clip(value - half, value + half, bounds)
    return Estimate(value, lo, hi, R, "linearised-t", cases, sd_replicate=math.sqrt(var * R))


def rate_ratio(xa: Sequence[float], na: Sequence[float], xb: Sequence[float], nb: Sequence[float],
               *, level: float = LEVEL) -> Estimate:
    """``p_a / p_b`` of two pooled rates, with an interval from the log scale (stays positive)."""
    xa, na, xb, nb = (np.asarray(v, np.float64) for v in (xa, na, xb, nb))
    ok = _complete(xa, na, xb, nb) & (na > 0) & (nb > 0)
    xa, na, xb, nb = xa[ok], na[ok], xb[ok], nb[ok]
    R = int(ok.sum())
    if R == 0:
        return NAN
    Na, Nb = float(na.sum()), float(nb.sum())
    pa, pb = float(xa.sum()) / Na, float(xb.sum()) / Nb
    cases = min(Na, Nb)
    if pb == 0.0:
        return Estimate(math.nan, math.nan, math.nan, R, "log-linearised-t", cases)
    value = pa / pb
    if R < 2 or pa == 0.0:
        return Estimate(value, math.nan, math.nan, R, "log-linearised-t", cases)
    z = (xa - pa * na) / (Na / R * pa) - (xb - pb * nb) / (Nb / R * pb)
    var = float((z * z).sum() / (R * (R - 1)))
    half = t_quantile(R - 1, level) * math.sqrt(var)
    lv = math.log(value)
    return Estimate(value, math.exp(lv - half), math.exp(lv + half), R, "log-linearised-t", cases,
                    sd_replicate=math.sqrt(var * R) * value)


def mean_contrast(terms: Sequence[tuple[float, Sequence[float]]], *,
                  bounds: tuple[float, float] | None = None, level: float = LEVEL) -> Estimate:
    """``sum_k c_k * mean(v_k)`` over replicates, with a paired t interval (Student 1908).

    For quantities that are not ratios of counts (AUROC, Brier score, ECE, calibration in the
    large, thresholds, gaps max - min, recovery). A single term with ``c = 1`` is the plain mean.
    """
    arrays = [(float(c), np.asarray(v, np.float64)) for c, v in terms]
    ok = np.ones(len(arrays[0][1]), dtype=bool)
    for _, v in arrays:
        ok &= np.isfinite(v)
    R = int(ok.sum())
    if R == 0:
        return NAN
    d = np.zeros(R)
    for c, v in arrays:
        d += c * v[ok]
    value = float(d.mean())
    if R < 2:
        return Estimate(value, math.nan, math.nan, 1, "mean-t")
    sd = float(d.std(ddof=1))
    half = t_quantile(R - 1, level) * sd / math.sqrt(R)
    lo, hi = _clip(value - half, value + half, bounds)
    if bounds is not None:
        value = min(max(value, bounds[0]), bounds[1])
    return Estimate(value, lo, hi, R, "mean-t", sd_replicate=sd)


def replicate_share(flags: Sequence[float], *, level: float = LEVEL) -> Estimate:
    """The share of replicates in which a 0/1 flag was raised, with a Wilson interval over R."""
    f = np.asarray(flags, np.float64)
    f = f[np.isfinite(f)]
    R = len(f)
    if R == 0:
        return NAN
    p = float(f.mean())
    lo, hi = wilson(p, R, t_quantile(math.inf, level))
    return Estimate(p, lo, hi, R, "wilson-replicates", float(R), float(f.sum()))


def replicates_needed(est: Estimate, *, effect: float | None = None, power: float = 0.8,
                      level: float = LEVEL, cap: int = 10_000) -> int | None:
    """About how many replicates would make a contrast of this size distinguishable from zero.

    The smallest R with ``(t_{R-1}(1 - a/2) + t_{R-1}(power)) * sd / sqrt(R) <= |effect|``: the
    paired t test's usual sample-size rule, with the replicate-level sd this run measured and, by
    default, the estimate itself as the effect to detect. A rough guide (the sd and the effect are
    estimates), at least one more than the replicates already run; None when there is nothing to
    go on (no spread measured, or an effect of zero), and ``cap`` when above it.
    """
    effect = abs(est.value) if effect is None else abs(effect)
    sd = est.sd_replicate
    if not (math.isfinite(sd) and sd > 0 and math.isfinite(effect) and effect > 0):
        return None
    z = t_quantile(math.inf, level) + t_quantile(math.inf, 2 * power - 1)
    r = max(est.replicates + 1, 2, math.ceil((z * sd / effect) ** 2))
    while r < cap:
        if (t_quantile(r - 1, level) + t_quantile(r - 1, 2 * power - 1)) * sd / math.sqrt(r) <= effect:
            return r
        r += 1 if r < 100 else max(1, r // 20)
    return cap


def rate_withheld(est: Estimate, *, min_cases: int = MIN_CASES) -> str | None:
    """Why a rate should not be stated, or None when it may be: fewer than ``min_cases`` cases.

    The NCHS Data Presentation Standards for Proportions (Parker et al. 2017) require a denominator
    of at least 30. Their further criteria (an effective sample size of 30, and limits on the
    interval's absolute and relative width) suppress proportions whose *interval* is wide; simsys
    prints every rate with its interval, and a simulator can always run more replicates, so a wide
    interval is shown and speaks for itself rather than hiding the number (``docs/metrics.md``).
    """
    cases = est.cases or 0.0
    if cases < min_cases:
        return f"{cases:,.0f} cases" if cases else "no cases"
    return None


__all__ = ["LEVEL", "MIN_CASES", "NAN", "Estimate", "mean_contrast", "pooled_rate", "rate_contrast",
           "rate_ratio", "rate_withheld", "replicate_share", "replicates_needed", "t_quantile",
           "t_quantiles", "wilson"]
