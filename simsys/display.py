"""Rich displays for Jupyter: a scenario, a cohort and a run result as HTML, and the graph as SVG.

This module owns what simsys objects look like in a notebook (``_repr_html_``) and the one SVG of
the causal graph that the live explorer (``simsys.explore``) lights up. The classes themselves keep
only a two-line ``_repr_html_`` that calls in here, so that rendering (matplotlib, HTML) is imported
when a notebook asks for it and never by a command that does not draw.

- :func:`scenario_html`: the graph inline, the roles, and each bias in one sentence with its
  numbers per group (``simsys.explain.bias_lines``).
- :func:`cohort_summary` -> :class:`CohortSummary`: a cohort from :func:`simsys.sample` is a plain
  pandas DataFrame, and stays one. A DataFrame subclass would have to survive every pandas
  operation (``_constructor``, ``_metadata``, pickling) and would replace the rows a user expects
  to see when a frame is displayed; a separate summary object does neither. It holds the numbers
  as a DataFrame (``.table``), and displays them as a true-vs-recorded table per group: how many
  patients, the prevalence of the target true and as recorded (with counts), each corrupted
  feature true and as recorded, and -- given the clean twin -- who is kept.
- :func:`run_result_html`: a run's headline rows (the summary's gap, the part the biases caused and
  the gap the training labels carry, with 95% intervals) and, when the run wrote its folder, the
  headline figure inline.
- :func:`graph_svg`: the drawing of :func:`simsys.drawing.draw_graph` as SVG text in which every
  box, label and arrow has an id (:class:`GraphSVG`), so that a page can light the elements a
  setting moves without drawing the graph again; :func:`lit_ids` says which ids to light, with
  the rule ``draw_graph(highlight=...)`` uses, and :func:`light_svg` marks them in the text.

Every number shown comes from the object displayed; nothing is estimated here.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from simsys.runner import RunResult
    from simsys.scenario import Scenario

#: Colour of lit elements (the one ``simsys.drawing`` uses for a highlight).
HIGHLIGHT = "#E41A1C"

#: Style rules of a lit graph: lit elements in red, the others faded, as ``draw_graph`` does.
GRAPH_CSS = f"""
.simsys-graph svg {{ max-width: 100%; height: auto; }}
.simsys-graph svg.has-lit [id^="simsys-el-"]:not(.lit),
.simsys-graph svg.has-lit [id^="simsys-edge-"]:not(.lit) {{ opacity: 0.3; }}
.simsys-graph svg [id^="simsys-el-"]:not([id*="-t"]).lit path {{ stroke: {HIGHLIGHT} !important; stroke-width: 3px !important; }}
.simsys-graph svg [id^="simsys-edge-"].lit path {{ stroke: {HIGHLIGHT} !important; }}
.simsys-graph svg [id^="simsys-edge-"].lit path[style*="fill: none"] {{ stroke-width: 2.4px !important; }}
.simsys-graph svg [id^="simsys-edge-"].lit path:not([style*="fill: none"]) {{ fill: {HIGHLIGHT} !important; }}
"""


# --- the graph ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphSVG:
    """The causal graph as SVG text with an id on every drawn element.

    ``element_ids`` maps a drawing element (a node name, ``bias:0``, an ``_observed`` variable,
    ``in training data``) to the ids of its box and its two labels; ``edges`` lists each arrow's
    id with its (source, target, kind).
    """

    svg: str
    element_ids: dict[str, tuple[str, ...]]
    edges: tuple[tuple[str, str, str, str], ...]  # (svg id, source, target, kind)

    @property
    def all_ids(self) -> set[str]:
        return {i for ids in self.element_ids.values() for i in ids} | {e[0] for e in self.edges}


def graph_svg(scenario: Scenario) -> GraphSVG:
    """Draw the scenario's graph once (:func:`simsys.drawing.draw_graph`) and give its parts ids.

    The drawing is not repeated here: the figure's boxes are matched to the layout's elements by
    position, its labels by text and position, and its arrows (drawn in the order of
    ``graph_elements(...).edges``) by order; the counts are checked, so that a change of the
    drawing shows up as an error here rather than as a wrongly lit picture.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from simsys.drawing import draw_graph, figure_bytes, layout

    lay = layout(scenario)
    ge = lay.elements
    fig = draw_graph(scenario)
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    if len(arrows) != len(ge.edges):
        raise RuntimeError(f"graph_svg: {len(arrows)} arrows drawn for {len(ge.edges)} edges")
    element_ids: dict[str, tuple[str, ...]] = {}
    texts = list(ax.texts)
    for k, e in enumerate(ge.elements.values()):
        (cx, cy), (w, h) = lay.centres[e.id], lay.sizes[e.id]
        box = next((p for p in boxes if abs(p.get_x() - (cx - w / 2)) < 1e-9
                    and abs(p.get_y() - (cy - h / 2)) < 1e-9), None)
        inner = next((p for p in boxes if abs(p.get_x() - (cx - w / 2 + 0.04)) < 1e-9
                      and abs(p.get_y() - (cy - h / 2 + 0.04)) < 1e-9), None)  # a double border
        labels = [t for t in texts if abs(t.get_position()[0] - cx) < 1e-9
                  and abs(t.get_position()[1] - cy) <= h / 2 and t.get_text() in (e.name, e.tag)]
        if box is None or len(labels) != 2:
            raise RuntimeError(f"graph_svg: cannot find the drawing of element {e.id!r}")
        ids = [f"simsys-el-{k}"]
        box.set_gid(ids[0])
        for j, t in enumerate(labels):
            ids.append(f"simsys-el-{k}-t{j}")
            t.set_gid(ids[-1])
        if inner is not None:
            ids.append(f"simsys-el-{k}-b")
            inner.set_gid(ids[-1])
        element_ids[e.id] = tuple(ids)
    edges = []
    for k, (arrow, ed) in enumerate(zip(arrows, ge.edges)):
        arrow.set_gid(f"simsys-edge-{k}")
        edges.append((f"simsys-edge-{k}", ed.source, ed.target, ed.kind))
    svg = figure_bytes(fig, "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: the text goes inside HTML
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)  # dates, licence
    return GraphSVG(svg, element_ids, tuple(edges))


