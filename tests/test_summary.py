"""The summary table (simsys.summary.summarise, vectorised over thousands of keys) equals, row by
row, the scalar estimators of simsys.intervals applied to that key's values over replicates."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simsys import intervals as I
from simsys.runner import run
from simsys.summary import SUMMARY_KEYS, _bounds, rate_counts, summarise

DATA = Path(__file__).parent / "data"


def _scalar(key, a, counts):
    point, model, training, reference, scope, group, metric = key
    if scope == "counts":
        ok = a[np.isfinite(a)]
        return I.Estimate(float(ok.sum()) if len(ok) else math.nan, math.nan, math.nan, len(ok), "sum")
    if scope == "group":
        c = counts.get((point, model, training, reference, group))
        xn = rate_counts(c, metric) if c else None
        if xn is not None:
            return I.pooled_rate(*xn)
    if scope == "method" and metric.startswith("fair_only_against_observed."):
        return I.replicate_share(a)
    return I.mean_contrast([(1.0, a)], bounds=_bounds(scope, metric))


@pytest.mark.parametrize("scenario", ["runner_small.yaml", "runner_blum_stangl_eo.yaml"])
def test_every_summary_row_equals_the_scalar_estimators(scenario):
    res = run(DATA / scenario, output_dir=None, workers=1, replicates=3).results
    s = summarise(res)
    r = res.assign(group=res["group"].fillna("").astype(str))
    reps = sorted(r["replicate"].unique())
    arrays = {}
    for key, sub in r.groupby(list(SUMMARY_KEYS), sort=False, dropna=False):
        a = np.full(len(reps), np.nan)
        a[[reps.index(x) for x in sub["replicate"]]] = sub["value"].to_numpy()
        arrays[key] = a
    counts = {}
    for key, a in arrays.items():
        if key[4] == "counts":
            counts.setdefault((key[0], key[1], key[2], key[3], key[5]), {})[key[6]] = a
    assert len(s) == len(arrays)
    methods = set()
    for row in s.itertuples(index=False):
        key = tuple(getattr(row, k) for k in SUMMARY_KEYS)
        e = _scalar(key, arrays[key], counts)
        methods.add(e.method)
        assert row.method == e.method, key
        assert row.n_replicates == e.replicates, key
        for col, want in (("estimate", e.value), ("lo", e.lo), ("hi", e.hi)):
            got = getattr(row, col)
            assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, rel=1e-12, abs=1e-14), (key, col)
    assert {"wilson-deff", "mean-t", "sum"} <= methods
    # rates never leave [0, 1]
    rates = s[s["method"] == "wilson-deff"]
    assert ((rates["lo"] >= 0) & (rates["hi"] <= 1)).all()
    assert isinstance(s, pd.DataFrame)
