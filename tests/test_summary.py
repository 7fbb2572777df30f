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
from simsys.scenario import from_dict, load_scenario
from simsys.summary import SUMMARY_KEYS, _bounds, rate_counts, summarise

DATA = Path(__file__).parent / "data"


def _scalar(key, a, counts, refs):
    point, model, training, reference, scope, group, metric = key
    if scope == "disparity" and metric.endswith("_minus_reference") and metric[:-16] in ("fnr", "tpr", "fpr", "tnr", "ppv", "npv", "selection_rate", "accuracy", "prevalence"):
        ref = refs[(point, model, training, reference, metric)]
        xa, na = rate_counts(counts[(point, model, training, reference, group)], metric[:-16])
        xb, nb = rate_counts(counts[(point, model, training, reference, ref)], metric[:-16])
        return I.rate_contrast([(1.0, xa, na), (-1.0, xb, nb)])
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


def _with_reference(name: str, group: dict):
    sc = load_scenario(DATA / name)
    data = {**sc.data, "roles": {**sc.data["roles"], "reference_group": group}}
    return from_dict(data, source=sc.source)


@pytest.mark.parametrize("scenario", ["runner_small.yaml", "runner_blum_stangl_eo.yaml", "reference"])
def test_every_summary_row_equals_the_scalar_estimators(scenario):
    sc = _with_reference("runner_small.yaml", {"g": 1}) if scenario == "reference" else DATA / scenario
    result = run(sc, output_dir=None, workers=1, replicates=3)
    res = result.results
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
    # the reference group of each cell: the one group without a _minus_reference row
    refs = {}
    for key in arrays:
        if key[4] == "disparity" and key[6].endswith("_minus_reference"):
            head = (key[0], key[1], key[2], key[3], key[6])
            refs.setdefault(head, {g for (*h, g) in counts if tuple(h) == key[:4] and g not in ("", "overall")})
            refs[head].discard(key[5])
    refs = {k: v.pop() for k, v in refs.items() if len(v) == 1}
    methods = set()
    for row in s.itertuples(index=False):
        key = tuple(getattr(row, k) for k in SUMMARY_KEYS)
        e = _scalar(key, arrays[key], counts, refs)
        methods.add(e.method)
        assert row.method == e.method, key
        assert row.n_replicates == e.replicates, key
        for col, want in (("estimate", e.value), ("lo", e.lo), ("hi", e.hi)):
            got = getattr(row, col)
            assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, rel=1e-12, abs=1e-14), (key, col)
    assert {"wilson-deff", "mean-t", "sum"} <= methods
    if scenario == "reference":
        assert "linearised-t" in methods and refs
        # the summary's difference to the reference group is the findings' gap, interval included
        for f in (f for f in result.findings if f.kind == "gap" and f.subject["metric"] == "fnr"):
            grp, _ref = f.subject["groups"]
            row = s[(s["point"] == f.subject["point"]) & (s["model"] == f.subject["model"])
                    & (s["training"] == "biased") & (s["reference"] == "truth") & (s["group"] == grp)
                    & (s["metric"] == "fnr_minus_reference")].iloc[0]
            q = f.quantities["gap"]
            assert (row["estimate"], row["lo"], row["hi"]) == pytest.approx((q.value, q.lo, q.hi), rel=1e-12)
    # rates never leave [0, 1]
    rates = s[s["method"] == "wilson-deff"]
    assert ((rates["lo"] >= 0) & (rates["hi"] <= 1)).all()
    assert isinstance(s, pd.DataFrame)
