"""Findings: every statement simsys makes about a run, as data held to its numbers.

A :class:`Finding` has a subject (which sweep point, model, metric, groups), its quantities with
their 95% intervals (:class:`simsys.intervals.Estimate`), the support behind them (cases, events,
replicates), the comparison that backs it, a verdict and the sentence that says it:

- ``supported``: the numbers back the statement (for a difference: its paired 95% interval
  excludes zero; for a rate: it meets the presentation standard of ``docs/metrics.md``);
- ``not distinguishable``: the interval includes zero; the sentence says so, with roughly how many
  replicates would be needed to tell (from the spread this run measured);
- ``too few cases``: a rate behind it rests on fewer cases than :data:`simsys.intervals.MIN_CASES`
  (or fails the NCHS width rules); the number is withheld and the sentence says what would fix it.

This module is the only place where a sentence with a number about a run is composed. The console
summary, ``summary.md``, ``report.html`` and ``simsys.run(...).findings`` all render these objects.
Every number in a sentence is a :class:`Number` that records how to recompute it from the results
table (``source``), so a test can check every sentence against ``results.parquet``.

Gaps are signed and name the groups: "the compared group minus the reference group", where the
reference group is ``roles.reference_group`` (else the largest group of the test population) and
the compared group is the one worst off on that metric at the most-biased sweep point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from simsys import intervals as I
from simsys.metrics import DEFAULT_CHECK_METRIC, DEFAULT_CHECK_TOLERANCE
from simsys.summary import METRIC_RANGE, RATE_COUNTS, rate_counts

SUPPORTED = "supported"
NOT_DISTINGUISHABLE = "not distinguishable"
TOO_FEW = "too few cases"
VERDICTS = (SUPPORTED, NOT_DISTINGUISHABLE, TOO_FEW)

#: Metrics the headline findings speak about, when the run has them (in this order).
HEADLINE_METRICS = ("fnr", "auroc")
#: Metrics where a higher value is worse for the group (the rest: lower is worse).
WORSE_IF_HIGHER = frozenset({"fnr", "fpr", "brier", "ece"})
#: Aequitas' fairness threshold tau: a disparity ratio within [tau, 1/tau] counts as parity
#: (Saleiro et al. 2018, the "four-fifths rule" of US employment law).
PARITY_TAU = 0.8
#: Beyond this many replicates, a difference is reported as too small to tell from zero in practice.
NEEDED_CAP = 1000

NAMES = {
    "fnr": "false-negative rate", "fpr": "false-positive rate", "tpr": "true-positive rate",
    "tnr": "true-negative rate", "ppv": "positive predictive value", "npv": "negative predictive value",
    "selection_rate": "selection rate", "accuracy": "accuracy", "auroc": "AUROC",
    "brier": "Brier score", "ece": "expected calibration error", "prevalence": "prevalence",
    "calibration_in_the_large": "calibration in the large",
}
SHORT = {"fnr": "FNR", "fpr": "FPR", "tpr": "TPR", "tnr": "TNR", "ppv": "PPV", "npv": "NPV",
         "auroc": "AUROC", "selection_rate": "selection rate", "accuracy": "accuracy"}
#: What the denominator of a rate counts ("of 490 true melanoma cases").
CASES = {"tpr": "true {t} cases", "fnr": "true {t} cases", "fpr": "patients without {t}",
         "tnr": "patients without {t}", "ppv": "positive calls", "npv": "negative calls",
         "selection_rate": "patients", "accuracy": "patients", "prevalence": "patients"}


# --- numbers ---------------------------------------------------------------------------------------
def _nz(x: float) -> float:
    return 0.0 if x == 0 else x


def fmt(value: float, style: str) -> str:
    """A number as simsys prints it (one rule for console, summary.md and the report).

    ``pct``: a rate as a percentage, one decimal (two below 0.1%); ``pp``: a difference of rates in
    percentage points, signed; ``dec``: three decimals; ``sdec``: three decimals, signed; ``ratio``:
    two decimals; ``count``: a whole number with thousands separators; ``int``; ``setting``: as
    written in the scenario.
    """
    if style == "setting":
        return _setting_text(value)
    if value is None or not math.isfinite(value):
        return "n/a"
    if style == "pct":
        v = 100 * value
        s = f"{v:.2f}%" if 0 < abs(v) < 0.1 else f"{v:.1f}%"
    elif style == "pp":
        s = f"{100 * value:+.1f}"
    elif style == "upp":
        s = f"{100 * abs(value):.1f}"
    elif style == "udec":
        s = f"{abs(value):.3f}"
    elif style == "dec":
        s = f"{value:.3f}"
    elif style == "sdec":
        s = f"{value:+.3f}"
    elif style == "ratio":
        s = f"{value:.2f}"
    elif style in ("count", "int"):
        s = f"{round(value):,}"
    else:
        raise ValueError(style)
    # no negative zero: a value that rounds to zero is printed without a sign
    if s.lstrip("+-").strip("%0.,") == "":
        s = s.lstrip("+-")
    return s


def _setting_text(value: Any) -> str:
    from simsys.explain import number

    return number(value)


@dataclass(frozen=True)
class Number:
    """One number as a sentence shows it, and how to recompute it from the results table.

    ``source`` is a tuple whose first item names the recipe (``rate``, ``contrast``, ``ratio``,
    ``mean``, ``setting``, ``replicates``, ``constant``, ``needed``); see ``docs/report.md``.
    """

    text: str
    value: float | str
    style: str
    source: tuple


class _Text:
    """Builds a sentence piece by piece, recording every number it prints."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.numbers: list[Number] = []

    def __iadd__(self, text: str) -> _Text:
        self.parts.append(text)
        return self

    def num(self, value: Any, style: str, source: tuple) -> str:
        text = fmt(value, style)
        self.numbers.append(Number(text, value, style, source))
        return text

    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class Finding:
    """One statement about a run (see the module docstring)."""

    key: str
    kind: str
    subject: dict
    quantities: dict[str, I.Estimate]
    verdict: str
    backing: str
    support: dict
    text: str
    numbers: list[Number] = field(default_factory=list)
    remedy: str | None = None
    headline: bool = False

    def as_row(self) -> dict:
        row = {"key": self.key, "kind": self.kind, "verdict": self.verdict, "headline": self.headline,
               "text": self.text, "backing": self.backing, "remedy": self.remedy or ""}
        row.update({f"subject.{k}": v for k, v in self.subject.items()})
        for name, q in self.quantities.items():
            row[f"{name}"] = q.value
            row[f"{name}.lo"] = q.lo
            row[f"{name}.hi"] = q.hi
        row.update({f"support.{k}": v for k, v in self.support.items()})
        return row


def precision_reached(findings: Sequence[Finding]) -> tuple[float, int]:
    """(widest half-width, number withheld) of the headline intervals: the gap and the caused part
    per headline metric and plain model at the most-biased point (``experiment.precision``)."""
    widest, withheld = 0.0, 0
    for f in findings:
        if not f.headline or f.kind not in ("gap", "caused"):
            continue
        if f.verdict == TOO_FEW:
            withheld += 1
            continue
        q = f.quantities["gap" if f.kind == "gap" else "caused"]
        widest = max(widest, q.half_width if q.has_interval else math.inf)
    return widest, withheld


def findings_frame(findings: Sequence[Finding]) -> pd.DataFrame:
    """The findings as a table (one row each; quantities with ``.lo`` / ``.hi`` columns)."""
    return pd.DataFrame([f.as_row() for f in findings])


