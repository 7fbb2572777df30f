"""Text renderings of a run's findings: the console summary and ``summary.md``.

Nothing here computes or words a statement: the sentences are the findings' own
(:mod:`simsys.findings`), and the tables lay out the quantities of the gap findings, formatted by
:func:`simsys.findings.fmt`. So the console, ``summary.md`` and the report say the same thing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from functools import partial

from simsys.findings import NAMES, SHORT, TOO_FEW, Finding, RunView, fmt

WIDTH = 100
# never break inside "false-negative" or a long label: a wrapped sentence must read as written
_wrap = partial(textwrap.wrap, break_on_hyphens=False, break_long_words=False)
VERDICT_TAG = {"supported": "", "not distinguishable": "[not distinguishable] ",
               "too few cases": "[too few cases] "}


def gap_table(view: RunView, findings: Sequence[Finding], metric: str) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of one headline metric: per sweep point and model, both groups' values, the
    gap with its interval, and the part the biases caused with its interval."""
    gaps = {(f.subject["point"], f.subject["model"]): f for f in findings
            if f.kind == "gap" and f.subject.get("metric") == metric}
    caused = {(f.subject["point"], f.subject["model"]): f for f in findings
              if f.kind == "caused" and f.subject.get("metric") == metric}
    if not gaps:
        return None
    any_f = next(iter(gaps.values()))
    grp, ref = any_f.subject["groups"]
    vstyle, dstyle = ("pct", "pp") if any_f.quantities["compared"].cases is not None else ("dec", "sdec")
    settings = [p for p in view.varying]
    from simsys.explain import setting_label

    header = [*(setting_label(p) for p in settings), "model", grp, ref, "gap", "caused by the biases"]
    rows = []
    for p in range(len(view.points)):
        for m in view.models:
            f = gaps.get((p, m))
            if f is None:
                continue
            c = caused.get((p, m))
            row = [fmt(view.points[p].get(s), "setting") for s in settings] + [m]
            if f.verdict == TOO_FEW:
                row += [_value(f.quantities["compared"], vstyle), _value(f.quantities["reference"], vstyle),
                        "too few cases", "too few cases"]
            else:
                row += [_value(f.quantities["compared"], vstyle), _value(f.quantities["reference"], vstyle),
                        _with_interval(f.quantities["gap"], dstyle),
                        _with_interval(c.quantities["caused"], dstyle) if c is not None and c.verdict != TOO_FEW
                        else "too few cases"]
            rows.append(row)
    return header, rows


def _value(est, style: str) -> str:
    return fmt(est.value, style)


def _with_interval(est, style: str) -> str:
    if not est.has_interval:
        return fmt(est.value, style)
    return f"{fmt(est.value, style)} [{fmt(est.lo, style)}, {fmt(est.hi, style)}]"


