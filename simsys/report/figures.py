"""The report's figures, drawn with matplotlib from a run folder's data (:class:`RunData`).

Every figure that draws an interval draws the summary's ``estimate`` / ``lo`` / ``hi`` or a
finding's :class:`simsys.intervals.Estimate`: per-group rates are pooled over the replicates with
their Wilson intervals (never outside 0-100%), gaps and the part the biases caused are the signed
gap findings (compared group minus reference group) with their paired intervals. Values resting on
fewer than :data:`simsys.intervals.MIN_CASES` cases are left out (gaps) or hatched (bars), as the
findings withhold them. Figures hold no sentences: the captions are fixed text in the page template,
the statements are the findings'.

Figures are deterministic (fixed sizes, no dates, fixed SVG ids: :func:`simsys.drawing.figure_bytes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from simsys import intervals as I
from simsys.findings import NAMES, SHORT, TOO_FEW, fmt
from simsys.report.data import Cohorts, RunData
from simsys.report.predictions import Predictions, calibration_points, operating_point, roc_points
from simsys.summary import RATE_COUNTS, rate_counts

#: Per-group metrics drawn against the truth and against the recorded labels.
GROUP_METRICS = ("fnr", "fpr", "ppv", "auroc", "calibration_in_the_large")
#: Figures every report writes (``headline_heatmap`` only with two settings swept on a grid,
#: ``methods`` only when the run has fairness methods).
FIGURES = ("graph", "headline", "groups", "roc_calibration", "cohort")

GROUP_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#000000")
MODEL_COLOURS = ("#332288", "#117733", "#AA4499", "#44AA99", "#999933", "#882255", "#661100", "#6699CC")

DPI = 150  # PNG files
FRAME_DPI = 96  # the explorer's pre-rendered frames (embedded once per sweep point)
WIDTH = 10.0  # inches, every figure but the graph

#: Matplotlib settings the figures are drawn under (one look for every figure).
STYLE_RC = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.color": "#E5E5E5", "grid.linewidth": 0.6,
    "axes.axisbelow": True, "figure.facecolor": "white",
}


def group_colour(i: int) -> str:
    return GROUP_COLOURS[i % len(GROUP_COLOURS)]


def model_colour(i: int) -> str:
    return MODEL_COLOURS[i % len(MODEL_COLOURS)]


def is_rate(metric: str) -> bool:
    return metric in RATE_COUNTS


def _figure(height: float, width: float = WIDTH) -> Figure:
    with matplotlib.rc_context(STYLE_RC):
        return Figure(figsize=(width, height), layout="constrained")


def _subplots(fig, rows: int, cols: int, **kw):
    with matplotlib.rc_context(STYLE_RC):
        return fig.subplots(rows, cols, squeeze=False, **kw)


def _point_axis(ax, run: RunData, *, labels: bool = True) -> None:
    P = len(run.points)
    ax.set_xticks(range(P))
    ax.set_xticklabels([run.point_label(p, short=True) for p in range(P)] if labels else [""] * P)
    ax.set_xlim(-0.4, P - 0.6)


# --- the headline: signed gaps and the part the biases caused -----------------------------------------
def headline_series(run: RunData, metric: str) -> dict:
    """Per model, arrays over the points (NaN where withheld), from the gap and caused findings:
    ``gap``, ``gap_lo``, ``gap_hi``, ``clean``, ``caused``, ``caused_lo``, ``caused_hi``; and
    ``labels`` (the gap the recorded training labels carry, rates only, NaN where a group has too
    few cases); ``groups`` (compared, reference); ``scale`` (100 for rates: percentage points)."""
    P = len(run.points)
    scale = 100.0 if is_rate(metric) else 1.0
    out: dict = {"models": {}, "groups": None, "scale": scale}
    for m in run.plain_models:
        s = {k: np.full(P, np.nan) for k in ("gap", "gap_lo", "gap_hi", "clean", "caused", "caused_lo", "caused_hi")}
        for p in range(P):
            g = run.finding(f"gap/{metric}/{p}/{m}/biased")
            c = run.finding(f"caused/{metric}/{p}/{m}")
            if g is not None:
                out["groups"] = out["groups"] or tuple(g.subject["groups"])
                if g.verdict != TOO_FEW:
                    q = g.quantities["gap"]
                    s["gap"][p], s["gap_lo"][p], s["gap_hi"][p] = q.value, q.lo, q.hi
            if c is not None and c.verdict != TOO_FEW:
                q = c.quantities["caused"]
                s["caused"][p], s["caused_lo"][p], s["caused_hi"][p] = q.value, q.lo, q.hi
                s["clean"][p] = c.quantities["clean_gap"].value
        out["models"][m] = {k: v * scale for k, v in s.items()}
    labels = np.full(P, np.nan)
    if out["groups"] and is_rate(metric):
        grp, ref = out["groups"]
        for p in range(P):
            terms = []
            for coef, g in ((1.0, grp), (-1.0, ref)):
                c = run.view.counts(p, "data", "biased", "truth", g)
                xn = rate_counts(c, metric) if c is not None else None
                if xn is None or I.rate_withheld(I.pooled_rate(*xn)):
                    break
                terms.append((coef, *xn))
            else:
                labels[p] = I.rate_contrast(terms).value * scale
    out["labels"] = labels
    return out


def _unit(metric: str) -> str:
    return "percentage points" if is_rate(metric) else f"{SHORT.get(metric, metric)} units"


def headline_figure(run: RunData, *, which: Sequence[str] | None = None, mark: int | None = None,
                    height_per_row: float = 2.3, width: float = WIDTH, short: bool = False) -> Figure:
    """Each headline metric (rows) against the swept setting: the signed gap (left) and the part
    the injected biases caused (right), one colour per model; solid = trained on the biased data
    (band: 95% interval), dashed = on the clean twin, dotted black = the training labels' gap."""
    which = list(run.metrics if which is None else which)
    P = len(run.points)
    x = np.arange(P)
    fig = _figure(height_per_row * max(len(which), 1) + 0.7, width)
    axes = _subplots(fig, max(len(which), 1), 2, sharex=True)
    for r, d in enumerate(which):
        left, right = axes[r]
        series = headline_series(run, d)
        for mi, m in enumerate(run.models):
            s = series["models"].get(m)
            if s is None:
                continue
            c = model_colour(mi)
            left.plot(x, s["gap"], "-o", color=c, lw=1.8, ms=4)
            left.fill_between(x, s["gap_lo"], s["gap_hi"], color=c, alpha=0.15, lw=0)
            left.plot(x, s["clean"], "--", color=c, lw=1.3, ms=3, marker="s", mfc="white")
            right.plot(x, s["caused"], "-o", color=c, lw=1.8, ms=4)
            right.fill_between(x, s["caused_lo"], s["caused_hi"], color=c, alpha=0.15, lw=0)
        if np.isfinite(series["labels"]).any():
            left.plot(x, series["labels"], ":", color="black", lw=1.4, marker="x", ms=4)
        for ax in (left, right):
            ax.axhline(0, color="#777777", lw=0.8)
        name = SHORT.get(d, d)
        grp, ref = series["groups"] or ("", "")
        left.set_title(f"{name} gap: {grp} minus {ref}" if not short else f"{name} gap", loc="left",
                       fontweight="bold")
        right.set_title(f"{name} gap: change caused by the biases" if not short else f"{name}: caused by biases",
                        loc="left", fontweight="bold")
        left.set_ylabel(_unit(d))
        right.set_ylabel("biased - clean twin")
        for ax in (left, right):
            _point_axis(ax, run, labels=r == len(which) - 1)
            if mark is not None:
                ax.axvspan(mark - 0.3, mark + 0.3, color="#E41A1C", alpha=0.12, lw=0)
    for ax in axes[-1]:
        ax.set_xlabel(run.axis_label())
    handles = [Line2D([], [], color=model_colour(i), lw=2, label=m) for i, m in enumerate(run.models)
               if m in run.plain_models]
    handles += [Line2D([], [], color="#555555", lw=1.8, marker="o", ms=4, label="trained on the biased data"),
                Line2D([], [], color="#555555", lw=1.3, ls="--", marker="s", mfc="white", ms=3,
                       label="trained on the clean twin"),
                Line2D([], [], color="black", lw=1.4, ls=":", marker="x", ms=4, label="gap in the training labels"),
                Patch(color="#555555", alpha=0.2, label="95% interval")]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 3 if short else 4),
               frameon=False)
    return fig


