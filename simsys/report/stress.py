"""``stress.html``: the page of a ``simsys stress`` battery.

Per scenario of the battery: accuracy against the true-positive-rate gap for every method (with
their 95% intervals; filled markers against the truth, hollow against the recorded labels), the
recovery of the baseline's bias-caused gap over the bias strengths, and the places where the method
fails, in words. Every sentence with a number is a finding's own text (:mod:`simsys.findings`);
numbers in tables are formatted by :func:`simsys.findings.fmt`. Self-contained (images inlined).
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd

from simsys.findings import fmt
from simsys.io import atomic_write
from simsys.report.figures import model_colour


def _png(fig) -> str:
    from simsys.drawing import figure_bytes

    return "data:image/png;base64," + base64.b64encode(figure_bytes(fig, "png", dpi=110)).decode("ascii")


def scenario_figure(lb: pd.DataFrame, scenario: str, models: list[str], method: str):
    """Left: accuracy against the true TPR gap at the most-biased point of the scenario (every
    model; whiskers: 95% intervals; hollow: the gap against the recorded labels). Right: recovery
    of the baseline's equal-opportunity gap over the battery's bias strengths."""
    from matplotlib.figure import Figure

    sub = lb[lb["scenario"] == scenario]
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    points = sorted(sub["point"].unique())
    hi = points[-1] if points else 0

    def get(model, metric, point):
        r = sub[(sub["model"] == model) & (sub["metric"] == metric) & (sub["point"] == point)]
        return r.iloc[0] if len(r) else None

    for i, m in enumerate(models):
        c = model_colour(i)
        acc, gt, gr = get(m, "accuracy", hi), get(m, "tpr_gap.truth", hi), get(m, "tpr_gap.recorded", hi)
        if acc is not None and gt is not None:
            xerr = [[max(gt["estimate"] - gt["lo"], 0)], [max(gt["hi"] - gt["estimate"], 0)]] \
                if np.isfinite(gt["lo"]) else None
            yerr = [[max(acc["estimate"] - acc["lo"], 0)], [max(acc["hi"] - acc["estimate"], 0)]] \
                if np.isfinite(acc["lo"]) else None
            left.errorbar([gt["estimate"]], [acc["estimate"]], xerr=xerr, yerr=yerr, fmt="o", color=c,
                          ms=8 if m == method else 6, label=m, capsize=2)
            if gr is not None and np.isfinite(gr["estimate"]):
                left.plot([gr["estimate"]], [acc["estimate"]], "o", mfc="white", mec=c, ms=6)
        rec = [get(m, "recovery.equal_opportunity_difference", p) for p in points]
        ys = [r["estimate"] if r is not None else np.nan for r in rec]
        lo = [r["lo"] if r is not None else np.nan for r in rec]
        hi_ = [r["hi"] if r is not None else np.nan for r in rec]
        right.plot(range(len(points)), ys, "-o", color=c, lw=2.2 if m == method else 1.3, label=m)
        right.fill_between(range(len(points)), lo, hi_, color=c, alpha=0.12, lw=0)
    left.axvline(0, color="#777777", lw=0.8)
    left.set_xlabel("TPR gap, compared minus reference group\n(filled: against the truth; hollow: recorded labels)")
    left.set_ylabel("accuracy against the truth")
    left.set_title("at the most-biased setting", loc="left", fontsize=9)
    right.axhline(0, color="#777777", lw=0.8)
    right.axhline(1, color="#777777", lw=0.8, ls=":")
    settings = [sub[sub["point"] == p]["setting"].iloc[0] for p in points]
    right.set_xticks(range(len(points)), [s.replace(", ", "\n") for s in settings], fontsize=7)
    right.set_ylabel("recovery of the baseline's gap (1 = all)")
    right.set_title("over the bias strengths (band: 95% interval)", loc="left", fontsize=9)
    left.legend(fontsize=7, frameon=False)
    return fig


def write_stress_report(result, ranking: pd.DataFrame) -> Path:
    """Write ``stress.html`` into the battery's folder and return its path."""
    import jinja2

    from simsys.report.page import _static

    lb = result.leaderboard
    scenarios = []
    for label in result.runs:
        models = list(dict.fromkeys(lb.loc[lb["scenario"] == label, "model"]))
        fails = [f.text for f in result.failures() if f.subject.get("scenario") == label]
        others = [f.text for f in result.findings if f.kind in ("stress_worse", "stress_hides")
                  and f.subject.get("scenario") == label and f.subject.get("model") != result.method]
        against = [f.text for f in result.findings if f.kind == "stress_against" and f.subject.get("scenario") == label]
        scenarios.append({"name": label, "img": _png(scenario_figure(lb, label, models, result.method)),
                          "fails": fails, "others": others, "against": against,
                          "run": f"{label}/run" if result.run_dir is not None else None})
    rows = [[r["model"], fmt(r["makes_gap_worse"], "int"), fmt(r["only_hides_gap"], "int"),
             fmt(r["median_recovery"], "ratio"), f"{fmt(r['points_scored'], 'int')} of {fmt(r['points'], 'int')}",
             fmt(r["mean_accuracy_change_pp"] / 100, "pp")] for _, r in ranking.iterrows()]
    env = jinja2.Environment(loader=jinja2.PackageLoader("simsys.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("stress.html.j2").render(
        method=result.method, against=result.against, scenarios=scenarios, css=_static("report.css"),
        ranking_header=["model", "makes the gap worse", "only hides the gap", "median recovery", "points scored",
                        "mean accuracy change vs baseline (pp)"], ranking_rows=rows)
    path = result.run_dir / "stress.html"
    atomic_write(path, lambda t: Path(t).write_text(page, encoding="utf-8"))
    return path


__all__ = ["scenario_figure", "write_stress_report"]