# --- the run, as findings see it -------------------------------------------------------------------
class RunView:
    """A run's results indexed for findings: per-replicate arrays, counts, groups and points.

    Built from the results table, the resolved scenario and the run's manifest (the runner passes
    its in-memory ones; the report reads them from the run folder).
    """

    def __init__(self, results: pd.DataFrame, scenario, manifest: dict):
        from simsys.groups import GroupCoding

        self.scenario = scenario
        self.manifest = manifest
        self._arrays: dict[tuple, np.ndarray] = {}
        self._reasons: dict[tuple, str] = {}
        self.replicates = []
        if len(results):
            # one array over replicates per result key, built vectorised (runs have many rows)
            res = results.reset_index(drop=True)
            res = res.assign(group=res["group"].fillna("").astype(str), point=res["point"].astype(np.int64))
            cols = ["point", "model", "training", "reference", "scope", "group", "metric"]
            codes = res.groupby(cols, sort=False, dropna=False).ngroup().to_numpy()
            first = res.drop_duplicates(cols).index.to_numpy()
            reps = np.sort(res["replicate"].unique())
            self.replicates = [int(r) for r in reps]
            V = np.full((len(first), len(reps)), np.nan)
            V[codes, np.searchsorted(reps, res["replicate"].to_numpy())] = res["value"].to_numpy(np.float64)
            keys = list(zip(*(res.loc[first, c].tolist() for c in cols)))
            self._arrays = dict(zip(keys, V))
            why = res["reason"]
            has = why.notna() & (why.astype(str) != "")
            for i, w in zip(codes[has.to_numpy()], why[has]):
                self._reasons[keys[i]] = str(w)
        self.R = len(self.replicates)
        coding = GroupCoding.of(scenario)
        self.groups: list[str] = list(coding.labels)
        self.target = scenario.spec.roles.target
        cells = manifest.get("cells") or []
        by_point: dict[int, dict] = {}
        for c in cells:
            by_point.setdefault(int(c["point"]), dict(c.get("settings") or {}))
        n_points = max([k[0] for k in self._arrays] + list(by_point) + [0]) + 1
        self.points = [by_point.get(i, {}) for i in range(n_points)]
        self.paths = list(dict.fromkeys(p for pt in self.points for p in pt))
        from simsys.scenario import get_path

        for pt in self.points:
            for path in self.paths:
                pt.setdefault(path, get_path(scenario.data, path))
        self.varying = [p for p in self.paths if len({repr(pt.get(p)) for pt in self.points}) > 1]
        present = {k[1] for k in self._arrays}
        names = []
        for m in manifest.get("models", []):
            nm = m if isinstance(m, str) else (m.get("name") or _model_label(m.get("model")))
            if nm in present and nm not in names:
                names.append(nm)
        self.models = names + sorted(present - set(names) - {"data"})
        self.baseline = manifest.get("baseline")
        with_method_rows = {k[1] for k in self._arrays if k[4] == "method"}
        self.methods = [m for m in self.models if m in with_method_rows]
        #: ``roles.reference_group`` as a label, if the scenario names one
        self.fixed_reference = coding.labels[coding.reference] if coding.reference is not None else None
        #: the reference group of the metric being worded (set by :func:`build_findings`)
        self.reference_group = self.fixed_reference or (self.groups[0] if self.groups else None)

    # -- access
    def has(self, point, model, training, reference, scope, group, metric) -> bool:
        return (point, model, training, reference, scope, group, metric) in self._arrays

    def values(self, point, model, training, reference, scope, group, metric) -> np.ndarray:
        a = self._arrays.get((point, model, training, reference, scope, group, metric))
        return a if a is not None else np.full(self.R, np.nan)

    def reason(self, point, model, training, reference, scope, group, metric) -> str | None:
        return self._reasons.get((point, model, training, reference, scope, group, metric))

    def counts(self, point, model, training, reference, group) -> dict[str, np.ndarray] | None:
        out = {k: self._arrays.get((point, model, training, reference, "counts", group, k))
               for k in ("tp", "fp", "fn", "tn")}
        return None if any(v is None for v in out.values()) else out

    def has_metric(self, metric: str) -> bool:
        return any(k[6] == metric and k[4] == "group" for k in self._arrays)

    def setting(self, point: int) -> str:
        """``keep_dark = 0.03`` (the varying swept settings at a point)."""
        from simsys.explain import setting_label

        if not self.varying:
            return "the scenario's settings"
        return ", ".join(f"{setting_label(p)} = {fmt(self.points[point].get(p), 'setting')}" for p in self.varying)

    # -- which points the key findings speak about
    def bias_distance(self) -> np.ndarray:
        """Per point: total-variation distance between (group, recorded label) in the biased
        training data and (group, true label) in its clean twin, pooled over replicates."""
        out = np.full(len(self.points), np.nan)
        for p in range(len(self.points)):
            b, c = [], []
            for g in self.groups:
                cb = self.counts(p, "data", "biased", "truth", g)
                cc = self.counts(p, "data", "clean", "truth", g)
                if cb is None or cc is None:
                    break
                b += [np.nansum(cb["tp"] + cb["fp"]), np.nansum(cb["fn"] + cb["tn"])]
                c += [np.nansum(cc["tp"] + cc["fn"]), np.nansum(cc["fp"] + cc["tn"])]
            else:
                b, c = np.array(b), np.array(c)
                if b.sum() > 0 and c.sum() > 0:
                    out[p] = 0.5 * np.abs(b / b.sum() - c / c.sum()).sum()
        return out

    def chosen_points(self) -> tuple[int, int]:
        """(least-biased, most-biased) sweep point; ties go to the earlier / later point."""
        d = self.bias_distance()
        P = len(self.points)
        if not np.isfinite(d).any():
            return 0, P - 1
        lo = int(np.nanargmin(d))
        hi = int(P - 1 - np.nanargmax(d[::-1]))
        return lo, hi


def _model_label(model: Any) -> str:
    from simsys.models import model_label

    return model_label(model)


# --- estimates with their recipes --------------------------------------------------------------------
def _rate(view: RunView, point, model, training, reference, group, metric) -> tuple[I.Estimate, tuple]:
    c = view.counts(point, model, training, reference, group)
    xn = rate_counts(c, metric) if c is not None else None
    src = ("rate", (point, model, training, reference, group, metric))
    if xn is None:
        return I.NAN, src
    return I.pooled_rate(*xn), src


def _rate_terms(view: RunView, terms: Iterable[tuple[float, tuple]]) -> list | None:
    out = []
    for c, (point, model, training, reference, group, metric) in terms:
        cnt = view.counts(point, model, training, reference, group)
        xn = rate_counts(cnt, metric) if cnt is not None else None
        if xn is None:
            return None
        out.append((c, *xn))
    return out


def _contrast(view: RunView, terms: list[tuple[float, tuple]], *, rate: bool,
              bounds=(-1.0, 1.0)) -> tuple[I.Estimate, tuple]:
    """A paired contrast: of pooled rates (``rate``), else of per-replicate group values."""
    src = ("contrast", "rate" if rate else "mean", tuple((c, t) for c, t in terms), bounds)
    if rate:
        arrays = _rate_terms(view, terms)
        if arrays is None:
            return I.NAN, src
        return I.rate_contrast(arrays, bounds=bounds), src
    arrays = [(c, view.values(p, m, t, r, "group", g, k)) for c, (p, m, t, r, g, k) in terms]
    return I.mean_contrast(arrays, bounds=bounds), src


def _group_value(view: RunView, point, model, training, reference, group, metric) -> tuple[I.Estimate, tuple]:
    if metric in RATE_COUNTS or metric.startswith("label_"):
        return _rate(view, point, model, training, reference, group, metric)
    a = view.values(point, model, training, reference, "group", group, metric)
    bounds = METRIC_RANGE.get(metric)
    return (I.mean_contrast([(1.0, a)], bounds=bounds),
            ("mean", (point, model, training, reference, "group", group, metric), bounds))


def _style(metric: str) -> tuple[str, str]:
    """(style of the value, style of a difference) for a metric."""
    return ("pct", "pp") if metric in RATE_COUNTS or metric.startswith("label_") else ("dec", "sdec")


def _auroc_support(view: RunView, point, model, training, reference, group) -> float:
    c = view.counts(point, model, training, reference, group)
    if c is None:
        return math.nan
    return float(min(np.nansum(c["tp"] + c["fn"]), np.nansum(c["fp"] + c["tn"])))


def _withheld(view: RunView, est: I.Estimate, metric: str, point, model, training, reference, group) -> str | None:
    """Why a group's value should not be stated (too few cases), or None."""
    if metric in RATE_COUNTS or metric.startswith("label_"):
        return I.rate_withheld(est)
    if metric == "auroc":
        n = _auroc_support(view, point, model, training, reference, group)
        if math.isfinite(n) and n < I.MIN_CASES:
            return f"{n:,.0f} patients in the smaller class"
    return None