def _table_text(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: indent + "  ".join(c.ljust(w) if i < len(header) - 4 else c.rjust(w)  # noqa: E731
                                            for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(header), *(line(r) for r in rows)]


def _table_md(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join("---" if i < len(header) - 4 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out


def table_title(findings: Sequence[Finding], metric: str) -> str:
    f = next(f for f in findings if f.kind == "gap" and f.subject.get("metric") == metric)
    grp, ref = f.subject["groups"]
    unit = "percentage points" if f.quantities["compared"].cases is not None else f"{SHORT.get(metric, metric)} units"
    name = NAMES.get(metric, metric)
    short = SHORT.get(metric, metric)
    return (f"{name}{'' if short == name else f' ({short})'} against the truth, models trained on "
            f"the biased data; gap = {grp} minus {ref}, in {unit} [95% interval]")


def key_findings(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind not in ("lede", "gap", "caused", "method", "fair_only_observed")]


def methods_table(findings: Sequence[Finding]) -> tuple[str, list[str], list[list[str]]] | None:
    """(title, header, rows) of the fairness methods against the baseline, or None."""
    ms = [f for f in findings if f.kind == "method"]
    if not ms:
        return None
    k = ms[0].subject["metric"]
    header = ["method", "overall TPR", "overall FPR", "accuracy vs baseline (pp)", f"{k} vs truth",
              f"{k} vs recorded labels", "recovery of the gap"]
    rows = []
    for f in ms:
        q = f.quantities
        mark = " *" if f.support.get("own_operating_point") else ""
        rows.append([f.subject["model"] + mark, fmt(q["tpr"].value, "pct"), fmt(q["fpr"].value, "pct"),
                     _with_interval(q["accuracy_vs_baseline"], "pp"), _with_interval(q["disparity_truth"], "dec"),
                     _with_interval(q["disparity_observed"], "dec"), _with_interval(q["recovery"], "ratio")])
    title = (f"Fairness methods at {ms[0].subject['setting']}, trained on the biased data (recovery: the share of "
             "the baseline's biased-to-clean gap a method closes; * = the method runs at its own operating point, "
             "not the experiment's threshold policy)")
    return title, header, rows


def console(view: RunView, findings: Sequence[Finding], *, metrics: Sequence[str]) -> str:
    """The summary ``simsys run`` prints: the short answer, one table per headline metric, the
    other findings (each tagged with its verdict when it is not simply supported)."""
    lines: list[str] = []
    lede = next((f for f in findings if f.kind == "lede"), None)
    if lede is not None:
        lines += [*_wrap(lede.text, WIDTH), ""]
    for metric in metrics:
        table = gap_table(view, findings, metric)
        if table is None:
            continue
        lines += _wrap(table_title(findings, metric) + ":", WIDTH)
        lines += [*_table_text(*table), ""]
    mt = methods_table(findings)
    if mt is not None:
        lines += _wrap(mt[0] + ":", WIDTH)
        lines += [*_table_text(mt[1], mt[2]), ""]
    for f in findings:
        if f.kind == "fair_only_observed":
            lines += _wrap("warning: " + f.text, WIDTH, subsequent_indent="  ")
    key = key_findings(findings)
    if key:
        lines.append("Findings:")
        for f in key:
            lines += _wrap(VERDICT_TAG[f.verdict] + f.text, WIDTH, initial_indent="  - ",
                                   subsequent_indent="    ")
    if not findings:
        lines.append("no findings: no cell produced results (see errors.csv)")
    return "\n".join(lines).rstrip()


def markdown(view: RunView, findings: Sequence[Finding], *, metrics: Sequence[str], title: str,
             facts: Sequence[tuple[str, str]]) -> str:
    """``summary.md``: the headline tables and every finding, for a person to read or paste."""
    out = [f"# {title}", ""]
    out += [f"- {k}: {v}" for k, v in facts] + [""]
    lede = next((f for f in findings if f.kind == "lede"), None)
    if lede is not None:
        out += [f"**{lede.text}**", ""]
    for metric in metrics:
        table = gap_table(view, findings, metric)
        if table is None:
            continue
        out += [f"## {table_title(findings, metric)}", ""]
        out += [*_table_md(*table), ""]
    mt = methods_table(findings)
    if mt is not None:
        out += [f"## {mt[0]}", "", *_table_md(mt[1], mt[2]), ""]
        out += [f"- {f.text}" for f in findings if f.kind == "method"]
        out += [f"- **Warning:** {f.text}" for f in findings if f.kind == "fair_only_observed"] + [""]
    key = key_findings(findings)
    if key:
        out += ["## Findings", ""]
        for f in key:
            tag = f" *({f.verdict})*" if f.verdict != "supported" else ""
            out.append(f"- {f.text}{tag}")
            if f.remedy:
                out.append(f"  - What would settle it: {f.remedy}.")
        out.append("")
    detail = [f for f in findings if f.kind in ("gap", "caused")]
    if detail:
        out += ["## Every gap, in words", ""]
        out += [f"- {f.text}" + (f" *({f.verdict})*" if f.verdict != "supported" else "") for f in detail]
        out.append("")
    out += ["## How to read these numbers", "",
            "Rates are pooled over the replicates (events of cases) with 95% Wilson intervals at the "
            "design-based effective sample size; gaps and every comparison are differences paired by "
            "replicate (the same patients), with t intervals over the replicates. A statement is made only "
            "when its interval excludes zero; otherwise it says *not distinguishable* and about how many "
            "replicates would settle it. A rate resting on fewer than 30 cases is withheld (*too few "
            "cases*). Definitions and sources: `docs/metrics.md` in simsys.", ""]
    return "\n".join(out)




def stress_markdown(result, ranking) -> str:
    """``summary.md`` of a stress battery: the ranking, where the method fails, the comparisons."""
    from simsys.findings import STRESS_METRICS

    out = [f"# simsys stress: {result.method}", ""]
    if result.against:
        out += [f"Compared with: {result.against} (paired, the same patients).", ""]
    out += ["## Ranking", "",
            "Methods ranked by how often they make the true gap worse than their baseline, then how often "
            "they only hide it from an audit, then by median recovery of the baseline's bias-caused "
            "equal-opportunity gap over the battery's points (1 = all of it, 0 = none).", ""]
    if ranking is not None and len(ranking):
        header = ["model", "makes the gap worse", "only hides the gap", "median recovery", "points scored",
                  "mean accuracy change vs baseline (pp)"]
        rows = [[r["model"], fmt(r["makes_gap_worse"], "int"), fmt(r["only_hides_gap"], "int"),
                 fmt(r["median_recovery"], "ratio"), f"{fmt(r['points_scored'], 'int')} of {fmt(r['points'], 'int')}",
                 fmt(r["mean_accuracy_change_pp"] / 100, "pp")] for _, r in ranking.iterrows()]
        out += [*_table_md(header, rows), ""]
    fails = result.failures()
    out += [f"## Where {result.method} fails", ""]
    out += [f"- {f.text}" for f in fails] if fails else [
        f"- Nowhere in this battery did {result.method} make the true gap distinguishably worse than its "
        "baseline, or look fair only against the recorded labels."]
    out.append("")
    others = [f for f in result.findings if f.kind in ("stress_worse", "stress_hides") and f not in fails]
    if others:
        out += ["## Where the comparators fail", ""] + [f"- {f.text}" for f in others] + [""]
    against = [f for f in result.findings if f.kind == "stress_against"]
    if against:
        out += [f"## {result.method} against {result.against}", ""]
        out += [f"- {f.text}" + ("" if f.verdict == "supported" else f" *({f.verdict})*") for f in against] + [""]
    out += ["## The leaderboard's metrics", ""] + [f"- `{k}`: {v}" for k, v in STRESS_METRICS.items()]
    out += ["", "Every scenario's own run is in its sub-folder (`<scenario>/run/`; `simsys report` on it "
            "draws its report).", ""]
    return "\n".join(out)


__all__ = ["console", "gap_table", "key_findings", "markdown", "methods_table", "stress_markdown", "table_title"]