def lit_ids(graph: GraphSVG, elements: set[str] | frozenset[str]) -> list[str]:
    """The SVG ids to light for a set of drawing elements (node names, ``bias:0``, ...).

    The rule is ``draw_graph(highlight=elements)``'s: the elements themselves, and the arrows that
    touch one of them and either touch a bias or are causal arrows.
    """
    out = [i for e in elements for i in graph.element_ids.get(e, ())]
    for sid, src, dst, kind in graph.edges:
        if (src in elements or dst in elements) and (
                src.startswith("bias:") or dst.startswith("bias:") or kind == "cause"):
            out.append(sid)
    return sorted(set(out))


_ID_ATTR = re.compile(r'<g id="(simsys-(?:el|edge)-[0-9]+(?:-t[0-9]|-b)?)"')


def light_svg(svg: str, ids: list[str] | set[str]) -> str:
    """The SVG text with ``class="lit"`` on the given ids (and ``has-lit`` on the root when any)."""
    ids = set(ids)
    out = _ID_ATTR.sub(lambda m: m.group(0) + (' class="lit"' if m.group(1) in ids else ""), svg)
    if ids:
        out = out.replace("<svg ", '<svg class="has-lit" ', 1)
    return out


# --- a scenario ----------------------------------------------------------------------------------------
def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def scenario_html(scenario: Scenario) -> str:
    """A scenario in a notebook: its name and description, the graph inline, roles and biases."""
    from simsys import explain as X

    spec = scenario.spec
    roles = spec.roles
    graph = graph_svg(scenario)
    rows = [("group", X.join_words(scenario.groups)), ("target (the truth)", roles.target),
            ("features the model sees", X.join_words(list(roles.features))),
            ("recorded versions", X.join_words(X.observed_nodes(scenario)))]
    pops = ", ".join(f"{name} ({X.number(p.n)} patients, {'biased' if p.biased else 'unbiased'})"
                     for name, p in spec.populations.items())
    rows.append(("populations", pops))
    table = "".join(f"<tr><th style='text-align:left'>{_esc(k)}</th><td style='text-align:left'>{_esc(v)}</td></tr>"
                    for k, v in rows)
    biases = "".join(f"<li>{_esc(line)}</li>" for line in X.bias_lines(scenario))
    desc = " ".join(spec.description.split())
    if len(desc) > 400:
        desc = desc[:400].rsplit(" ", 1)[0] + " ..."
    return (f"<div class='simsys-scenario'><style>{GRAPH_CSS}</style>"
            f"<h3>Scenario {_esc(spec.name)}</h3><p>{_esc(desc)}</p>"
            f"<div class='simsys-graph'>{graph.svg}</div>"
            f"<table>{table}</table>"
            + (f"<p><b>Injected biases</b> (in the order they act):</p><ol>{biases}</ol>" if spec.biases
               else "<p>No injected bias: the data are the truth.</p>")
            + "</div>")