def _remedy_cases(view: RunView, est: I.Estimate) -> str:
    """What would give a withheld rate enough cases: more replicates, or larger populations."""
    cases = est.cases or 0.0
    R = max(view.R, 1)
    if cases <= 0:
        return ("there were no cases at all: make the group larger (the population's n, or the "
                "bias that removes it) before this can be measured")
    factor = I.MIN_CASES / cases
    reps = math.ceil(R * factor)
    return (f"about {reps:,} replicates (--replicates {reps}), or populations about "
            f"{math.ceil(factor * 10) / 10:g} times larger, would give the {I.MIN_CASES} cases needed")


def _verdict_text(t: _Text, est: I.Estimate, src: tuple, *, what: str) -> tuple[str, str | None]:
    """Append ``; not distinguishable ...`` or nothing; return (verdict, remedy)."""
    if not est.has_interval:
        t += f"; with one replicate the {what} has no interval (run with --replicates 2 or more)"
        return NOT_DISTINGUISHABLE, "run with --replicates 2 or more"
    if est.excludes(0.0):
        return SUPPORTED, None
    if _exactly_zero(est):
        t += f" (exactly zero in each of the {t.num(est.replicates, 'int', ('replicates',))} replicates)"
        return SUPPORTED, None
    need = I.replicates_needed(est, cap=NEEDED_CAP)
    t += f": not distinguishable from zero with {t.num(est.replicates, 'int', ('replicates',))} replicates"
    if need is not None and need >= NEEDED_CAP:
        t += (f" (a {what} this small would need more than {t.num(NEEDED_CAP, 'int', ('constant', 'cap', NEEDED_CAP))} "
              "replicates to tell from zero)")
        return NOT_DISTINGUISHABLE, None
    if need is not None:
        t += (f" (about {t.num(need, 'int', ('needed', src))} replicates would be needed to tell a "
              f"{what} of this size from zero)")
        return NOT_DISTINGUISHABLE, f"about {need} replicates (--replicates {need})"
    return NOT_DISTINGUISHABLE, None


def _exactly_zero(est: I.Estimate) -> bool:
    """A contrast that is zero in every replicate (a bias that changes nothing the model sees)."""
    return est.has_interval and max(abs(est.value), abs(est.lo), abs(est.hi)) < 1e-12


def _iv(t: _Text, est: I.Estimate, style: str, src: tuple) -> str:
    """`` (95% interval a to b)`` or empty."""
    if not est.has_interval:
        return ""
    return (f" (95% interval {t.num(est.lo, style, (*src, 'lo'))} to "
            f"{t.num(est.hi, style, (*src, 'hi'))})")


def _value_with_support(t: _Text, view: RunView, est: I.Estimate, src: tuple, metric: str) -> str:
    """``57.7% (283 of 490 true melanoma cases)`` or ``0.602``."""
    style = _style(metric)[0]
    out = t.num(est.value, style, (*src, "value"))
    if style == "pct" and est.cases is not None:
        what = CASES.get(metric.replace("label_", ""), "cases").format(t=view.target)
        out += (f" ({t.num(est.events, 'count', (*src, 'events'))} of "
                f"{t.num(est.cases, 'count', (*src, 'cases'))} {what})")
    return out


# --- the findings ----------------------------------------------------------------------------------
def headline_metrics(view: RunView) -> list[str]:
    """The metrics the findings speak about first: ``experiment.headline`` when the scenario sets
    it, else FNR and AUROC (when the run has them)."""
    chosen = (view.scenario.spec.experiment or {}).get("headline")
    if isinstance(chosen, list):
        found = [k for k in chosen if isinstance(k, str) and view.has_metric(k)]
        if found:
            return found
    found = [k for k in HEADLINE_METRICS if view.has_metric(k)]
    if found:
        return found
    return [k for k in ("tpr", "fpr", "accuracy") if view.has_metric(k)][:1]


def group_pair(view: RunView, metric: str, point: int) -> tuple[str, str] | None:
    """(compared, reference) groups for a metric: the reference is ``roles.reference_group`` when
    the scenario names one, else the group best off on ``metric``; the compared group is the one
    worst off relative to it. Judged at ``point`` on the models trained on the biased data,
    against the truth, averaged over models."""
    values = {}
    for g in view.groups:
        vs = []
        for m in view.models:
            v, _ = _group_value(view, point, m, "biased", "truth", g, metric)
            if v.defined:
                vs.append(v.value if metric in WORSE_IF_HIGHER else -v.value)
        if vs:
            values[g] = float(np.mean(vs))  # "badness": higher is worse off
    if len(values) < 2:
        return None
    ref = view.fixed_reference
    if ref is None or ref not in values:
        ref = min(values, key=lambda g: (values[g], view.groups.index(g)))
    others = {g: v for g, v in values.items() if g != ref}
    worst = max(others, key=lambda g: (others[g], -view.groups.index(g)))
    return worst, ref


def build_findings(view: RunView) -> list[Finding]:
    """Every finding of a run, in the order a reader meets them."""
    if not view.models or view.R == 0:
        return []
    lo, hi = view.chosen_points()
    out: list[Finding] = []
    out += _representation(view, lo, hi)
    out += _training_labels(view, hi)
    for metric in headline_metrics(view):
        pair = group_pair(view, metric, hi)
        if pair is None:
            continue
        grp, view.reference_group = pair
        for p in range(len(view.points)):
            for m in view.models:
                if m in view.methods and m != view.baseline:
                    continue
                out.append(_gap(view, metric, p, m, grp, headline=(p == hi)))
                out.append(_caused(view, metric, p, m, grp, headline=(p == hi)))
        if lo != hi:
            for m in view.models:
                if m in view.methods and m != view.baseline:
                    continue
                out.append(_trend(view, metric, lo, hi, m, grp))
        out += _comparisons(view, metric, grp)
        for m in view.models:
            if m in view.methods and m != view.baseline:
                continue
            out += _audit(view, metric, hi, m, grp)
            out += _amplification(view, metric, hi, m, grp)
            out += _parity(view, metric, hi, m, grp)
    out += _methods(view, hi)
    out += _precision(view)
    out = [f for f in out if f is not None]
    lede = _lede(view, out, hi)
    return ([lede] if lede else []) + out


def _subject(view: RunView, **kw) -> dict:
    p = kw.get("point")
    if p is not None:
        kw["setting"] = view.setting(p)
    return kw


# gap: compared group minus reference group, one model, one point ------------------------------------
def _gap(view: RunView, metric, p, m, grp, *, headline=False, training="biased") -> Finding:
    ref = view.reference_group
    is_rate = metric in RATE_COUNTS
    va, sa = _group_value(view, p, m, training, "truth", grp, metric)
    vb, sb = _group_value(view, p, m, training, "truth", ref, metric)
    gap, sg = _contrast(view, [(1.0, (p, m, training, "truth", grp, metric)),
                               (-1.0, (p, m, training, "truth", ref, metric))], rate=is_rate)
    t = _Text()
    _vstyle, dstyle = _style(metric)
    name = NAMES.get(metric, metric)
    t += f"At {_setting(t, view, p)}, {m} (trained on the {training} data) had {_a(name)} of "
    why = (_withheld(view, va, metric, p, m, training, "truth", grp)
           or _withheld(view, vb, metric, p, m, training, "truth", ref))
    t += f"{_value_with_support(t, view, va, sa, metric)} among {grp} against "
    t += f"{_value_with_support(t, view, vb, sb, metric)} among {ref}"
    remedy = None
    if why:
        short = va if _withheld(view, va, metric, p, m, training, "truth", grp) else vb
        t += f"; too few cases to state a gap ({why} behind one of the rates)"
        verdict, remedy = TOO_FEW, _remedy_cases(view, short)
    else:
        unit = " percentage points" if dstyle == "pp" else ""
        t += f": a gap ({grp} minus {ref}) of {t.num(gap.value, dstyle, (*sg, 'value'))}{unit}"
        t += _iv(t, gap, dstyle, sg)
        verdict, remedy = _verdict_text(t, gap, sg, what="gap")
    t += "."
    support = {"replicates": gap.replicates, "cases_compared": va.cases, "cases_reference": vb.cases}
    return Finding(f"gap/{metric}/{p}/{m}/{training}", "gap",
                   _subject(view, point=p, model=m, metric=metric, groups=(grp, ref), training=training),
                   {"gap": gap, "compared": va, "reference": vb}, verdict,
                   f"difference of pooled rates paired by replicate, t interval ({gap.replicates - 1} df)"
                   if is_rate else f"paired difference over replicates, t interval ({gap.replicates - 1} df)",
                   support, t.text(), t.numbers, remedy, headline)


