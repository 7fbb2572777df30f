"""The causal-graph drawing: a scenario's nodes, roles and injected biases, left to right.

This module owns the picture of a scenario (``simsys graph``, and the graph at the top of every
report): what the elements are (:func:`graph_elements`), where they go (:func:`layout`), and how
they are written out -- a matplotlib figure (:func:`draw_graph`, saved as SVG, PNG or PDF) or
Graphviz DOT text written by hand (:func:`to_dot`; no pydot or graphviz needed).

The picture reads as a story in three zones. Left: the world, the true variables in causal order,
one column per topological generation (``networkx.topological_generations``). Middle: the injected
biases, one box each, with dashed arrows from what they read. Right: the data a model is trained
on -- the recorded versions of the variables the biases corrupt (``<name>_observed``) and, when a
representation or selection bias acts, a selection node ("in training data") for who is kept.
Putting every bias in one column, instead of beside its inputs, keeps the world and the data apart,
which is the point the picture makes. networkx is imported here (for the layering) besides
``simsys.graph``: layout is drawing, not structure.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no global state) and
saved by :func:`save_figure`, which makes SVG output byte-for-byte reproducible.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import networkx as nx
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

from simsys.biases import bias_name
from simsys.explain import KEPT, bias_reads, bias_writes, observed_nodes, roles_of
from simsys.graph import build_graph
from simsys.scenario import Scenario

#: Fill and edge colours by kind of element (Okabe-Ito hues, readable in grey and by most
#: colour-blind readers).
STYLE = {
    "group": ("#F3D4E6", "#CC79A7"),
    "target": ("#F9D9C3", "#D55E00"),
    "feature": ("#CFE3F2", "#0072B2"),
    "other": ("#EEEEEE", "#888888"),
    "observed_label": ("#FFFFFF", "#D55E00"),
    "observed_feature": ("#FFFFFF", "#0072B2"),
    "bias": ("#FFE9B8", "#B87800"),
    "kept": ("#FFFFFF", "#333333"),
}
EDGE_STYLE = {  # colour, line style, width
    "cause": ("#555555", "-", 1.1),
    "reads": ("#B87800", "--", 1.2),
    "writes": ("#B87800", "-", 2.0),
    "copy": ("#999999", ":", 1.2),
}
HIGHLIGHT = "#E41A1C"
LEGEND_LABELS = {
    "group": "group attribute",
    "target": "target (the truth)",
    "feature": "feature (model input)",
    "other": "other variable",
    "observed_label": "observed (recorded) label",
    "observed_feature": "feature as recorded",
    "bias": "injected bias",
    "kept": "selection: who is kept",
    "cause": "causes",
    "reads": "bias reads",
    "writes": "bias changes",
    "copy": "recorded from",
}

_NAME_SIZE = 9.0  # points
_ROLE_SIZE = 7.5
_PAD_X, _PAD_Y = 0.10, 0.07  # inches inside a box
_COL_GAP, _ROW_GAP = 0.7, 0.28  # inches between boxes
_MARGIN = 0.25
_LEGEND_H = 0.62
_TITLE_H = 0.35


@dataclass(frozen=True)
class Element:
    """A box of the drawing: a node, an observed variable, a bias, or the selection node."""

    id: str
    name: str
    role: str  # a key of STYLE
    tag: str  # the small second line (roles, bias type)
    column: int


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # a key of EDGE_STYLE


@dataclass
class GraphElements:
    elements: dict[str, Element]
    edges: list[Edge]
    columns: list[list[str]] = field(default_factory=list)


def bias_id(index: int) -> str:
    """The element id of bias ``index``."""
    return f"bias:{index}"


def graph_elements(scenario: Scenario) -> GraphElements:
    """Every box and arrow of the drawing, with its column (before vertical ordering)."""
    spec = scenario.spec
    g = build_graph(scenario.parents)
    generations = [[n for n in spec.nodes if n in gen] for gen in nx.topological_generations(g)]
    elements: dict[str, Element] = {}
    columns: list[list[str]] = []
    for c, gen in enumerate(generations):
        columns.append([])
        for n in gen:
            roles = [r for r in roles_of(scenario, n) if r != "reference"]
            role = next((r for r in ("group", "target", "feature") if r in roles), "other")
            tag = " · ".join("target (truth)" if r == "target" else r for r in roles) or "other"
            elements[n] = Element(n, n, role, tag, c)
            columns[-1].append(n)
    edges = [Edge(p, n, "cause") for n in scenario.order for p in scenario.parents[n]]
    bias_col = len(columns)
    data_col = bias_col + (1 if spec.biases else 0)
    if spec.biases:
        columns.append([])
    columns.append([])
    for i in range(len(spec.biases)):
        bid = bias_id(i)
        elements[bid] = Element(bid, bias_name(scenario, i), "bias", _bias_tag(scenario, i), bias_col)
        columns[bias_col].append(bid)
        edges += [Edge(n, bid, "reads") for n in bias_reads(scenario, i)]
    for obs in observed_nodes(scenario):
        true = obs.removesuffix("_observed")
        is_label = true not in spec.roles.features
        elements[obs] = Element(obs, obs, "observed_label" if is_label else "observed_feature",
                                "observed label" if is_label else "feature as recorded", data_col)
        columns[data_col].append(obs)
    writes = [(i, bias_writes(scenario, i)) for i in range(len(spec.biases))]
    written = {w for _, w in writes}
    # an observed variable no bias changes is a copy of the truth; one a bias changes is already
    # connected to the truth through that bias
    edges += [Edge(obs.removesuffix("_observed"), obs, "copy") for obs in observed_nodes(scenario)
              if obs not in written]
    if any(w == KEPT for _, w in writes):
        elements[KEPT] = Element(KEPT, KEPT, "kept", "who is kept", data_col)
        columns[data_col].append(KEPT)
    edges += [Edge(bias_id(i), w, "writes") for i, w in writes if w in elements]
    return GraphElements(elements, edges, columns)


def _routes(ge: GraphElements) -> tuple[list[list[str]], dict[int, list[str]]]:
    """Columns with a waypoint ("dummy") wherever an arrow crosses a column, and each arrow's route.

    An arrow that skips columns passes through one waypoint per column it crosses (Sugiyama's
    layered drawing), so that it runs between boxes instead of behind them. Arrows from the same
    source and of the same family (the true graph, or a bias's inputs) share waypoints: they
    travel as a bundle and fan out where they leave it.
    """
    col_of = {e: i for i, c in enumerate(ge.columns) for e in c}
    cols = [list(c) for c in ge.columns]
    routes: dict[int, list[str]] = {}
    for k, ed in enumerate(ge.edges):
        a, b = col_of[ed.source], col_of[ed.target]
        family = "bias" if ed.kind in ("reads", "writes") else ed.kind
        route = [ed.source]
        for c in range(a + 1, b):
            d = f"~{ed.source}~{family}~{c}"
            if d not in cols[c]:
                cols[c].append(d)
            route.append(d)
        routes[k] = [*route, ed.target]
    return cols, routes


_TAG_WORDS = {"representation": "under-representation", "selection": "selection", "label": "label flips",
              "measurement": "measurement error", "missingness": "missing values", "proxy_label": "proxy label"}


def _bias_tag(scenario: Scenario, index: int) -> str:
    """``label flips for g=1`` / ``under-representation by skin_tone``: what and whom, in a few words."""
    b = scenario.spec.biases[index]
    sel = getattr(b, "group", None) or {}
    if sel:
        return f"{_TAG_WORDS[b.type]} for " + ", ".join(f"{n}={v}" for n, v in sel.items())
    own = {getattr(b, "node", None), getattr(b, "feature", None), getattr(b, "label", None),
           getattr(b, "target", None) or scenario.spec.roles.target}
    by = [n for n in bias_reads(scenario, index) if n not in own]
    return _TAG_WORDS[b.type] + (f" by {', '.join(by)}" if by else "")


def _order_columns(cols: list[list[str]], routes: dict[int, list[str]], sweeps: int = 6) -> list[list[str]]:
    """Columns ordered top to bottom by the barycentre heuristic (fewer crossing arrows)."""
    cols = [list(c) for c in cols]
    rank = {e: i for c in cols for i, e in enumerate(c)}
    preds: dict[str, set[str]] = {e: set() for c in cols for e in c}
    succs: dict[str, set[str]] = {e: set() for c in cols for e in c}
    for route in routes.values():
        for u, v in itertools.pairwise(route):
            preds[v].add(u)
            succs[u].add(v)

    def centre(c: list[str]) -> dict[str, float]:
        mid = (len(c) - 1) / 2
        return {e: i - mid for i, e in enumerate(c)}

    for _ in range(sweeps):
        for order, nbrs in ((range(1, len(cols)), preds), (range(len(cols) - 2, -1, -1), succs)):
            for ci in order:
                pos = {e: p for c in cols for e, p in centre(c).items()}

                def key(e, pos=pos, nbrs=nbrs):
                    ns = sorted(pos[n] for n in nbrs[e])
                    return (sum(ns) / len(ns) if ns else pos[e], rank[e])

                cols[ci].sort(key=key)
                rank.update({e: i for i, e in enumerate(cols[ci])})
    return cols


def _text_size(text: str, size: float, weight: str = "normal") -> tuple[float, float]:
    """Width and height of one line of text, in inches (the font metrics matplotlib draws with)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(10, 10, 72)  # 72 dpi: one pixel = one point
    w, h, _ = renderer.get_text_width_height_descent(text, FontProperties(size=size, weight=weight),
                                                     ismath=False)
    return w / 72.0, max(h, size) / 72.0


_WAYPOINT_H = 0.10  # inches a bundle of arrows takes in a column it crosses
_WAYPOINT_GAP = 0.10


@dataclass
class Layout:
    """Where every box and waypoint goes (inches from the bottom-left corner of the figure)."""

    elements: GraphElements
    columns: list[list[str]]  # element ids and waypoints, top to bottom
    routes: dict[int, list[str]]  # edge index -> the ids it passes through
    centres: dict[str, tuple[float, float]]
    sizes: dict[str, tuple[float, float]]
    column_x: list[tuple[float, float]]  # left and right edge of each column
    width: float
    height: float


def layout(scenario: Scenario) -> Layout:
    """Positions and sizes of the boxes; the figure is sized to fit them (and a legend)."""
    ge = graph_elements(scenario)
    cols, routes = _routes(ge)
    cols = _order_columns(cols, routes)
    sizes = {}
    for e in ge.elements.values():
        w1, h1 = _text_size(e.name, _NAME_SIZE, "bold")
        w2, h2 = _text_size(e.tag, _ROLE_SIZE)
        extra = 0.1 if e.role == "kept" else 0.0  # room for the double border
        sizes[e.id] = (max(w1, w2) + 2 * _PAD_X + extra, h1 + h2 + 0.05 + 2 * _PAD_Y + extra)
    col_w = [max((sizes[e][0] for e in c if e in sizes), default=0.3) for c in cols]
    for c, w in zip(cols, col_w):
        for e in c:
            if e not in sizes:
                sizes[e] = (w, _WAYPOINT_H)

    def gap(a: str, b: str) -> float:
        return _ROW_GAP if a in ge.elements and b in ge.elements else _WAYPOINT_GAP

    col_h = [sum(sizes[e][1] for e in c) + sum(gap(a, b) for a, b in itertools.pairwise(c)) for c in cols]
    content_w = sum(col_w) + _COL_GAP * (len(cols) - 1)
    content_h = max(col_h, default=1.0)
    # whole half-inches: a PNG is then exactly width x dpi pixels (matplotlib truncates fractions)
    width = math.ceil(max(content_w + 2 * _MARGIN, 8.0) * 2) / 2
    height = math.ceil((content_h + 2 * _MARGIN + _LEGEND_H + _TITLE_H) * 2) / 2
    x = (width - content_w) / 2
    centres, column_x = {}, []
    base = _MARGIN + _LEGEND_H + (height - (content_h + 2 * _MARGIN + _LEGEND_H + _TITLE_H)) / 2
    for c, w, h in zip(cols, col_w, col_h):
        y = base + content_h / 2 + h / 2
        for i, e in enumerate(c):
            hh = sizes[e][1]
            centres[e] = (x + w / 2, y - hh / 2)
            y -= hh + (gap(e, c[i + 1]) if i + 1 < len(c) else 0)
        column_x.append((x, x + w))
        x += w + _COL_GAP
    ge.columns = [[e for e in c if e in ge.elements] for c in cols]
    return Layout(ge, cols, routes, centres, sizes, column_x, width, height)


def _route_path(lay: Layout, route: list[str]) -> Path:
    """A smooth left-to-right path: out of the source's right side, straight through each
    waypoint's column, S-curves in the gaps between columns, into the target's left side."""
    from matplotlib.path import Path as MplPath

    col = {e: i for i, c in enumerate(lay.columns) for e in c}
    pts: list[tuple[float, float]] = []
    src, dst = route[0], route[-1]
    (sx, sy), (sw, _) = lay.centres[src], lay.sizes[src]
    pts += [(sx + sw / 2, sy), (lay.column_x[col[src]][1], sy)]
    for d in route[1:-1]:
        left, right = lay.column_x[col[d]]
        y = lay.centres[d][1]
        pts += [(left, y), (right, y)]
    (tx, ty), (tw, _) = lay.centres[dst], lay.sizes[dst]
    pts += [(lay.column_x[col[dst]][0], ty), (tx - tw / 2, ty)]
    verts, codes = [pts[0]], [MplPath.MOVETO]
    for i in range(1, len(pts)):
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        if i % 2 == 1:  # inside a column: straight
            if x1 - x0 < 1e-6:  # a box as wide as its column: no straight part (and the
                continue  # arrowhead takes its direction from the curve before it)
            verts.append((x1, y1))
            codes.append(MplPath.LINETO)
        else:  # across a gap: a cubic with horizontal tangents at both ends
            dx = (x1 - x0) / 2
            verts += [(x0 + dx, y0), (x1 - dx, y1), (x1, y1)]
            codes += [MplPath.CURVE4] * 3
    return MplPath(verts, codes)


def draw_graph(scenario: Scenario, *, highlight: set[str] | frozenset[str] = frozenset(),
               title: str | None = None) -> Figure:
    """The causal graph as a matplotlib figure.

    Parameters
    ----------
    highlight : set of element ids
        Node names and bias ids (``bias:0``, see :func:`bias_id`) drawn in red, with the rest
        faded: the report uses it to show which bias a slider moves.
    title : str, optional
        Default: ``<scenario>: causal graph and injected biases``.
    """
    lay = layout(scenario)
    ge = lay.elements
    fig = Figure(figsize=(lay.width, lay.height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(0, lay.height)
    ax.set_axis_off()
    fade = 0.3 if highlight else 1.0
    for e in ge.elements.values():
        (cx, cy), (w, h) = lay.centres[e.id], lay.sizes[e.id]
        fc, ec = STYLE[e.role]
        on = e.id in highlight
        alpha = 1.0 if on or not highlight else fade
        rounding = 0.2 if e.role == "bias" else 0.08
        ls = "--" if e.role.startswith("observed") else "-"
        ax.add_patch(FancyBboxPatch((cx - w / 2, cy - h / 2), w, h,
                                    boxstyle=f"round,pad=0,rounding_size={rounding}", fc=fc,
                                    ec=HIGHLIGHT if on else ec, lw=3.0 if on else 1.4, ls=ls,
                                    alpha=alpha, zorder=2))
        if e.role == "kept":  # a double border: the usual mark of a selection node
            ax.add_patch(FancyBboxPatch((cx - w / 2 + 0.04, cy - h / 2 + 0.04), w - 0.08, h - 0.08,
                                        boxstyle="square,pad=0", fc="none", ec=ec, lw=0.9,
                                        alpha=alpha, zorder=2))
        ax.text(cx, cy + h / 2 - _PAD_Y, e.name, ha="center", va="top", fontsize=_NAME_SIZE,
                fontweight="bold", alpha=alpha, zorder=3)
        ax.text(cx, cy - h / 2 + _PAD_Y, e.tag, ha="center", va="bottom", fontsize=_ROLE_SIZE,
                color="#333333", style="italic", alpha=alpha, zorder=3)
    for k, ed in enumerate(ge.edges):
        colour, ls, lw = EDGE_STYLE[ed.kind]
        on = bool(highlight) and (ed.source in highlight or ed.target in highlight) and (
            ed.source.startswith("bias:") or ed.target.startswith("bias:") or ed.kind == "cause")
        ax.add_patch(FancyArrowPatch(path=_route_path(lay, lay.routes[k]), arrowstyle="-|>",
                                     mutation_scale=11, color=HIGHLIGHT if on else colour, ls=ls,
                                     lw=lw * (1.6 if on else 1.0), fill=False,
                                     alpha=1.0 if on or not highlight else fade, zorder=1))
    used = {e.role for e in ge.elements.values()}
    handles = [Patch(fc=STYLE[r][0], ec=STYLE[r][1], ls="--" if r.startswith("observed") else "-",
                     label=LEGEND_LABELS[r]) for r in STYLE if r in used]
    kinds = {ed.kind for ed in ge.edges}
    handles += [Line2D([], [], color=EDGE_STYLE[k][0], ls=EDGE_STYLE[k][1], lw=EDGE_STYLE[k][2],
                       label=LEGEND_LABELS[k]) for k in EDGE_STYLE if k in kinds]
    if highlight:
        handles.append(Patch(fc="white", ec=HIGHLIGHT, lw=2.5, label="varied by the sweep"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7.5,
               frameon=False, bbox_to_anchor=(0.5, _MARGIN / lay.height / 2))
    fig.text(0.5, 1 - 0.12 / lay.height, title or f"{scenario.name}: causal graph and injected biases",
             ha="center", va="top", fontsize=11, fontweight="bold")
    return fig


def _dot_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(scenario: Scenario) -> str:
    """The drawing as Graphviz DOT text (``dot -Tsvg graph.dot`` renders it), left to right."""
    ge = graph_elements(scenario)
    lines = [f"digraph {_dot_quote(scenario.name)} {{",
             "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=10, shape=box, style="rounded,filled"];',
             '  edge [fontname="Helvetica", fontsize=8];']
    shapes = {"bias": "octagon", "kept": "box"}
    for e in ge.elements.values():
        fc, ec = STYLE[e.role]
        attrs = {"label": f"{e.name}\n{e.tag}", "fillcolor": fc, "color": ec,
                 "shape": shapes.get(e.role, "box")}
        if e.role.startswith("observed"):
            attrs["style"] = "rounded,filled,dashed"
        if e.role == "kept":
            attrs["peripheries"] = "2"
            attrs["style"] = "filled"
        if e.role == "bias":
            attrs["style"] = "filled"
        lines.append(f"  {_dot_quote(e.id)} [" + ", ".join(f"{k}={_dot_quote(v)}" for k, v in attrs.items()) + "];")
    for c in ge.columns:
        if c:
            lines.append("  { rank=same; " + " ".join(_dot_quote(e) + ";" for e in c) + " }")
    for ed in ge.edges:
        colour, ls, lw = EDGE_STYLE[ed.kind]
        style = {"-": "solid", "--": "dashed", ":": "dotted"}[ls]
        lines.append(f"  {_dot_quote(ed.source)} -> {_dot_quote(ed.target)} "
                     f"[color={_dot_quote(colour)}, style={style}, penwidth={lw:g}, "
                     f"tooltip={_dot_quote(LEGEND_LABELS[ed.kind])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- saving -------------------------------------------------------------------------------------------
#: rcParams under which figures are saved: fixed SVG ids (svg.hashsalt), glyphs as paths so that
#: the picture does not depend on the reader's fonts (each text is kept as a comment beside it).
SAVE_RC = {"svg.hashsalt": "simsys", "svg.fonttype": "path"}
FORMATS = ("svg", "png", "pdf", "dot")


def save_figure(fig: Figure, target, fmt: str, *, dpi: float = 150) -> None:
    """Save reproducibly: no dates in the file, fixed ids; ``bbox_inches`` untouched so that a PNG
    is exactly figsize x dpi pixels."""
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}.get(fmt, {})
    with matplotlib.rc_context(SAVE_RC):
        fig.savefig(target, format=fmt, dpi=dpi, metadata=metadata)


def figure_bytes(fig: Figure, fmt: str, *, dpi: float = 150) -> bytes:
    buf = io.BytesIO()
    save_figure(fig, buf, fmt, dpi=dpi)
    return buf.getvalue()


def write_graph(scenario: Scenario, path: str | Path, *, highlight: set[str] | frozenset[str] = frozenset()) -> Path:
    """Write the drawing to ``path``; the suffix picks the format (.svg, .png, .pdf or .dot).

    Raises
    ------
    ValueError
        For any other suffix (the CLI checks it first and names the option).
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unknown graph format {path.suffix!r}; allowed: {', '.join('.' + f for f in FORMATS)}")
    if fmt == "dot":
        path.write_text(to_dot(scenario), encoding="utf-8")
    else:
        save_figure(draw_graph(scenario, highlight=highlight), path, fmt)
    return path


__all__ = ["draw_graph", "graph_elements", "layout", "save_figure", "to_dot", "write_graph"]