def grid_axes(run: RunData) -> tuple[str, str, list, list] | None:
    """(row path, column path, row values, column values) when two settings are swept on a full
    grid (one point per combination), else None."""
    if len(run.varying) != 2:
        return None
    a, b = run.varying
    va = list(dict.fromkeys(repr(p.get(a)) for p in run.points))
    vb = list(dict.fromkeys(repr(p.get(b)) for p in run.points))
    combos = {(repr(p.get(a)), repr(p.get(b))) for p in run.points}
    if len(combos) != len(run.points) or len(combos) != len(va) * len(vb):
        return None
    vals_a = [next(p.get(a) for p in run.points if repr(p.get(a)) == v) for v in va]
    vals_b = [next(p.get(b) for p in run.points if repr(p.get(b)) == v) for v in vb]
    return a, b, vals_a, vals_b


def heatmap_figure(run: RunData) -> Figure | None:
    """Two swept settings on a grid: per model (rows) and headline metric, the signed gap and the
    part the biases caused (columns), as in the gap findings."""
    from simsys.explain import setting_label

    g = grid_axes(run)
    if g is None or not run.plain_models or not run.metrics:
        return None
    a, b, va, vb = g
    cols = [(d, part) for d in run.metrics for part in ("gap", "caused")]
    fig = _figure(2.6 * len(run.plain_models) + 0.6)
    axes = _subplots(fig, len(run.plain_models), len(cols))
    where = {(repr(p.get(a)), repr(p.get(b))): i for i, p in enumerate(run.points)}
    for mi, m in enumerate(run.plain_models):
        for ci, (d, part) in enumerate(cols):
            ax = axes[mi][ci]
            series = headline_series(run, d)["models"][m]
            style = "pp" if is_rate(d) else "sdec"
            scale = 100.0 if is_rate(d) else 1.0
            z = np.full((len(va), len(vb)), np.nan)
            for i, u in enumerate(va):
                for j, v in enumerate(vb):
                    z[i, j] = series[part][where[(repr(u), repr(v))]]
            lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
            lim = lim if lim > 0 else 1.0
            im = ax.imshow(z, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", origin="upper")
            for i in range(len(va)):
                for j in range(len(vb)):
                    text = fmt(z[i, j] / scale, style) if np.isfinite(z[i, j]) else "too few"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="white" if np.isfinite(z[i, j]) and abs(z[i, j]) > 0.6 * lim else "black")
            ax.set_xticks(range(len(vb)), [fmt(v, "setting") for v in vb])
            ax.set_yticks(range(len(va)), [fmt(v, "setting") for v in va])
            ax.set_xlabel(setting_label(b))
            ax.set_ylabel(setting_label(a))
            ax.grid(False)
            what = "gap" if part == "gap" else "caused by the biases"
            ax.set_title(f"{m}: {SHORT.get(d, d)} {what} ({'pp' if is_rate(d) else 'units'})",
                         loc="left", fontsize=8.5)
            fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