def _a(word: str) -> str:
    """``a false-negative rate``, ``an AUROC``."""
    return ("an " if word[:1].lower() in "aeiou" or word.startswith(("AUROC", "FNR", "FPR")) else "a ") + word


def _setting(t: _Text, view: RunView, p: int) -> str:
    """The varying settings at a point, each value recorded as a number of the sentence."""
    from simsys.explain import setting_label

    if not view.varying:
        return "the scenario's settings"
    return ", ".join(f"{setting_label(path)} = "
                     f"{t.num(view.points[p].get(path), 'setting', ('setting', p, path))}"
                     for path in view.varying)


def _caused(view: RunView, metric, p, m, grp, *, headline=False) -> Finding:
    ref = view.reference_group
    is_rate = metric in RATE_COUNTS
    terms = [(1.0, (p, m, "biased", "truth", grp, metric)), (-1.0, (p, m, "biased", "truth", ref, metric)),
             (-1.0, (p, m, "clean", "truth", grp, metric)), (1.0, (p, m, "clean", "truth", ref, metric))]
    caused, sc = _contrast(view, terms, rate=is_rate, bounds=(-2.0, 2.0))
    clean, scl = _contrast(view, [(1.0, terms[2][1]), (-1.0, terms[3][1])], rate=is_rate)
    _, dstyle = _style(metric)
    unit = " percentage points" if dstyle == "pp" else ""
    name = NAMES.get(metric, metric)
    wa, _ = _group_value(view, p, m, "biased", "truth", grp, metric)
    wb, _ = _group_value(view, p, m, "clean", "truth", grp, metric)
    why = (_withheld(view, wa, metric, p, m, "biased", "truth", grp)
           or _withheld(view, wb, metric, p, m, "clean", "truth", grp))
    t = _Text()
    if why:
        t += (f"At {_setting(t, view, p)}, there were too few cases among {grp} to measure how much the "
              f"biases in the training data changed {m}'s {name} gap ({why}).")
        verdict, remedy = TOO_FEW, _remedy_cases(view, wa)
    else:
        t += (f"At {_setting(t, view, p)}, the biases in the training data (biased training set against its "
              f"clean twin) changed {m}'s {name} gap ({grp} minus {ref}) "
              f"by {t.num(caused.value, dstyle, (*sc, 'value'))}{unit}{_iv(t, caused, dstyle, sc)}")
        verdict, remedy = _verdict_text(t, caused, sc, what="change")
        t += (f"; trained on the clean twin (the same patients before any bias acted), the gap was "
              f"{t.num(clean.value, dstyle, (*scl, 'value'))}{unit}.")
    return Finding(f"caused/{metric}/{p}/{m}", "caused",
                   _subject(view, point=p, model=m, metric=metric, groups=(grp, ref)),
                   {"caused": caused, "clean_gap": clean}, verdict,
                   "biased-minus-clean difference of the gap, paired by replicate (same test patients), "
                   f"t interval ({caused.replicates - 1} df)",
                   {"replicates": caused.replicates}, t.text(), t.numbers, remedy, headline)


def _trend(view: RunView, metric, lo, hi, m, grp) -> Finding:
    ref = view.reference_group
    is_rate = metric in RATE_COUNTS
    terms = [(1.0, (hi, m, "biased", "truth", grp, metric)), (-1.0, (hi, m, "biased", "truth", ref, metric)),
             (-1.0, (lo, m, "biased", "truth", grp, metric)), (1.0, (lo, m, "biased", "truth", ref, metric))]
    change, sc = _contrast(view, terms, rate=is_rate, bounds=(-2.0, 2.0))
    g_lo, s_lo = _contrast(view, [(1.0, terms[2][1]), (-1.0, terms[3][1])], rate=is_rate)
    g_hi, s_hi = _contrast(view, terms[:2], rate=is_rate)
    _, dstyle = _style(metric)
    unit = " percentage points" if dstyle == "pp" else ""
    t = _Text()
    name = NAMES.get(metric, metric)
    t += (f"From {_setting(t, view, lo)} to {_setting(t, view, hi)}, {m}'s {name} gap ({grp} minus {ref}) "
          f"went from {t.num(g_lo.value, dstyle, (*s_lo, 'value'))} to {t.num(g_hi.value, dstyle, (*s_hi, 'value'))}"
          f"{unit}, a change of {t.num(change.value, dstyle, (*sc, 'value'))}{_iv(t, change, dstyle, sc)}")
    withheld = [w for w in (_withheld(view, _group_value(view, p, m, "biased", "truth", grp, metric)[0], metric,
                                      p, m, "biased", "truth", grp) for p in (lo, hi)) if w]
    if withheld:
        t += f"; too few cases among {grp} to tell ({withheld[0]})."
        verdict, remedy = TOO_FEW, None
    else:
        verdict, remedy = _verdict_text(t, change, sc, what="change")
        t += "."
    return Finding(f"trend/{metric}/{m}", "trend",
                   _subject(view, point=hi, model=m, metric=metric, groups=(grp, ref), from_point=lo),
                   {"change": change, "gap_from": g_lo, "gap_to": g_hi}, verdict,
                   "difference of the gap between two sweep points, paired by replicate (common random "
                   f"numbers), t interval ({change.replicates - 1} df)",
                   {"replicates": change.replicates}, t.text(), t.numbers, remedy)


def _comparisons(view: RunView, metric, grp) -> list[Finding]:
    """Model A's gap minus model B's, paired, at every point; one finding per pair of models."""
    ref = view.reference_group
    plain = [m for m in view.models if m not in view.methods or m == view.baseline]
    out = []
    is_rate = metric in RATE_COUNTS
    _, _dstyle = _style(metric)
    name = NAMES.get(metric, metric)
    for i, a in enumerate(plain):
        for b in plain[i + 1:]:
            t = _Text()
            ests, smaller, larger, unclear = {}, [], [], []
            for p in range(len(view.points)):
                terms = [(1.0, (p, a, "biased", "truth", grp, metric)), (-1.0, (p, a, "biased", "truth", ref, metric)),
                         (-1.0, (p, b, "biased", "truth", grp, metric)), (1.0, (p, b, "biased", "truth", ref, metric))]
                d, _ = _contrast(view, terms, rate=is_rate, bounds=(-2.0, 2.0))
                ests[f"difference_at_{p}"] = d
                # oriented so that positive means a's gap leaves the compared group worse off than b's
                sign = 1 if metric in WORSE_IF_HIGHER else -1
                if not d.excludes(0.0):
                    unclear.append(p)
                elif sign * d.value < 0:
                    smaller.append(p)
                else:
                    larger.append(p)
            P = len(view.points)
            R = view.R
            t += (f"Comparing {a} with {b} on how far {grp} is behind {ref} in {name}, paired by replicate: "
                  f"{a} left {grp} less far behind at {t.num(len(smaller), 'int', ('comparison', metric, a, b, grp, ref, 'smaller'))} "
                  f"of {t.num(P, 'int', ('points',))} setting{'s' if P != 1 else ''}, further behind at "
                  f"{t.num(len(larger), 'int', ('comparison', metric, a, b, grp, ref, 'larger'))}, and the two are not "
                  f"distinguishable at {t.num(len(unclear), 'int', ('comparison', metric, a, b, grp, ref, 'unclear'))} "
                  f"(with {t.num(R, 'int', ('replicates',))} replicates).")
            verdict = SUPPORTED if not unclear else NOT_DISTINGUISHABLE
            needs = [I.replicates_needed(ests[f"difference_at_{p}"], cap=NEEDED_CAP) for p in unclear]
            needs = [x for x in needs if x is not None and x < NEEDED_CAP]
            remedy = (f"about {max(needs)} replicates (--replicates {max(needs)}) to tell the two apart at "
                      "every setting where they differ by as much as this run measured") if needs else None
            out.append(Finding(f"compare/{metric}/{a}/{b}", "comparison",
                               {"metric": metric, "models": (a, b), "groups": (grp, ref),
                                "smaller": smaller, "larger": larger, "unclear": unclear},
                               ests, verdict, "difference of two models' gaps, paired by replicate, t interval",
                               {"replicates": R}, t.text(), t.numbers,
                               remedy))
    return out