# --- a cohort ------------------------------------------------------------------------------------------
def _group_labels(scenario: Scenario, frame: pd.DataFrame) -> pd.Series:
    """``skin_tone=dark`` (``a=x & b=y`` for several group attributes) for every row."""
    parts = []
    for g in scenario.groups:
        col = frame[g]
        if isinstance(col.dtype, pd.CategoricalDtype):
            values = col.astype(str)
        else:
            cats = scenario.categories(g)
            values = col.astype(int).map(lambda v, cats=cats: cats[v] if 0 <= v < len(cats) else str(v))
        parts.append(g + "=" + values.astype(str))
    out = parts[0]
    for p in parts[1:]:
        out = out + " & " + p
    return out


def _order(scenario: Scenario) -> list[str]:
    from simsys.groups import GroupCoding

    return GroupCoding.of(scenario).labels


@dataclass
class CohortSummary:
    """A true-vs-recorded summary of a cohort per group (display it, or read ``.table``).

    Built by :func:`cohort_summary`. Columns of ``table`` (one row per group, then ``overall``):
    ``patients``, ``share``, ``true_cases``, ``true_prevalence``, ``recorded_cases``,
    ``recorded_prevalence``; with a twin also ``drawn`` and ``kept`` (the share of the twin's
    patients of that group who are in the cohort); and for each feature a bias corrupts,
    ``<feature>_true_mean``, ``<feature>_recorded_mean`` and ``<feature>_missing``.
    """

    table: pd.DataFrame
    scenario_name: str
    target: str
    description: str

    def _repr_html_(self) -> str:
        return cohort_html(self)

    def __repr__(self) -> str:
        return f"{self.description}\n{self.table.to_string()}"


def cohort_summary(cohort: pd.DataFrame, scenario: Scenario, *, twin: pd.DataFrame | None = None) -> CohortSummary:
    """Summarise a cohort from :func:`simsys.sample` per group: the truth beside what is recorded.

    Parameters
    ----------
    cohort : DataFrame
        A cohort of ``scenario`` (true columns and ``<name>_observed`` columns).
    scenario : Scenario
        The scenario it was drawn from (names the group, the target and the features).
    twin : DataFrame, optional
        Its clean twin (``simsys.sample(..., biased=False)`` with the same ``n`` and seed): the
        patients drawn before any bias dropped some, so that the summary can say who is kept.
    """
    target = scenario.spec.roles.target
    obs = target + "_observed"
    for col in (target, obs, *scenario.groups):
        if col not in cohort:
            raise ValueError(f"cohort_summary: the cohort has no column {col!r}; is it a cohort of "
                             f"scenario {scenario.name!r}?")
    labels = _group_labels(scenario, cohort)
    order = _order(scenario)
    frame = pd.DataFrame({"group": labels, "y": cohort[target].astype(float),
                          "r": cohort[obs].astype(float)})
    n_all = len(frame)
    rows = []
    feats = [f for f in scenario.spec.roles.features if f + "_observed" in cohort]
    twin_counts = _group_labels(scenario, twin).value_counts() if twin is not None else None
    for g in [*order, "overall"]:
        sel = frame if g == "overall" else frame[frame["group"] == g]
        n = len(sel)
        row = {"group": g, "patients": n, "share": n / n_all if n_all else np.nan,
               "true_cases": int(sel["y"].sum()), "true_prevalence": sel["y"].mean() if n else np.nan,
               "recorded_cases": int(np.nansum(sel["r"])), "recorded_prevalence": sel["r"].mean() if n else np.nan}
        if twin_counts is not None:
            drawn = int(twin_counts.sum()) if g == "overall" else int(twin_counts.get(g, 0))
            row["drawn"] = drawn
            row["kept"] = n / drawn if drawn else np.nan
        idx = sel.index
        for f in feats:
            true = cohort.loc[idx, f].astype(float)
            rec = cohort.loc[idx, f + "_observed"].astype(float)
            row[f + "_true_mean"] = true.mean() if n else np.nan
            row[f + "_recorded_mean"] = rec.mean() if n else np.nan
            row[f + "_missing"] = rec.isna().mean() if n else np.nan
        rows.append(row)
    table = pd.DataFrame(rows).set_index("group")
    attrs = cohort.attrs
    what = "biased" if attrs.get("biased") else "clean" if attrs.get("biased") is False else ""
    desc = (f"cohort of {scenario.name}: {n_all:,} patients"
            + (f" of population {attrs['population']}" if attrs.get("population") else "")
            + (f" ({what}, seed {attrs.get('seed')})" if what else ""))
    return CohortSummary(table, scenario.name, target, desc)