# --- per group -------------------------------------------------------------------------------------
def group_metrics(run: RunData) -> list[str]:
    return [k for k in GROUP_METRICS if run.has(k)]


def group_limits(run: RunData, metrics: Sequence[str]) -> dict[str, tuple[float, float]]:
    """y-limits per metric, shared by every point and reference (the explorer's frames compare)."""
    out = {}
    s = run.summary
    for k in metrics:
        rows = s[(s["scope"] == "group") & (s["metric"] == k) & (s["training"] == "biased")
                 & (s["group"] != "overall")] if len(s) else s
        vals = np.concatenate([rows[c].to_numpy(dtype=float) for c in ("lo", "hi", "estimate")]) if len(rows) else np.array([])
        vals = vals[np.isfinite(vals)]
        lo = min(0.0, float(vals.min())) if len(vals) else 0.0
        hi = max(float(vals.max()), 0.05) if len(vals) else 1.0
        if is_rate(k) or k == "auroc":
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        pad = 0.2 * (hi - lo)  # room for the value printed above each bar
        out[k] = (lo - (pad if lo < 0 else 0), hi + pad)
    return out


def _group_bars(ax, run: RunData, point: int, k: str, ref: str, limits: tuple[float, float], *,
                labels: bool = True) -> None:
    """Bars per model (x) and group (colour): the summary's estimate, whiskers its 95% interval;
    rates on fewer than MIN_CASES cases are hatched and unlabelled."""
    G, M = len(run.groups), len(run.models)
    w = 0.8 / max(G, 1)
    lo_k, hi_k = limits
    labels = labels and G * M <= 12
    style = "pct" if is_rate(k) else ("sdec" if k == "calibration_in_the_large" else "dec")
    for gi, g in enumerate(run.groups):
        for mi, m in enumerate(run.models):
            st = run.stat(point, m, k, reference=ref, group=g)
            if not math.isfinite(st.estimate):
                continue
            x = mi - 0.4 + w * (gi + 0.5)
            few = is_rate(k) and not (st.cases >= I.MIN_CASES)
            err = None
            if st.has_interval:
                err = [[max(st.estimate - st.lo, 0.0)], [max(st.hi - st.estimate, 0.0)]]
            ax.bar([x], [st.estimate], width=w * 0.92, color="white" if few else group_colour(gi),
                   edgecolor=group_colour(gi), hatch="///" if few else None, lw=0.8, yerr=err,
                   error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#333333"})
            if labels and not few:
                top = min(max(st.hi if st.has_interval else st.estimate, st.estimate, 0.0), hi_k)
                ax.text(x, top + 0.02 * (hi_k - lo_k), fmt(st.estimate, style), ha="center", va="bottom",
                        fontsize=6.5, color="#222222", clip_on=False)
    ax.set_xticks(range(M), run.models)
    ax.set_xlim(-0.5, M - 0.5)
    ax.set_ylim(lo_k, hi_k)
    if is_rate(k):
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    if k == "calibration_in_the_large":
        ax.axhline(0, color="#777777", lw=0.8)


def _groups_legend(fig: Figure, run: RunData, point: int) -> None:
    handles = [Patch(color=group_colour(i), label=g) for i, g in enumerate(run.groups)]
    handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///",
                         label="rate on too few cases"))
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 6), frameon=False,
               title=f"models trained on the biased data, at {run.point_label(point)}"
                     + ("; whiskers: 95% intervals" if run.replicates > 1 else ""))