def _audit(view: RunView, metric, p, m, grp) -> list[Finding]:
    """What an audit with the recorded test labels would have measured, beside the truth."""
    ref = view.reference_group
    if metric not in RATE_COUNTS or not view.counts(p, m, "biased", "observed", grp):
        return []
    flips = view.counts(p, "data", "test", "truth", grp), view.counts(p, "data", "test", "truth", ref)
    t = _Text()
    name = NAMES.get(metric, metric)
    true_gap, st = _contrast(view, [(1.0, (p, m, "biased", "truth", grp, metric)),
                                    (-1.0, (p, m, "biased", "truth", ref, metric))], rate=True)
    obs_gap, so = _contrast(view, [(1.0, (p, m, "biased", "observed", grp, metric)),
                                   (-1.0, (p, m, "biased", "observed", ref, metric))], rate=True)
    diff, sd = _contrast(view, [(1.0, (p, m, "biased", "observed", grp, metric)),
                                (-1.0, (p, m, "biased", "observed", ref, metric)),
                                (-1.0, (p, m, "biased", "truth", grp, metric)),
                                (1.0, (p, m, "biased", "truth", ref, metric))], rate=True, bounds=(-2.0, 2.0))
    same = all(c is not None and np.nansum(c["fn"] + c["fp"]) == 0 for c in flips)
    t += f"An audit's view at {_setting(t, view, p)}: "
    if same and flips[0] is not None:
        t += ("the recorded labels of the test population equal the truth for both groups in every replicate, "
              f"so an audit would measure {m}'s {name} gap as it truly is.")
        return [Finding(f"audit/{metric}/{p}/{m}", "audit", _subject(view, point=p, model=m, metric=metric,
                                                                      groups=(grp, ref)),
                        {"audit_gap": obs_gap, "true_gap": true_gap}, SUPPORTED,
                        "recorded test labels compared with the truth, patient by patient",
                        {"replicates": view.R}, t.text(), t.numbers)]
    lab = []
    for g, c in ((grp, flips[0]), (ref, flips[1])):
        if c is None:
            continue
        est, src = _rate(view, p, "data", "test", "truth", g, "fnr")
        if est.defined:
            lab.append(f"{_value_with_support(t, view, est, src, 'fnr')} among {g}")
    if lab:
        t += "the recorded test labels miss " + " and ".join(lab) + ", so "
    o_a, _s_oa = _rate(view, p, m, "biased", "observed", grp, metric)
    why = I.rate_withheld(o_a)
    if why:
        t += (f"too few recorded cases among {grp} ({why}) for an audit with these labels to measure {m}'s "
              f"{name} gap.")
        verdict, remedy = TOO_FEW, _remedy_cases(view, o_a)
    else:
        remedy = None
        t += (f"an audit with them would measure {m}'s {name} gap as {t.num(obs_gap.value, 'pp', (*so, 'value'))} "
              f"percentage points against a true {t.num(true_gap.value, 'pp', (*st, 'value'))}: off by "
              f"{t.num(diff.value, 'pp', (*sd, 'value'))}{_iv(t, diff, 'pp', sd)}")
        verdict, remedy = _verdict_text(t, diff, sd, what="difference")
        t += "."
    return [Finding(f"audit/{metric}/{p}/{m}", "audit", _subject(view, point=p, model=m, metric=metric, groups=(grp, ref)),
                    {"audit_gap": obs_gap, "true_gap": true_gap, "difference": diff}, verdict,
                    "the same model and test patients measured against recorded and true labels, paired by "
                    "replicate, t interval", {"replicates": diff.replicates}, t.text(), t.numbers,
                    remedy if verdict != SUPPORTED else None)]


def _training_labels(view: RunView, p: int) -> list[Finding]:
    """What the recorded training labels miss, per group (the label bias the data carry)."""
    if not view.counts(p, "data", "biased", "truth", view.reference_group or ""):
        return []
    rates = [(g, *_rate(view, p, "data", "biased", "truth", g, "fnr")) for g in view.groups]
    if not any(e.defined and e.value > 0 for _, e, _ in rates):
        return []
    t = _Text()
    t += f"What the training labels say, at {_setting(t, view, p)}: they miss "
    parts, withheld = [], []
    for g, est, src in rates:
        why = I.rate_withheld(est)
        if why:
            withheld.append((g, est, why))
            parts.append(f"an unknown share of the true {view.target} cases among {g} (too few cases: {why})")
        else:
            parts.append(f"{_value_with_support(t, view, est, src, 'fnr')} among {g}")
    t += "; ".join(parts) + f" (over {t.num(view.R, 'int', ('replicates',))} replicates)."
    remedy = _remedy_cases(view, withheld[0][1]) if withheld else None
    return [Finding(f"labels/{p}", "training_labels", _subject(view, point=p, groups=tuple(view.groups)),
                    {f"label_fnr[{g}]": e for g, e, _ in rates}, TOO_FEW if withheld else SUPPORTED,
                    "recorded training labels against the truth, pooled over replicates",
                    {"replicates": view.R}, t.text(), t.numbers, remedy)]