def _pct(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    v = 100 * x
    return f"{v:.0f}%" if v >= 10 or v == 0 else f"{v:.2g}%"


def cohort_html(summary: CohortSummary) -> str:
    t = summary.table
    target = summary.target
    head = ["group", "patients", "share"]
    if "drawn" in t:
        head += ["drawn", "kept"]
    head += [f"{target}: true", f"{target}: recorded"]
    feats = [c[: -len("_true_mean")] for c in t.columns if c.endswith("_true_mean")]
    for f in feats:
        head += [f"{f}: true mean", f"{f}: recorded mean", f"{f}: missing"]
    body = []
    for g, r in t.iterrows():
        cells = [g, f"{int(r['patients']):,}", _pct(r["share"])]
        if "drawn" in t:
            cells += [f"{int(r['drawn']):,}", _pct(r["kept"])]
        cells += [f"{_pct(r['true_prevalence'])} ({int(r['true_cases']):,})",
                  f"{_pct(r['recorded_prevalence'])} ({int(r['recorded_cases']):,})"]
        for f in feats:
            cells += [f"{r[f + '_true_mean']:.3g}", f"{r[f + '_recorded_mean']:.3g}", _pct(r[f + "_missing"])]
        tag = "th" if g == "overall" else "td"
        body.append("<tr>" + "".join(f"<{tag}>{_esc(c)}</{tag}>" for c in cells) + "</tr>")
    note = ("" if "drawn" in t else
            "<p><i>Pass <code>twin=</code> (the clean twin) to see who is kept.</i></p>")
    return (f"<div class='simsys-cohort'><p><b>{_esc(summary.description)}</b>: the truth beside what "
            f"is recorded (counts in brackets)</p><table><thead><tr>"
            + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + f"</tbody></table>{note}</div>")


# --- a run ---------------------------------------------------------------------------------------------


def run_result_html(result: RunResult) -> str:
    """A run in a notebook: its findings (the short answer, the headline tables, the key findings,
    each sentence as simsys.findings wrote it) and, from its folder, the headline figure."""
    from simsys import render
    from simsys.findings import headline_metrics

    name = result.manifest.get("scenario_name", "")
    out = [f"<div class='simsys-run'><h3>Run of {_esc(name)}</h3>"]
    if not result.findings or result.view is None:
        out.append("<p>No results (every cell failed; see <code>errors</code>).</p></div>")
        return "".join(out)
    lede = next((f for f in result.findings if f.kind == "lede"), None)
    if lede is not None:
        out.append(f"<p><b>{_esc(lede.text)}</b></p>")
    for metric in headline_metrics(result.view):
        table = render.gap_table(result.view, result.findings, metric)
        if table is None:
            continue
        header, rows = table
        out.append(f"<p>{_esc(render.table_title(result.findings, metric))}</p><table><thead><tr>"
                   + "".join(f"<th>{_esc(c)}</th>" for c in header) + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        out.append("</tbody></table>")
    key = render.key_findings(result.findings)
    if key:
        out.append("<ul>" + "".join(
            f"<li>{_esc(f.text)}{'' if f.verdict == 'supported' else f' <i>({_esc(f.verdict)})</i>'}</li>"
            for f in key) + "</ul>")
    out.append(_run_figure(result))
    if len(result.errors):
        out.append(f"<p>{len(result.errors)} failures recorded; see <code>errors</code>.</p>")
    out.append("</div>")
    return "".join(out)


def _run_figure(result: RunResult) -> str:
    """The headline figure of a run written to a folder (drawn from its files), else a note."""
    if result.run_dir is None:
        return ("<p><i>Figures are drawn from a run folder: run with an <code>output_dir</code> to see "
                "them here.</i></p>")
    from simsys.drawing import figure_bytes
    from simsys.report import load_run
    from simsys.report.figures import headline_figure

    run = load_run(result.run_dir)
    fig = headline_figure(run)
    data = base64.b64encode(figure_bytes(fig, "png", dpi=80)).decode("ascii")
    return (f"<img alt='the headline: the gaps against the swept setting' style='max-width:100%' "
            f"src='data:image/png;base64,{data}'/>")


__all__ = ["GRAPH_CSS", "CohortSummary", "GraphSVG", "cohort_summary", "graph_svg", "light_svg",
           "lit_ids", "run_result_html", "scenario_html"]