AUDIT = "Against the recorded test labels (an audit's view)"


def groups_figure(run: RunData, point: int, *, limits: dict | None = None) -> Figure:
    """Per-group metrics of the models trained on the biased data at one point, with 95%
    intervals: against the truth (left) and against the recorded test labels (right)."""
    metrics = group_metrics(run)
    limits = limits or group_limits(run, metrics)
    fig = _figure(1.9 * max(len(metrics), 1) + 1.1)
    with matplotlib.rc_context(STYLE_RC):
        subs = fig.subfigures(1, 2, wspace=0.02)
    for c, ref in enumerate(("truth", "observed")):
        subs[c].suptitle("Against the truth" if ref == "truth" else AUDIT, fontsize=10, fontweight="bold")
        axes = _subplots(subs[c], max(len(metrics), 1), 1)
        for r, k in enumerate(metrics):
            _group_bars(axes[r][0], run, point, k, ref, limits[k])
            axes[r][0].set_title(NAMES.get(k, k), loc="left")
    _groups_legend(fig, run, point)
    return fig


def audit_differs(run: RunData) -> bool:
    """Whether the recorded test labels differ from the truth at some point (else the audit's
    view shows the same values)."""
    return any(run.test_labels_equal_truth(p) is False for p in range(len(run.points)))