def _representation(view: RunView, lo: int, hi: int) -> list[Finding]:
    """Who the models learned from: the biased training set against its clean twin."""
    cb = {g: view.counts(hi, "data", "biased", "truth", g) for g in view.groups}
    cc = {g: view.counts(hi, "data", "clean", "truth", g) for g in view.groups}
    if any(v is None for v in (*cb.values(), *cc.values())):
        return []
    t = _Text()
    nb = np.array([np.nansum(sum(cb[g].values())) for g in view.groups])
    nc = np.array([np.nansum(sum(cc[g].values())) for g in view.groups])
    if nb.sum() == 0:
        return []
    share_b, share_c = nb / nb.sum(), nc / max(nc.sum(), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gi = int(np.nanargmin(np.where(share_c > 0, share_b / share_c, np.inf)))
    g = view.groups[gi]
    R = view.R
    kept = ("sum", hi, "data", "biased", "truth", None)
    twin = ("sum", hi, "data", "clean", "truth", None)
    mine = ("sum", hi, "data", "biased", "truth", g)
    t += (f"Who the models learned from, at {_setting(t, view, hi)}: the biased training sets kept "
          f"{t.num(nb.sum(), 'count', kept)} of the clean twins' {t.num(nc.sum(), 'count', twin)} patients "
          f"over {t.num(R, 'int', ('replicates',))} replicates ({t.num(nb.sum() / nc.sum(), 'pct', ('fraction', kept, twin))}); "
          f"{g} made up {t.num(share_b[gi], 'pct', ('fraction', mine, kept))} of them "
          f"({t.num(nb[gi], 'count', mine)} patients), against "
          f"{t.num(share_c[gi], 'pct', ('fraction', ('sum', hi, 'data', 'clean', 'truth', g), twin))} of the clean twins")
    if lo != hi:
        nlo = np.array([np.nansum(sum(view.counts(lo, "data", "biased", "truth", x).values()))
                        if view.counts(lo, "data", "biased", "truth", x) else np.nan for x in view.groups])
        if np.isfinite(nlo).all() and nlo.sum() > 0:
            t += (f" and {t.num(nlo[gi] / nlo.sum(), 'pct', ('fraction', ('sum', lo, 'data', 'biased', 'truth', g), ('sum', lo, 'data', 'biased', 'truth', None)))} of the biased "
                  f"training sets at {_setting(t, view, lo)}")
    t += "."
    return [Finding(f"representation/{hi}", "representation", _subject(view, point=hi, groups=(g,)),
                    {}, SUPPORTED, "patient counts of the training sets, summed over replicates",
                    {"patients": float(nb.sum()), "replicates": R}, t.text(), t.numbers)]


def _amplification(view: RunView, metric, p, m, grp) -> list[Finding]:
    """The model's gap against the gap its training labels carried (FNR, FPR, selection rate)."""
    if metric not in ("fnr", "fpr", "tpr", "selection_rate"):
        return []
    ref = view.reference_group
    data_terms = [(1.0, (p, "data", "biased", "truth", grp, metric)), (-1.0, (p, "data", "biased", "truth", ref, metric))]
    if _rate_terms(view, data_terms) is None:
        return []
    d_data, sdd = _contrast(view, data_terms, rate=True)
    d_model, sdm = _contrast(view, [(1.0, (p, m, "biased", "truth", grp, metric)),
                                    (-1.0, (p, m, "biased", "truth", ref, metric))], rate=True)
    added, sa = _contrast(view, [*[(c, x) for c, x in [(1.0, (p, m, "biased", "truth", grp, metric)),
                                                        (-1.0, (p, m, "biased", "truth", ref, metric))]],
                                 (-1.0, data_terms[0][1]), (1.0, data_terms[1][1])], rate=True, bounds=(-2.0, 2.0))
    t = _Text()
    name = NAMES.get(metric, metric)
    lab, _ = _rate(view, p, "data", "biased", "truth", grp, metric)
    why = I.rate_withheld(lab)
    t += f"Amplification at {_setting(t, view, p)}: "
    if why:
        t += (f"the training labels among {grp} rest on too few cases ({why}) to compare {m}'s {name} gap with "
              f"the gap they carry.")
        verdict, remedy = TOO_FEW, _remedy_cases(view, lab)
    else:
        t += (f"the training labels carried a {name} gap ({grp} minus {ref}, measured against the truth) of "
              f"{t.num(d_data.value, 'pp', (*sdd, 'value'))} percentage points; {m}'s gap on the test population "
              f"was {t.num(d_model.value, 'pp', (*sdm, 'value'))}, a difference (model minus labels) of "
              f"{t.num(added.value, 'pp', (*sa, 'value'))}{_iv(t, added, 'pp', sa)}")
        verdict, remedy = _verdict_text(t, added, sa, what="difference")
        t += "."
    return [Finding(f"amplification/{metric}/{p}/{m}", "amplification",
                    _subject(view, point=p, model=m, metric=metric, groups=(grp, ref)),
                    {"d_data": d_data, "d_model": d_model, "added": added}, verdict,
                    "model's gap minus the training labels' gap, paired by replicate, t interval",
                    {"replicates": added.replicates}, t.text(), t.numbers, remedy)]


def _parity(view: RunView, metric, p, m, grp) -> list[Finding]:
    """Aequitas' disparity ratio (compared / reference) against the four-fifths band [0.8, 1.25]."""
    if metric not in RATE_COUNTS:
        return []
    ref = view.reference_group
    out = []
    for k in dict.fromkeys((metric, "selection_rate")):
        ta = _rate_terms(view, [(1.0, (p, m, "biased", "truth", grp, k))])
        tb = _rate_terms(view, [(1.0, (p, m, "biased", "truth", ref, k))])
        if ta is None or tb is None:
            continue
        est = I.rate_ratio(ta[0][1], ta[0][2], tb[0][1], tb[0][2])
        src = ("ratio", (p, m, "biased", "truth", grp, k), (p, m, "biased", "truth", ref, k))  # + part
        t = _Text()
        name = NAMES.get(k, k)
        hi_band = 1 / PARITY_TAU
        t += (f"Parity ratio at {_setting(t, view, p)}: {m}'s {name} among {grp} was "
              f"{t.num(est.value, 'ratio', (*src, 'value'))} times that among {ref}{_iv(t, est, 'ratio', src)}; "
              f"auditors count {t.num(PARITY_TAU, 'ratio', ('constant', 'tau', PARITY_TAU))} to "
              f"{t.num(hi_band, 'ratio', ('constant', '1/tau', hi_band))} as parity (the four-fifths rule, as in Aequitas)")
        a_est, _ = _rate(view, p, m, "biased", "truth", grp, k)
        b_est, _ = _rate(view, p, m, "biased", "truth", ref, k)
        why = I.rate_withheld(a_est) or I.rate_withheld(b_est)
        if why:
            t += f"; too few cases to judge ({why})."
            verdict = TOO_FEW
        elif not est.has_interval:
            t += "; one replicate gives no interval."
            verdict = NOT_DISTINGUISHABLE
        elif est.hi < PARITY_TAU or est.lo > hi_band:
            t += ": outside that band."
            verdict = SUPPORTED
        elif est.lo >= PARITY_TAU and est.hi <= hi_band:
            t += ": within that band."
            verdict = SUPPORTED
        else:
            t += ": not distinguishable from the band's edge with these replicates."
            verdict = NOT_DISTINGUISHABLE
        out.append(Finding(f"parity/{k}/{p}/{m}", "parity_ratio",
                           _subject(view, point=p, model=m, metric=k, groups=(grp, ref)),
                           {"ratio": est}, verdict,
                           "ratio of pooled rates, interval on the log scale, t with replicates - 1 df",
                           {"replicates": est.replicates}, t.text(), t.numbers))
    return out


def _methods(view: RunView, p: int) -> list[Finding]:
    """Each fairness method against the baseline: operating point, cost, disparity, recovery."""
    base = view.baseline
    if not view.methods or base is None:
        return []
    out = []
    checks = view.manifest.get("method_checks") or {}
    k = checks.get("metric", DEFAULT_CHECK_METRIC)
    tol = checks.get("tolerance", DEFAULT_CHECK_TOLERANCE)
    b_tpr, s_bt = _rate(view, p, base, "biased", "truth", "overall", "tpr")
    for m in view.methods:
        if m == base:
            continue
        t = _Text()
        tpr, st = _rate(view, p, m, "biased", "truth", "overall", "tpr")
        fpr, sf = _rate(view, p, m, "biased", "truth", "overall", "fpr")
        own = view.reason(p, m, "biased", "truth", "threshold", "overall", "threshold")
        d_tpr, _sdt = _contrast(view, [(1.0, (p, m, "biased", "truth", "overall", "tpr")),
                                      (-1.0, (p, base, "biased", "truth", "overall", "tpr"))], rate=True)
        acc, sacc = _contrast(view, [(1.0, (p, m, "biased", "truth", "overall", "accuracy")),
                                     (-1.0, (p, base, "biased", "truth", "overall", "accuracy"))], rate=True)
        t += (f"Method {m} at {_setting(t, view, p)}: it ran at an overall true-positive rate of "
              f"{t.num(tpr.value, 'pct', (*st, 'value'))} and false-positive rate of "
              f"{t.num(fpr.value, 'pct', (*sf, 'value'))}")
        off = d_tpr.excludes(0.0) and abs(d_tpr.value) >= 0.01
        if own or off:
            t += (f", {'its own operating point' if own else 'a different operating point'} "
                  f"(baseline {base}: {t.num(b_tpr.value, 'pct', (*s_bt, 'value'))}), so its accuracy and gaps "
                  f"are not compared at equal sensitivity")
        t += (f"; accuracy against the truth {t.num(acc.value, 'pp', (*sacc, 'value'))} percentage points "
              f"versus {base}{_iv(t, acc, 'pp', sacc)}")
        acc_verdict, acc_remedy = _verdict_text(t, acc, sacc, what="difference")
        rec = view.values(p, m, "biased", "truth", "method", "", f"recovery.{k}")
        r_est = I.mean_contrast([(1.0, rec)])
        src_r = ("mean", (p, m, "biased", "truth", "method", "", f"recovery.{k}"), None)
        if r_est.defined:
            t += (f"; it recovered {t.num(r_est.value, 'ratio', (*src_r, 'value'))} of the {k} gap between "
                  f"{base} trained on biased and on clean data ({t.num(1, 'int', ('constant', 'all of it', 1))} = all of it)"
                  f"{_iv(t, r_est, 'ratio', src_r)}")
        else:
            why = view.reason(p, m, "biased", "truth", "method", "", f"recovery.{k}") or ""
            # the runner's reasons may carry numbers; a sentence states only recorded numbers
            why = ("the baseline's gap barely moved between biased and clean training (below "
                   "method_checks.min_gap)" if why.startswith("baseline gap below") else
                   "a value it needs is undefined" if why else "no values")
            t += f"; its recovery of {k} is undefined ({why})"
        d_true = I.mean_contrast([(1.0, view.values(p, m, "biased", "truth", "disparity", "", k))], bounds=(0.0, 1.0))
        d_obs = I.mean_contrast([(1.0, view.values(p, m, "biased", "observed", "disparity", "", k))], bounds=(0.0, 1.0))
        t += "."
        out.append(Finding(f"method/{p}/{m}", "method", _subject(view, point=p, model=m, metric=k),
                           {"tpr": tpr, "fpr": fpr, "accuracy_vs_baseline": acc, "recovery": r_est,
                            "disparity_truth": d_true, "disparity_observed": d_obs},
                           acc_verdict,
                           "method minus baseline on the same test patients, paired by replicate",
                           {"replicates": view.R, "own_operating_point": bool(own or off)},
                           t.text(), t.numbers, acc_remedy))
        flag = view.values(p, m, "biased", "truth", "method", "", f"fair_only_against_observed.{k}")
        f_est = I.replicate_share(flag)
        if f_est.defined and f_est.events:
            w = _Text()
            src_t = ("mean", (p, m, "biased", "truth", "disparity", "", k), (0.0, 1.0))
            src_o = ("mean", (p, m, "biased", "observed", "disparity", "", k), (0.0, 1.0))
            w += (f"{m} looks fair against the recorded labels ({k} {w.num(d_obs.value, 'dec', (*src_o, 'value'))}, "
                  f"below {w.num(tol, 'dec', ('constant', 'tolerance', tol))}) but not against the truth "
                  f"({w.num(d_true.value, 'dec', (*src_t, 'value'))}) at {_setting(w, view, p)}: flagged in "
                  f"{w.num(f_est.events, 'int', ('flags', (p, m, 'biased', 'truth', 'method', '', f'fair_only_against_observed.{k}')))} of "
                  f"{w.num(f_est.replicates, 'int', ('replicates',))} replicates.")
            out.append(Finding(f"fair_only_observed/{p}/{m}", "fair_only_observed",
                               _subject(view, point=p, model=m, metric=k),
                               {"share_flagged": f_est, "disparity_truth": d_true, "disparity_observed": d_obs},
                               SUPPORTED, "per replicate: the disparity against the recorded labels below the "
                               "tolerance and against the truth above it", {"replicates": f_est.replicates},
                               w.text(), w.numbers, headline=True))
    return out


def _precision(view: RunView) -> list[Finding]:
    """What ``experiment.precision`` reached: the replicates run and the widest headline interval."""
    prec = view.manifest.get("precision")
    if not isinstance(prec, dict) or "half_width" not in prec:
        return []
    t = _Text()
    reached = prec.get("reached")
    t += (f"Precision: replicates were added in batches of {t.num(prec['batch'], 'int', ('manifest', 'precision', 'batch'))} "
          f"until every headline interval was at most {t.num(prec['half_width'], 'dec', ('manifest', 'precision', 'half_width'))} "
          f"either side of its estimate, or {t.num(prec['max_replicates'], 'int', ('manifest', 'precision', 'max_replicates'))} "
          f"replicates; with {t.num(view.R, 'int', ('replicates',))} replicates ")
    if prec.get("met"):
        t += f"the widest was {t.num(reached, 'dec', ('manifest', 'precision', 'reached'))}: reached."
        verdict, remedy = SUPPORTED, None
    else:
        why = (f"the widest was {t.num(reached, 'dec', ('manifest', 'precision', 'reached'))}"
               if reached is not None else "some headline interval is undefined")
        if prec.get("withheld"):
            why += (f" and {t.num(prec['withheld'], 'int', ('manifest', 'precision', 'withheld'))} headline "
                    "finding(s) had too few cases")
        t += f"{why}: not reached within the cap."
        verdict, remedy = NOT_DISTINGUISHABLE, "a larger precision.max_replicates, or larger populations"
    return [Finding("precision", "precision", {}, {}, verdict, "experiment.precision, recorded in manifest.json",
                    {"replicates": view.R}, t.text(), t.numbers, remedy)]


def _lede(view: RunView, findings: list[Finding], hi: int) -> Finding | None:
    """``In short``: at the most-biased point, the caused changes of the headline gaps."""
    caused = [f for f in findings if f.kind == "caused" and f.subject.get("point") == hi]
    if not caused:
        return None
    t = _Text()
    t += f"In short, at {_setting(t, view, hi)}: "
    parts = []
    for f in caused:
        q = f.quantities["caused"]
        metric = f.subject["metric"]
        _, dstyle = _style(metric)
        name = SHORT.get(metric, metric)
        if f.verdict == TOO_FEW:
            parts.append(f"{f.subject['model']}'s {name} gap: too few cases")
            continue
        src = next((n.source[:-1] for n in f.numbers if n.source[-1] == "value" and n.source[0] == "contrast"), None)
        # widened: the gap is further from zero trained on the biased data than on the clean twin
        clean = f.quantities["clean_gap"].value
        word = "widened" if abs(clean + q.value) > abs(clean) else "narrowed"
        if f.verdict == SUPPORTED and _exactly_zero(q):
            parts.append(f"the training data's biases did not change {f.subject['model']}'s {name} gap")
        elif f.verdict == SUPPORTED:
            parts.append(f"the training data's biases {word} {f.subject['model']}'s {name} gap by "
                         f"{t.num(q.value, 'udec' if dstyle == 'sdec' else 'upp', (*src, 'value'))}"
                         f"{' percentage points' if dstyle == 'pp' else ''}")
        else:
            parts.append(f"what the training data's biases did to {f.subject['model']}'s {name} gap is not "
                         "distinguishable from zero")
    t += "; ".join(parts) + f" (details below; {t.num(view.R, 'int', ('replicates',))} replicates)."
    verdicts = {f.verdict for f in caused}
    verdict = SUPPORTED if verdicts == {SUPPORTED} else (TOO_FEW if verdicts == {TOO_FEW} else NOT_DISTINGUISHABLE)
    return Finding("lede", "lede", _subject(view, point=hi), {}, verdict,
                   "the caused-change findings at the most-biased point", {"replicates": view.R},
                   t.text(), t.numbers, headline=True)


__all__ = ["NOT_DISTINGUISHABLE", "SUPPORTED", "TOO_FEW", "VERDICTS", "Finding", "Number", "RunView",
           "build_findings", "findings_frame", "fmt", "headline_metrics"]


# --- the stress battery (simsys stress) ----------------------------------------------------------
#: What the battery scores, per model and sweep point: (leaderboard metric, what it is).
STRESS_METRICS = {
    "tpr_gap.truth": "TPR of the compared group minus the reference group's, against the truth",
    "tpr_gap.recorded": "the same gap against the recorded labels (an audit's view)",
    "tpr_gap_vs_baseline.truth": "|gap| of the model minus |gap| of the baseline, paired (negative = smaller gap)",
    "recovery.equal_opportunity_difference": "share of the baseline's biased-to-clean equal-opportunity gap closed",
    "accuracy": "overall accuracy against the truth",
    "accuracy_cost": "accuracy of the model minus the baseline's, paired (negative = a cost)",
    "auroc_cost": "overall AUROC of the model minus the baseline's, paired",
    "ece_cost": "overall expected calibration error of the model minus the baseline's, paired (positive = worse)",
    "fair_only_observed": "share of replicates where it looks fair against the recorded labels but not the truth",
}


def _oriented_gap_terms(p, m, grp, ref, reference="truth", k="tpr") -> list:
    return [(1.0, (p, m, "biased", reference, grp, k)), (-1.0, (p, m, "biased", reference, ref, k))]


def stress_scores(view: RunView, scenario_label: str, models: Sequence[str], baseline: str) -> tuple[list[dict], list[Finding]]:
    """Score fairness methods against the truth, per sweep point, beside their baseline.

    Returns leaderboard rows (one per model x point x metric, with estimate, interval and
    replicates) and the findings that say where a method fails: it makes the true gap worse than
    the baseline's, or it looks fair against the recorded labels while the true gap remains (it
    only hides the gap from an audit). Gaps are true-positive-rate gaps (equal opportunity) between
    the group worst off under the baseline at the most-biased point and the reference group.
    """
    _lo, hi = view.chosen_points()
    pair = group_pair(view, "tpr", hi)
    rows: list[dict] = []
    out: list[Finding] = []
    tol = float((view.manifest.get("method_checks") or {}).get("tolerance", DEFAULT_CHECK_TOLERANCE))
    if pair is None:
        return rows, out
    grp, ref = pair
    view.reference_group = ref
    R = view.R
    for p in range(len(view.points)):
        setting = view.setting(p)
        base_gap, _ = _contrast(view, _oriented_gap_terms(p, baseline, grp, ref), rate=True)
        sign = 1.0 if base_gap.value >= 0 else -1.0  # orient so that a larger value = a larger gap
        for m in models:
            est: dict[str, I.Estimate] = {}
            est["tpr_gap.truth"], _ = _contrast(view, _oriented_gap_terms(p, m, grp, ref), rate=True)
            est["tpr_gap.recorded"], _ = _contrast(view, _oriented_gap_terms(p, m, grp, ref, "observed"), rate=True)
            vs = [(sign, t) for _, t in _oriented_gap_terms(p, m, grp, ref)[:1]] + \
                 [(-sign, _oriented_gap_terms(p, m, grp, ref)[1][1])] + \
                 [(-sign, _oriented_gap_terms(p, baseline, grp, ref)[0][1]),
                  (sign, _oriented_gap_terms(p, baseline, grp, ref)[1][1])]
            est["tpr_gap_vs_baseline.truth"], s_vs = _contrast(view, vs, rate=True, bounds=(-2.0, 2.0))
            est["recovery.equal_opportunity_difference"] = I.mean_contrast(
                [(1.0, view.values(p, m, "biased", "truth", "method", "", "recovery.equal_opportunity_difference"))])
            est["accuracy"], _ = _rate(view, p, m, "biased", "truth", "overall", "accuracy")
            est["accuracy_cost"], _s_acc = _contrast(view, [(1.0, (p, m, "biased", "truth", "overall", "accuracy")),
                                                           (-1.0, (p, baseline, "biased", "truth", "overall", "accuracy"))], rate=True)
            est["auroc_cost"], _ = _contrast(view, [(1.0, (p, m, "biased", "truth", "overall", "auroc")),
                                                    (-1.0, (p, baseline, "biased", "truth", "overall", "auroc"))], rate=False)
            est["ece_cost"], _ = _contrast(view, [(1.0, (p, m, "biased", "truth", "overall", "ece")),
                                                  (-1.0, (p, baseline, "biased", "truth", "overall", "ece"))], rate=False)
            est["fair_only_observed"] = I.replicate_share(
                view.values(p, m, "biased", "truth", "method", "", "fair_only_against_observed.equal_opportunity_difference"))
            for k, e in est.items():
                rows.append({"scenario": scenario_label, "point": p, "setting": setting, "model": m,
                             "baseline": baseline, "metric": k, "estimate": e.value, "lo": e.lo, "hi": e.hi,
                             "replicates": e.replicates, "groups": f"{grp} vs {ref}"})
            if m == baseline:
                continue
            worse = est["tpr_gap_vs_baseline.truth"]
            if worse.has_interval and worse.lo > 0:
                t = _Text()
                t += (f"{scenario_label}, at {_setting(t, view, p)}: {m} made the true-positive-rate gap "
                      f"({grp} minus {ref}, against the truth) larger than {baseline}'s, by "
                      f"{t.num(worse.value, 'pp', (*s_vs, 'value'))} percentage points"
                      f"{_iv(t, worse, 'pp', s_vs)}, paired over {t.num(worse.replicates, 'int', ('replicates',))} replicates.")
                out.append(Finding(f"stress/worse/{scenario_label}/{p}/{m}", "stress_worse",
                                   _subject(view, point=p, model=m, metric="tpr", groups=(grp, ref),
                                            scenario=scenario_label),
                                   {"gap_vs_baseline": worse}, SUPPORTED,
                                   "|gap| of the method minus |gap| of the baseline, paired by replicate",
                                   {"replicates": worse.replicates}, t.text(), t.numbers))
            flag = est["fair_only_observed"]
            g_t0, g_r0 = est["tpr_gap.truth"], est["tpr_gap.recorded"]
            # "only hides the gap": an audit with the recorded labels sees parity (|gap| within the
            # tolerance) while the true gap's whole 95% interval lies outside that tolerance
            hides = (g_r0.defined and abs(g_r0.value) <= tol and g_t0.has_interval
                     and (g_t0.lo > tol or g_t0.hi < -tol))
            if hides:
                t = _Text()
                src_f = ("flags", (p, m, "biased", "truth", "method", "",
                                   "fair_only_against_observed.equal_opportunity_difference"))
                g_t, s_t = _contrast(view, _oriented_gap_terms(p, m, grp, ref), rate=True)
                g_r, s_r = _contrast(view, _oriented_gap_terms(p, m, grp, ref, "observed"), rate=True)
                t += (f"{scenario_label}, at {_setting(t, view, p)}: {m} only hides the gap from an audit: its "
                      f"true-positive-rate gap ({grp} minus {ref}) was {t.num(g_r.value, 'pp', (*s_r, 'value'))} "
                      f"percentage points against the recorded labels, within the "
                      f"{t.num(tol, 'upp', ('constant', 'tolerance', tol))}-point tolerance of the fairness check, "
                      f"but {t.num(g_t.value, 'pp', (*s_t, 'value'))} against the truth"
                      f"{_iv(t, g_t, 'pp', s_t)}; it looked fair only against the recorded labels in "
                      f"{t.num(flag.events or 0, 'int', src_f)} of {t.num(flag.replicates, 'int', ('replicates',))} replicates.")
                out.append(Finding(f"stress/hides/{scenario_label}/{p}/{m}", "stress_hides",
                                   _subject(view, point=p, model=m, metric="tpr", groups=(grp, ref),
                                            scenario=scenario_label),
                                   {"gap_truth": g_t, "gap_recorded": g_r, "share_flagged": flag}, SUPPORTED,
                                   "the true-positive-rate gap against the recorded labels within the fairness "
                                   "check's tolerance, and its paired 95% interval against the truth outside it",
                                   {"replicates": R}, t.text(), t.numbers))
    return rows, out


def compare_methods(view: RunView, scenario_label: str, a: str, b: str) -> list[Finding]:
    """``--against``: method a minus method b on the same patients, per sweep point (paired)."""
    _lo, hi = view.chosen_points()
    pair = group_pair(view, "tpr", hi)
    if pair is None:
        return []
    grp, ref = pair
    out = []
    for p in range(len(view.points)):
        t = _Text()
        terms = [*_oriented_gap_terms(p, a, grp, ref), *[(-c, k) for c, k in _oriented_gap_terms(p, b, grp, ref)]]
        d_gap, s_gap = _contrast(view, terms, rate=True, bounds=(-2.0, 2.0))
        d_acc, s_acc = _contrast(view, [(1.0, (p, a, "biased", "truth", "overall", "accuracy")),
                                        (-1.0, (p, b, "biased", "truth", "overall", "accuracy"))], rate=True)
        t += (f"{scenario_label}, at {_setting(t, view, p)}: {a} minus {b}, paired by replicate: true-positive-rate gap "
              f"({grp} minus {ref}, against the truth) {t.num(d_gap.value, 'pp', (*s_gap, 'value'))} percentage points"
              f"{_iv(t, d_gap, 'pp', s_gap)}")
        v1, _ = _verdict_text(t, d_gap, s_gap, what="difference")
        t += (f"; accuracy {t.num(d_acc.value, 'pp', (*s_acc, 'value'))} percentage points{_iv(t, d_acc, 'pp', s_acc)}")
        v2, _ = _verdict_text(t, d_acc, s_acc, what="difference")
        t += "."
        out.append(Finding(f"stress/against/{scenario_label}/{p}/{a}/{b}", "stress_against",
                           _subject(view, point=p, models=(a, b), metric="tpr", groups=(grp, ref),
                                    scenario=scenario_label),
                           {"gap_difference": d_gap, "accuracy_difference": d_acc},
                           SUPPORTED if SUPPORTED in (v1, v2) else NOT_DISTINGUISHABLE,
                           "method a minus method b on the same patients, paired by replicate",
                           {"replicates": d_gap.replicates}, t.text(), t.numbers))
    return out
