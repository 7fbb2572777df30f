"""The intervals simsys reports (simsys.intervals): known answers, ranges, and coverage.

The coverage study runs the real runner on a small scenario (tests/data/coverage.yaml) for 2,400
replicates, cuts them into 800 blocks of 3 (the default number of replicates), computes each
block's 95% intervals as a run of 3 replicates would, and counts how often they contain the truth,
taken as the same quantity pooled over the other 2,397 replicates (a very large reference run; its
own error is about 1/28 of an interval's half-width). Nominal 95% intervals must cover in 93-97%
of the 800 blocks (the band is 2.5 standard errors of a coverage proportion around 95%).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from simsys import intervals as I

DATA = Path(__file__).parent / "data"


# --- known answers ---------------------------------------------------------------------------------
def test_wilson_matches_the_textbook_formula():
    # Wilson (1927) / Newcombe (1998) worked example: 81 of 263, z = 1.96 -> 0.2553 to 0.3662
    lo, hi = I.wilson(81 / 263, 263, 1.959964)
    assert lo == pytest.approx(0.2553, abs=5e-5) and hi == pytest.approx(0.3662, abs=5e-5)


def test_a_pooled_rate_is_events_over_cases_with_an_interval_inside_zero_one():
    x, n = np.array([5.0, 0.0, 2.0]), np.array([10.0, 11.0, 9.0])
    e = I.pooled_rate(x, n)
    assert e.value == pytest.approx(7 / 30) and e.events == 7 and e.cases == 30 and e.replicates == 3
    assert 0.0 <= e.lo < e.value < e.hi <= 1.0
    # the effective sample size is p(1-p)/var of the linearised replicate values
    z = (x - e.value * n) / n.mean()
    var = (z ** 2).sum() / (3 * 2)
    assert e.n_eff == pytest.approx(e.value * (1 - e.value) / var)
    assert (e.lo, e.hi) == pytest.approx(I.wilson(e.value, e.n_eff, I.t_quantile(2)))


def test_no_events_gives_a_zero_lower_bound_and_never_a_negative_one():
    e = I.pooled_rate([0, 0, 0], [40, 38, 41])
    assert e.value == 0.0 and e.lo == 0.0 and e.hi == pytest.approx(I.t_quantile(2) ** 2 / (119 + I.t_quantile(2) ** 2))
    full = I.pooled_rate([40, 38, 41], [40, 38, 41])
    assert full.value == 1.0 and full.hi == 1.0 and full.lo < 1.0


def test_identical_replicates_reduce_to_binomial_sampling():
    # replicate values that do not vary at all: the interval still reflects binomial sampling
    e = I.pooled_rate([30, 30, 30], [100, 100, 100])
    assert e.has_interval and e.lo < 0.3 < e.hi


def test_one_replicate_has_no_interval():
    e = I.pooled_rate([3], [10])
    assert e.value == 0.3 and not e.has_interval


def test_a_paired_contrast_uses_the_differences_within_replicates():
    # group a and b move together across replicates (a shared model effect): the paired interval
    # of a - b is much narrower than either rate's interval
    na = nb = np.array([1000.0, 1000.0, 1000.0, 1000.0])
    xa = np.array([300.0, 400.0, 200.0, 350.0])
    xb = xa - 100.0
    d = I.rate_contrast([(1.0, xa, na), (-1.0, xb, nb)])
    assert d.value == pytest.approx(0.1)
    assert d.hi - d.lo < 1e-9  # exactly the same difference in every replicate
    a = I.pooled_rate(xa, na)
    assert a.hi - a.lo > 0.1


def test_contrast_equals_a_paired_t_interval_for_equal_denominators():
    rng = np.random.default_rng(3)
    n = np.full(6, 500.0)
    xa, xb = rng.binomial(500, 0.3, 6).astype(float), rng.binomial(500, 0.2, 6).astype(float)
    d = I.rate_contrast([(1.0, xa, n), (-1.0, xb, n)], bounds=None)
    diff = (xa - xb) / 500
    half = I.t_quantile(5) * diff.std(ddof=1) / math.sqrt(6)
    assert d.value == pytest.approx(diff.mean())
    assert (d.lo, d.hi) == pytest.approx((diff.mean() - half, diff.mean() + half))


def test_a_ratio_interval_stays_positive_and_contains_the_ratio():
    e = I.rate_ratio([10, 12, 9], [100, 100, 100], [30, 28, 33], [100, 100, 100])
    assert e.value == pytest.approx(31 / 91)
    assert 0 < e.lo < e.value < e.hi


def test_replicates_needed_meets_the_paired_t_rule():
    est = I.Estimate(0.02, -0.01, 0.05, 3, "linearised-t", sd_replicate=0.03)
    r = I.replicates_needed(est)
    t = lambda df, lvl: I.t_quantile(df, lvl)  # noqa: E731
    assert (t(r - 1, 0.95) + t(r - 1, 0.6)) * 0.03 / math.sqrt(r) <= 0.02
    assert (t(r - 2, 0.95) + t(r - 2, 0.6)) * 0.03 / math.sqrt(r - 1) > 0.02


def test_a_rate_on_fewer_than_30_cases_is_withheld():
    assert I.rate_withheld(I.pooled_rate([2, 3, 1], [9, 10, 8])) == "27 cases"
    assert I.rate_withheld(I.pooled_rate([2, 3, 1], [10, 10, 10])) is None


# --- coverage ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_nominal_95_percent_intervals_cover_the_truth_93_to_97_percent():
    from simsys.runner import run

    B, R = 800, 3
    res = run(DATA / "coverage.yaml", output_dir=None, workers=2, replicates=B * R).results
    c = res[res["scope"] == "counts"]

    def counts(model, training, group):
        sub = c[(c["model"] == model) & (c["training"] == training) & (c["reference"] == "truth")
                & (c["group"] == group)]
        wide = sub.pivot_table(index="replicate", columns="metric", values="value").sort_index()
        assert len(wide) == B * R
        return wide["fn"].to_numpy(), (wide["tp"] + wide["fn"]).to_numpy()

    fnr = {(t, g): counts("logreg", t, g) for t in ("biased", "clean") for g in ("g=0", "g=1")}
    blocks = np.arange(B * R).reshape(B, R)
    covered = {"rate": 0, "gap": 0, "caused": 0}
    for b in range(B):
        mine = blocks[b]
        rest = np.setdiff1d(np.arange(B * R), mine)

        def pooled(key, idx):
            x, n = fnr[key]
            return x[idx].sum() / n[idx].sum()

        def terms(keys_coefs, idx):
            return [(cf, fnr[k][0][idx], fnr[k][1][idx]) for k, cf in keys_coefs]

        truth_rate = pooled(("biased", "g=1"), rest)
        rate = I.pooled_rate(*(a[mine] for a in fnr[("biased", "g=1")]))
        covered["rate"] += rate.lo <= truth_rate <= rate.hi

        gap_terms = [(("biased", "g=1"), 1.0), (("biased", "g=0"), -1.0)]
        truth_gap = sum(cf * pooled(k, rest) for k, cf in gap_terms)
        gap = I.rate_contrast(terms(gap_terms, mine))
        covered["gap"] += gap.lo <= truth_gap <= gap.hi

        caused_terms = [*gap_terms, (("clean", "g=1"), -1.0), (("clean", "g=0"), 1.0)]
        truth_caused = sum(cf * pooled(k, rest) for k, cf in caused_terms)
        caused = I.rate_contrast(terms(caused_terms, mine), bounds=(-2.0, 2.0))
        covered["caused"] += caused.lo <= truth_caused <= caused.hi
    shares = {k: v / B for k, v in covered.items()}
    print("coverage over", B, "blocks of", R, "replicates:", shares)
    for k, share in shares.items():
        assert 0.93 <= share <= 0.97, (k, share)