def groups_frame(run: RunData, point: int, *, limits: dict) -> Figure:
    """The explorer's compact version: FNR, FPR and AUROC side by side, against the truth, and
    against the recorded test labels when those differ from the truth somewhere in the run."""
    metrics = [k for k in ("fnr", "fpr", "auroc") if run.has(k)] or group_metrics(run)[:3]
    refs = ["truth", "observed"] if audit_differs(run) else ["truth"]
    fig = _figure(2.3 * len(refs) + 0.8)
    axes = _subplots(fig, len(refs), max(len(metrics), 1))
    for r, ref in enumerate(refs):
        for c, k in enumerate(metrics):
            _group_bars(axes[r][c], run, point, k, ref, limits[k])
            where = "" if len(refs) == 1 else (" (truth)" if ref == "truth" else " (recorded labels)")
            axes[r][c].set_title(f"{SHORT.get(k, k)}{where}", loc="left", fontweight="bold")
    _groups_legend(fig, run, point)
    return fig


# --- ROC and calibration of one cell --------------------------------------------------------------
def _rep0(run: RunData, point: int, model: str, metric: str, group: str, scope: str = "group") -> float:
    r = run.results
    rows = r[(r["point"] == point) & (r["replicate"] == 0) & (r["model"] == model) & (r["training"] == "biased")
             & (r["reference"] == "truth") & (r["scope"] == scope) & (r["group"] == group) & (r["metric"] == metric)]
    return float(rows["value"].iloc[0]) if len(rows) else math.nan


def roc_figure(run: RunData, point: int, preds: Predictions) -> Figure:
    """ROC (left) and calibration (right) curves per group for each model (rows), against the
    truth, for the first replicate of one point; the dot is the operating point of the 0/1
    predictions the run made."""
    M = max(len(run.models), 1)
    fig = _figure(3.4 * M + 0.6)
    axes = _subplots(fig, M, 2)
    frame = preds.frame
    for mi, m in enumerate(run.models):
        roc, cal = axes[mi]
        sub = frame[frame["model"] == m] if frame is not None else None
        # a method that makes 0/1 predictions itself has no scores to draw curves from
        hard = run.view.reason(point, m, "biased", "truth", "threshold", "overall", "threshold") is not None
        top = 0.0
        drew = False
        for gi, g in enumerate(run.groups):
            if sub is None or not len(sub):
                continue
            rows = sub[sub["group"] == gi]
            if not len(rows):
                continue
            y = rows["y_true"].to_numpy(np.int64)
            s = rows["score"].to_numpy(np.float64)
            if hard:
                s = np.full(len(s), np.nan)
            c = group_colour(gi)
            pts = roc_points(y, s)
            auc = _rep0(run, point, m, "auroc", g)
            label = g + (f" (AUROC {fmt(auc, 'dec')})" if math.isfinite(auc) else "")
            if pts is not None:
                roc.plot(*pts, color=c, lw=1.6, label=label)
            fx, ty = operating_point(y, rows["y_pred"].to_numpy(np.int64))
            roc.plot([fx], [ty], "o", color=c, mec="black", ms=6, label=None if pts is not None else label)
            drew = True
            if np.isfinite(s).any():
                mx, my = calibration_points(y, s)
                cal.plot(mx, my, "-o", color=c, lw=1.4, ms=3.5, label=g)
                top = max(top, float(np.nanmax(mx)), float(np.nanmax(my)))
        roc.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
        roc.set_xlim(0, 1)
        roc.set_ylim(0, 1.01)
        roc.set_xlabel("false-positive rate")
        roc.set_ylabel("true-positive rate")
        roc.set_title(f"{m}: ROC per group (dot: its 0/1 predictions)", loc="left", fontweight="bold")
        top = min(1.0, top * 1.1) if top > 0 else 1.0
        cal.plot([0, top], [0, top], color="#999999", lw=0.8, ls="--")
        cal.set_xlim(0, top)
        cal.set_ylim(0, top)
        cal.set_xlabel("mean predicted risk (10 equal-count bins)")
        cal.set_ylabel("true rate")
        cal.set_title(f"{m}: calibration per group", loc="left", fontweight="bold")
        if not drew:
            for ax in (roc, cal):
                ax.text(0.5, 0.5, "no predictions for this model", transform=ax.transAxes, ha="center")
        else:
            roc.legend(loc="lower right", frameon=False)
            if hard or (sub is not None and not np.isfinite(sub["score"].to_numpy(np.float64)).any()):
                cal.text(0.5, 0.5, "0/1 predictions only: no scores, no curves", transform=cal.transAxes,
                         ha="center")
    fig.suptitle(f"Trained on the biased data, first replicate at {run.point_label(point)}", fontsize=9.5)
    return fig


