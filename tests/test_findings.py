"""Every number in every sentence simsys writes about a run, checked against the results table.

For a few runs, every finding is rendered and:

1. every number printed in its sentence is one of the finding's recorded numbers (nothing is
   printed that the finding cannot account for);
2. every recorded number is recomputed here, independently, from ``results.parquet`` alone --
   pooled counts, Wilson design-effect intervals, paired contrasts, log ratios, sums -- with plain
   NumPy/pandas written for this test (not simsys.intervals), and must print the same text;
3. the verdict follows from the numbers: a supported contrast has an interval that excludes zero, a
   not-distinguishable one an interval that includes it, and a withheld rate rests on fewer than
   30 cases.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from simsys.findings import NOT_DISTINGUISHABLE, SUPPORTED, TOO_FEW, fmt
from simsys.runner import run

DATA = Path(__file__).parent / "data"


# --- an independent twin of the estimators (docs/metrics.md, "Intervals") --------------------------
class Twin:
    def __init__(self, results: pd.DataFrame, manifest: dict):
        r = results.copy()
        r["group"] = r["group"].fillna("").astype(str)
        self.r = r
        self.reps = sorted(r["replicate"].unique())
        self.manifest = manifest
        self._idx = {}
        for key, sub in r.groupby(["point", "model", "training", "reference", "scope", "group", "metric"]):
            a = np.full(len(self.reps), np.nan)
            for rep, v in zip(sub["replicate"], sub["value"]):
                a[self.reps.index(rep)] = v
            self._idx[tuple(key)] = a

    def values(self, key7):
        p, m, t, ref, s, g, k = key7
        return self._idx.get((p, m, t, ref, s, g, k), np.full(len(self.reps), np.nan))

    def xn(self, key6):
        p, m, t, ref, g, k = key6
        c = {x: self.values((p, m, t, ref, "counts", g, x)) for x in ("tp", "fp", "fn", "tn")}
        k = k.replace("label_", "")
        num, den = {
            "tpr": ("tp", "tp fn"), "fnr": ("fn", "tp fn"), "fpr": ("fp", "fp tn"), "tnr": ("tn", "fp tn"),
            "ppv": ("tp", "tp fp"), "npv": ("tn", "tn fn"), "selection_rate": ("tp fp", "tp fp fn tn"),
            "accuracy": ("tp tn", "tp fp fn tn"), "prevalence": ("tp fn", "tp fp fn tn")}[k]
        return sum(c[x] for x in num.split()), sum(c[x] for x in den.split())

    @staticmethod
    def t(df):
        return stats.t.ppf(0.975, df)

    def rate(self, key6):
        x, n = self.xn(key6)
        ok = np.isfinite(x) & np.isfinite(n) & (n > 0)
        x, n = x[ok], n[ok]
        R = len(x)
        p = x.sum() / n.sum()
        out = {"value": p, "events": x.sum(), "cases": n.sum(), "lo": np.nan, "hi": np.nan}
        if R >= 2:
            z = (x - p * n) / n.mean()
            var = (z ** 2).sum() / (R * (R - 1))
            neff = p * (1 - p) / var if 0 < p < 1 and var > 0 else n.sum()
            q = self.t(R - 1)
            centre = (p + q * q / (2 * neff)) / (1 + q * q / neff)
            half = q / (1 + q * q / neff) * math.sqrt(p * (1 - p) / neff + q * q / (4 * neff ** 2))
            out["lo"], out["hi"] = max(0.0, centre - half), min(1.0, centre + half)
        return out

    def contrast(self, kind, terms, bounds):
        if kind == "rate":
            arrs = [(c, *self.xn(k6)) for c, k6 in terms]
            ok = np.ones(len(self.reps), bool)
            for _, x, n in arrs:
                ok &= np.isfinite(x) & np.isfinite(n) & (n > 0)
            R = ok.sum()
            value, z = 0.0, np.zeros(R)
            for c, x, n in arrs:
                x, n = x[ok], n[ok]
                p = x.sum() / n.sum()
                value += c * p
                z += c * (x - p * n) / n.mean()
            sd_mean = math.sqrt((z ** 2).sum() / (R * (R - 1))) if R > 1 else np.nan
        else:
            arrs = [(c, self.values((*k6[:4], "group", *k6[4:]))) for c, k6 in terms]
            ok = np.ones(len(self.reps), bool)
            for _, v in arrs:
                ok &= np.isfinite(v)
            R = ok.sum()
            d = sum(c * v[ok] for c, v in arrs)
            value = d.mean()
            sd_mean = d.std(ddof=1) / math.sqrt(R) if R > 1 else np.nan
        half = self.t(R - 1) * sd_mean if R > 1 else np.nan
        lo, hi = value - half, value + half
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        return {"value": value, "lo": lo, "hi": hi, "R": R, "sd": sd_mean * math.sqrt(R)}

    def mean(self, key7, bounds):
        v = self.values(key7)
        v = v[np.isfinite(v)]
        R = len(v)
        value = v.mean()
        half = self.t(R - 1) * v.std(ddof=1) / math.sqrt(R) if R > 1 else np.nan
        lo, hi = value - half, value + half
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        return {"value": value, "lo": lo, "hi": hi}

    def ratio(self, ka, kb):
        xa, na = self.xn(ka)
        xb, nb = self.xn(kb)
        R = len(xa)
        pa, pb = xa.sum() / na.sum(), xb.sum() / nb.sum()
        z = (xa - pa * na) / (na.mean() * pa) - (xb - pb * nb) / (nb.mean() * pb)
        half = self.t(R - 1) * math.sqrt((z ** 2).sum() / (R * (R - 1)))
        return {"value": pa / pb, "lo": pa / pb * math.exp(-half), "hi": pa / pb * math.exp(half)}

    def total(self, p, m, t, ref, g):
        groups = [g] if g is not None else sorted({x for x in self.r["group"] if x not in ("", "overall")})
        return float(sum(np.nansum(self.values((p, m, t, ref, "counts", gg, k)))
                         for gg in groups for k in ("tp", "fp", "fn", "tn")))

    def needed(self, est_value, sd, R0, cap=10_000):
        # the paired t test's sample-size rule, power 0.8 (docs/metrics.md)
        effect = abs(est_value)
        r = max(R0 + 1, 2, math.ceil(((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / effect) ** 2))
        while r < cap:
            if (stats.t.ppf(0.975, r - 1) + stats.t.ppf(0.8, r - 1)) * sd / math.sqrt(r) <= effect:
                return r
            r += 1 if r < 100 else max(1, r // 20)
        return cap

    def recompute(self, number, finding):
        src = number.source
        kind = src[0]
        if kind == "rate":
            return self.rate(src[1])[src[2]]
        if kind == "contrast":
            return self.contrast(src[1], src[2], src[3])[src[4]]
        if kind == "mean":
            return self.mean(src[1], src[2])[src[3]]
        if kind == "ratio":
            return self.ratio(src[1], src[2])[src[3]]
        if kind == "setting":
            cell = next(c for c in self.manifest["cells"] if c["point"] == src[1])
            return cell["settings"].get(src[2], number.value)
        if kind == "replicates":
            return len(self.reps)
        if kind == "points":
            return self.r["point"].nunique()
        if kind == "sum":
            return self.total(*src[1:])
        if kind == "fraction":
            return self.total(*src[1][1:]) / self.total(*src[2][1:])
        if kind == "constant":
            return src[2]
        if kind == "manifest":
            return self.manifest[src[1]][src[2]]
        if kind == "flags":
            return np.nansum(self.values(src[1]))
        if kind == "needed":
            c = self.contrast(*src[1][1:4])
            return self.needed(c["value"], c["sd"], c["R"])
        if kind == "comparison":
            _, metric, a, b, grp, ref, which = src
            rate = metric not in ("auroc", "brier", "ece", "calibration_in_the_large")
            count = 0
            for p in sorted(self.r["point"].unique()):
                terms = [(1.0, (p, a, "biased", "truth", grp, metric)), (-1.0, (p, a, "biased", "truth", ref, metric)),
                         (-1.0, (p, b, "biased", "truth", grp, metric)), (1.0, (p, b, "biased", "truth", ref, metric))]
                c = self.contrast("rate" if rate else "mean", terms, (-2.0, 2.0))
                sign = 1 if metric in ("fnr", "fpr", "brier", "ece") else -1
                unclear = not (c["lo"] > 0 or c["hi"] < 0)
                cls = "unclear" if unclear else ("smaller" if sign * c["value"] < 0 else "larger")
                count += cls == which
            return count
        raise AssertionError(f"unknown recipe {kind!r} in {finding.key}")


NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?%?")


def _tokens(text: str, labels: list[str]) -> list[str]:
    text = text.replace("95% interval", "interval")
    for lab in sorted(labels, key=len, reverse=True):
        text = text.replace(lab, " ")
    return [t.rstrip(",") for t in NUMBER.findall(text)]


def _check_run(result):
    twin = Twin(result.results, result.manifest)
    view = result.view
    labels = [*view.groups, *view.models, *view.paths, result.manifest["scenario_name"],
              "equal_opportunity_difference", "equalized_odds_difference", "demographic_parity_difference",
              "four-fifths"]
    assert result.findings, "a run with results has findings"
    for f in result.findings:
        printed = {n.text for n in f.numbers}
        # a setting's value is printed as written (it may be text such as ckd3_2009): recorded,
        # checked through its recipe below, and not split into number tokens here
        text = f.text
        for st in sorted({n.text for n in f.numbers if n.style == "setting"}, key=len, reverse=True):
            text = text.replace(f"= {st}", "= ")  # only where a setting is printed: "path = value"
        for tok in _tokens(text, labels):
            assert tok in printed, (f.key, tok, f.text)
        for n in f.numbers:
            expected = twin.recompute(n, f)
            assert fmt(expected, n.style) == n.text, (f.key, n.source, n.text, expected)
        # the verdict follows from the quantities
        if f.kind in ("gap", "caused", "trend", "amplification", "audit") and f.verdict != TOO_FEW:
            q = f.quantities[{"gap": "gap", "caused": "caused", "trend": "change", "amplification": "added",
                              "audit": "difference"}[f.kind]] if f.kind != "audit" or "difference" in f.quantities else None
            if q is not None and q.has_interval:
                assert (f.verdict == SUPPORTED) == (q.lo > 0 or q.hi < 0), f.key
                assert f.verdict in (SUPPORTED, NOT_DISTINGUISHABLE)
        if f.verdict == TOO_FEW:
            assert "too few cases" in f.text
    return result


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return run(DATA / "runner_small.yaml", output_dir=tmp_path_factory.mktemp("f"), workers=1)


def test_every_number_of_every_finding_matches_the_results_small_sweep(small_run):
    _check_run(small_run)


def test_every_number_matches_in_a_run_with_fairness_methods(tmp_path):
    _check_run(run(DATA / "runner_blum_stangl_eo.yaml", output_dir=tmp_path, workers=1, replicates=3))


def test_every_number_matches_in_a_run_with_label_bias_on_the_audit_labels(tmp_path):
    _check_run(run(DATA / "runner_label_bias.yaml", output_dir=tmp_path, workers=1, replicates=3))


def test_every_number_matches_in_a_run_that_adds_replicates_until_precise(tmp_path):
    res = _check_run(run(DATA / "runner_small.yaml", output_dir=tmp_path, workers=1, precision=0.03))
    prec = res.manifest["precision"]
    assert prec["met"] and prec["reached"] <= 0.03 and prec["replicates"] == res.view.R > 2
    assert any(f.kind == "precision" and f.verdict == SUPPORTED for f in res.findings)
    # the same seed gives the same number of replicates and the same results
    again = run(DATA / "runner_small.yaml", output_dir=None, workers=2, precision=0.03)
    pd.testing.assert_frame_equal(res.results, again.results)


def test_summary_md_and_console_render_the_findings_sentences(small_run):
    from simsys.runner import format_summary

    md = (small_run.run_dir / "summary.md").read_text(encoding="utf-8")
    console = " ".join(format_summary(small_run).split())
    for f in small_run.findings:
        assert f.text in md, f.key
        if f.kind not in ("gap", "caused"):
            assert f.text in console or f.text.replace("  ", " ") in console, f.key


def test_no_negative_zero_and_signs_are_explicit():
    assert fmt(-0.0000001, "pp") == "0.0"
    assert fmt(-0.0004, "sdec") == "0.000"
    assert fmt(0.0123, "pp") == "+1.2"
    assert fmt(-0.0123, "pp") == "-1.2"
    assert fmt(0.5774, "pct") == "57.7%"
    assert fmt(0.0004, "pct") == "0.04%"
    assert fmt(12345.0, "count") == "12,345"