# --- the cohorts -----------------------------------------------------------------------------------
def cohort_figure(run: RunData, cohort: Cohorts, points: Sequence[int] | None = None, *,
                  side_by_side: bool = False) -> Figure:
    """Who is in the data, summed over the replicates: group shares (top) and the share with the
    outcome per group (bottom) in the test population, the clean twin and the biased training set;
    black ticks mark the share whose recorded label is positive."""
    points = list(range(len(run.points))) if points is None else list(points)
    multi = len(run.points) > 1
    sets: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
    p0 = points[0]
    same_test = all(np.array_equal(cohort.test_n[p], cohort.test_n[p0], equal_nan=True) for p in points)
    if same_test or not multi:
        sets.append(("test population", cohort.test_n[p0], cohort.test_pos[p0], cohort.test_labelled[p0]))
    else:
        sets += [(f"test population\n{run.point_label(p)}", cohort.test_n[p], cohort.test_pos[p],
                  cohort.test_labelled[p]) for p in points]
    if cohort.same_clean or len(points) == 1:
        sets.append(("clean twins", cohort.clean_n[p0], cohort.clean_pos[p0], None))
    else:
        sets += [(f"clean twins\n{run.point_label(p)}", cohort.clean_n[p], cohort.clean_pos[p], None) for p in points]
    for p in points:
        name = "biased training sets" + (f"\n{run.point_label(p)}" if multi else "")
        sets.append((name, cohort.biased_n[p], cohort.biased_pos[p], cohort.biased_labelled[p]))
    S, G = len(sets), len(run.groups)
    with matplotlib.rc_context(STYLE_RC):
        if side_by_side:  # the explorer's frame: shares left, prevalence right
            fig = _figure(2.9)
            gs = fig.add_gridspec(1, 2, width_ratios=[1.15, 1])
        else:
            fig = _figure(0.42 * S + 3.6)
            gs = fig.add_gridspec(2, 1, height_ratios=[0.42 * S + 0.6, 2.8])
        top, bottom = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    for si, (_, n, _, _) in enumerate(sets):
        total = float(np.nansum(n))
        left = 0.0
        for gi in range(G):
            share = n[gi] / total if total > 0 and np.isfinite(n[gi]) else 0.0
            top.barh(S - 1 - si, share, left=left, color=group_colour(gi), height=0.7)
            if share >= 0.045:
                top.text(left + share / 2, S - 1 - si, fmt(share, "pct"), ha="center", va="center", fontsize=7)
            left += share
        top.text(1.01, S - 1 - si, f"n = {fmt(total, 'count')}", va="center", fontsize=7.5)
    top.set_yticks(range(S), [s[0] for s in sets][::-1])
    top.set_xlim(0, 1.22 if side_by_side else 1)
    if side_by_side:
        top.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    top.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    top.set_title("Share of each group" if side_by_side else
                  f"Who is in the data: share of each group (patients summed over {run.replicates} replicates)",
                  loc="left", fontweight="bold")
    top.grid(False)
    w = 0.8 / max(G, 1)
    for si, (_, n, pos, lab) in enumerate(sets):
        prev = Cohorts.share(pos, n)
        tick = Cohorts.share(lab, n) if lab is not None else None
        for gi in range(G):
            x = si - 0.4 + w * (gi + 0.5)
            if np.isfinite(prev[gi]):
                bottom.bar(x, prev[gi], width=w * 0.9, color=group_colour(gi))
            if tick is not None and np.isfinite(tick[gi]):
                bottom.plot([x - w * 0.45, x + w * 0.45], [tick[gi]] * 2, color="black", lw=2)
    bottom.set_xticks(range(S), [s[0] for s in sets], fontsize=7)
    bottom.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    target = run.scenario.spec.roles.target
    bottom.set_title(f"Share with {target} = 1" if side_by_side else
                     f"Share with {target} = 1 (the truth), per group; black: share recorded as 1",
                     loc="left", fontweight="bold")
    handles = [Patch(color=group_colour(i), label=g) for i, g in enumerate(run.groups)]
    handles.append(Line2D([], [], color="black", lw=2, label="recorded as positive"))
    fig.legend(handles=handles, loc="outside upper center", ncol=min(G + 1, 6), frameon=False)
    return fig


# --- methods: accuracy against disparity ---------------------------------------------------------------
def methods_figure(run: RunData, point: int, metric: str, own: set[str]) -> Figure:
    """Accuracy (y) against a disparity (x) per model and method, at one point, trained on the
    biased data: filled markers against the truth (whiskers: 95% intervals both ways), hollow
    markers against the recorded test labels; squares: methods at their own operating point."""
    fig = _figure(4.6, 7.5)
    ax = _subplots(fig, 1, 1)[0][0]
    for mi, m in enumerate(run.models):
        c = model_colour(mi)
        marker = "s" if m in own else "o"
        for ref, filled in (("truth", True), ("observed", False)):
            x = run.stat(point, m, metric, reference=ref, scope="disparity")
            y = run.stat(point, m, "accuracy", reference=ref, group="overall")
            if not (math.isfinite(x.estimate) and math.isfinite(y.estimate)):
                continue
            xerr = [[x.estimate - x.lo], [x.hi - x.estimate]] if x.has_interval else None
            yerr = [[y.estimate - y.lo], [y.hi - y.estimate]] if y.has_interval else None
            ax.errorbar([x.estimate], [y.estimate], xerr=xerr, yerr=yerr, fmt=marker, color=c,
                        mfc=c if filled else "white", mec=c, ms=7 if filled else 6, elinewidth=1.0 if filled else 0.6,
                        capsize=2, alpha=1.0 if filled else 0.8, label=m if filled else None)
    ax.set_xlabel(f"{metric.replace('_', ' ')} (0: equal across groups)")
    ax.set_ylabel("accuracy")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title(f"Trained on the biased data, at {run.point_label(point)}", loc="left", fontsize=8.5)
    handles = [Line2D([], [], color=model_colour(i), marker="s" if m in own else "o", lw=0, label=m)
               for i, m in enumerate(run.models)]
    handles += [Line2D([], [], color="#555555", marker="o", lw=0, label="against the truth"),
                Line2D([], [], color="#555555", marker="o", mfc="white", lw=0, label="against the recorded labels"),
                Line2D([], [], color="#555555", marker="s", lw=0, label="own operating point")]
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    fig.suptitle("Accuracy against disparity", fontweight="bold", fontsize=10)
    return fig


__all__ = ["FIGURES", "GROUP_METRICS", "audit_differs", "cohort_figure", "groups_figure", "groups_frame",
           "headline_figure", "headline_series", "heatmap_figure", "methods_figure", "roc_figure"]
