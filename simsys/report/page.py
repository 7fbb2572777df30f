"""The report page: figures drawn, findings laid out, one self-contained HTML file written.

This module assembles; it composes no sentence with a number. The page's statements are the
findings' own ``text`` (:mod:`simsys.findings`), its tables are the findings' quantities laid out by
:func:`simsys.render.gap_table` and :func:`simsys.render.methods_table` or formatted here with
:func:`simsys.findings.fmt`, and its fixed prose (captions, definitions) lives in the Jinja2
templates under ``templates/`` (autoescaped), with the CSS and JavaScript under ``static/``.

The page is self-contained (images inlined as data URIs, no network) and deterministic: the same
run folder gives the same bytes.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import matplotlib
from markupsafe import Markup

from simsys import intervals as I
from simsys.drawing import bias_id, draw_graph, figure_bytes, to_dot
from simsys.findings import NAMES, PARITY_TAU, SHORT, SUPPORTED, TOO_FEW, Finding, fmt
from simsys.io import atomic_write
from simsys.render import gap_table, methods_table
from simsys.report import figures as F
from simsys.report.data import RunData, load_run
from simsys.report.predictions import Predictions, cell_predictions

#: Finding kinds listed under "Key findings" (the lede, the per-point gap and caused findings and
#: the methods' findings have places of their own).
KEY_EXCLUDE = frozenset({"lede", "gap", "caused", "method", "fair_only_observed"})
#: What each number of the explorer shows, by the key's last part (see :func:`explorer_numbers`).
EXPLORER_PARTS = ("compared", "reference", "gap", "gap_iv", "clean", "caused", "caused_iv")
#: Figures a build draws only for some runs (a stale copy from an earlier build is removed).
OPTIONAL_FIGURES = ("headline_heatmap", "roc_calibration", "methods")


@dataclass
class Built:
    """What :func:`build` drew: figure name -> (PNG, SVG), explorer frames, predictions used."""

    figures: dict[str, tuple[bytes, bytes]]
    frames: dict[str, list[bytes]]
    graph_frames: dict[str, bytes]
    predictions: Predictions
    own_operating_point: set[str] = field(default_factory=set)


def _png_svg(fig) -> tuple[bytes, bytes]:
    return figure_bytes(fig, "png", dpi=F.DPI), figure_bytes(fig, "svg")


def method_metric(run: RunData) -> str | None:
    f = next((f for f in run.findings if f.kind == "method"), None)
    return f.subject["metric"] if f is not None else None


def build(run: RunData, *, allow_imports: bool = False) -> Built:
    """Draw every figure and explorer frame (nothing is written but the predictions cache)."""
    from simsys.explain import affected_by

    _, hi = run.chosen
    figs: dict[str, tuple[bytes, bytes]] = {}
    figs["graph"] = _png_svg(draw_graph(run.scenario))
    figs["headline"] = _png_svg(F.headline_figure(run))
    heat = F.heatmap_figure(run)
    if heat is not None:
        figs["headline_heatmap"] = _png_svg(heat)
    limits = F.group_limits(run, F.group_metrics(run))
    figs["groups"] = _png_svg(F.groups_figure(run, hi, limits=limits))
    preds = cell_predictions(run, hi, allow_imports=allow_imports)
    if preds.frame is not None:
        figs["roc_calibration"] = _png_svg(F.roc_figure(run, hi, preds))
    figs["cohort"] = _png_svg(F.cohort_figure(run, run.cohorts))
    own = {f.subject["model"] for f in run.findings if f.kind == "method" and f.support.get("own_operating_point")}
    metric = method_metric(run)
    if metric is not None:
        figs["methods"] = _png_svg(F.methods_figure(run, hi, metric, own))
    frames: dict[str, list[bytes]] = {"headline": [], "groups": [], "cohort": []}
    if len(run.points) > 1:
        for p in range(len(run.points)):
            frames["headline"].append(figure_bytes(
                F.headline_figure(run, mark=p, height_per_row=1.9, width=7.0, short=True), "png", dpi=F.FRAME_DPI))
            frames["groups"].append(figure_bytes(F.groups_frame(run, p, limits=limits), "png", dpi=F.FRAME_DPI))
            frames["cohort"].append(figure_bytes(F.cohort_figure(run, run.cohorts, [p], side_by_side=True), "png",
                                                 dpi=F.FRAME_DPI))
    graph_frames = {}
    for path in run.varying:
        biases, nodes = affected_by(run.scenario, path)
        hl = {bias_id(i) for i in biases} | set(nodes)
        graph_frames[path] = figure_bytes(draw_graph(run.scenario, highlight=hl), "png", dpi=F.FRAME_DPI + 18)
    return Built(figs, frames, graph_frames, preds, own)


# --- the explorer's data --------------------------------------------------------------------------------
def _styles(f: Finding) -> tuple[str, str]:
    """(value style, difference style) of a gap finding, as :func:`simsys.render.gap_table` has them."""
    return ("pct", "pp") if f.quantities["compared"].cases is not None else ("dec", "sdec")


def interval_text(est: I.Estimate, style: str) -> str:
    """``[lo, hi]`` formatted with :func:`fmt`, or empty without an interval."""
    return f"[{fmt(est.lo, style)}, {fmt(est.hi, style)}]" if est.has_interval else ""


def explorer_numbers(run: RunData, p: int) -> dict[str, str]:
    """Every number the explorer shows at point ``p``, keyed ``model|metric|part`` (the page's
    ``data-key``), each a quantity of that point's gap or caused finding formatted by ``fmt``."""
    out: dict[str, str] = {}
    for m in run.plain_models:
        for d in run.metrics:
            gap = run.finding(f"gap/{d}/{p}/{m}/biased")
            caused = run.finding(f"caused/{d}/{p}/{m}")
            if gap is None:
                continue
            vs, ds = _styles(gap)
            key = f"{m}|{d}|"
            out[key + "compared"] = fmt(gap.quantities["compared"].value, vs)
            out[key + "reference"] = fmt(gap.quantities["reference"].value, vs)
            if gap.verdict == TOO_FEW:
                out[key + "gap"], out[key + "gap_iv"] = "too few cases", ""
            else:
                out[key + "gap"] = fmt(gap.quantities["gap"].value, ds)
                out[key + "gap_iv"] = interval_text(gap.quantities["gap"], ds)
            if caused is None or caused.verdict == TOO_FEW:
                out[key + "clean"], out[key + "caused"], out[key + "caused_iv"] = "too few cases", "too few cases", ""
            else:
                out[key + "clean"] = fmt(caused.quantities["clean_gap"].value, ds)
                out[key + "caused"] = fmt(caused.quantities["caused"].value, ds)
                out[key + "caused_iv"] = interval_text(caused.quantities["caused"], ds)
    return out


def explorer_sentences(run: RunData, p: int) -> list[dict]:
    """The explorer's sentences at point ``p``: the gap and caused findings of the first headline
    metric, per model (their own text and verdict)."""
    out = []
    for d in run.metrics[:1]:
        for m in run.plain_models:
            for key in (f"gap/{d}/{p}/{m}/biased", f"caused/{d}/{p}/{m}"):
                f = run.finding(key)
                if f is not None:
                    out.append({"key": f.key, "text": f.text, "verdict": f.verdict})
    return out


def slider_axes(run: RunData) -> tuple[list[dict], list[list[int]]]:
    """The explorer's sliders and each point's slider positions: one slider per swept setting when
    the points form a full grid (or one setting varies), else one slider over the points."""
    from simsys.explain import setting_label

    P = len(run.points)
    paths = run.varying
    if not paths or P < 2:
        return [], [[] for _ in range(P)]
    values = {path: list(dict.fromkeys(repr(pt.get(path)) for pt in run.points)) for path in paths}
    combos = {tuple(repr(pt.get(path)) for path in paths) for pt in run.points}
    if len(combos) == P and math.prod(len(v) for v in values.values()) == P:
        axes = []
        for path in paths:
            shown = [fmt(next(pt.get(path) for pt in run.points if repr(pt.get(path)) == v), "setting")
                     for v in values[path]]
            axes.append({"path": path, "label": setting_label(path), "title": path, "values": shown})
        coords = [[values[path].index(repr(pt.get(path))) for path in paths] for pt in run.points]
        return axes, coords
    return ([{"path": paths[0], "label": "sweep setting", "title": ", ".join(paths),
              "values": [run.point_label(p, short=True).replace("\n", ", ") for p in range(P)]}],
            [[p] for p in range(P)])


def explorer_data(run: RunData) -> dict:
    P = len(run.points)
    _, hi = run.chosen
    axes, coords = slider_axes(run)
    return {"initial": hi, "axes": axes, "coords": coords,
            "pointOf": {",".join(str(i) for i in c): p for p, c in enumerate(coords)},
            "labels": [run.point_label(p) for p in range(P)],
            "sentences": [explorer_sentences(run, p) for p in range(P)],
            "numbers": [explorer_numbers(run, p) for p in range(P)]}


# --- the page ---------------------------------------------------------------------------------------------
def _img(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _static(name: str) -> Markup:
    """A file of ``static/`` (package data, not the run folder's: trusted), inlined as is."""
    text = resources.files("simsys.report").joinpath("static", name).read_text(encoding="utf-8")
    return Markup(text.replace("</", "<\\/") if name.endswith(".js") else text)


def _finding_item(f: Finding) -> dict:
    return {"key": f.key, "text": f.text, "verdict": f.verdict, "remedy": f.remedy,
            "tag": "" if f.verdict == SUPPORTED else f.verdict}


def _headline_tables(run: RunData) -> list[dict]:
    out = []
    for d in run.metrics:
        table = gap_table(run.view, run.findings, d)
        if table is None:
            continue
        f = next(f for f in run.findings if f.kind == "gap" and f.subject.get("metric") == d)
        grp, ref = f.subject["groups"]
        header, rows = table
        out.append({"metric": d, "name": NAMES.get(d, d), "short": SHORT.get(d, d), "compared": grp,
                    "reference": ref, "rate": _styles(f)[0] == "pct", "header": header, "rows": rows,
                    "numeric_from": len(header) - 4})
    return out


def _methods(run: RunData, built: Built) -> dict | None:
    table = methods_table(run.findings)
    if table is None:
        return None
    _, header, rows = table
    ms = [f for f in run.findings if f.kind == "method"]
    return {"header": header, "rows": rows, "numeric_from": 1, "setting": ms[0].subject.get("setting", ""),
            "baseline": run.view.baseline, "metric": ms[0].subject["metric"],
            "findings": [_finding_item(f) for f in ms],
            "warnings": [_finding_item(f) for f in run.findings if f.kind == "fair_only_observed"],
            "figure": _img(built.figures["methods"][0]) if "methods" in built.figures else None}


def _provenance(run: RunData, built: Built) -> list[tuple[str, str]]:
    from importlib.metadata import version

    m = run.manifest
    _, hi = run.chosen
    rows = [
        ("scenario", f"{run.scenario.name} (from {m.get('source')})"),
        ("scenario SHA-256", str(m.get("scenario_sha256"))),
        ("root seed", str(m.get("seed"))),
        ("replicate seeds", ", ".join(str(s) for s in run.seeds)),
        ("sweep", "; ".join(f"point {p}: {run.point_label(p)}" for p in range(len(run.points)))),
        ("models", ", ".join(x if isinstance(x, str) else f"{x.get('name', x.get('model'))} ({x.get('model')})"
                             for x in m.get("models", []))),
        ("run folder", run.run_dir.name),
        ("started / finished", f"{m.get('started')} / {m.get('finished')}"
                               + (f" (resumed {m['resumed']})" if m.get("resumed") else "")),
        ("failed cells", str(m.get("errors", 0))),
        ("cell in the ROC and calibration figure",
         f"point {hi} ({run.point_label(hi)}), replicate 0 (the most-biased setting); predictions: "
         f"{built.predictions.how}"),
    ]
    for k, v in sorted((m.get("versions") or {}).items()):
        rows.append((f"version: {k}", str(v)))
    rows.append(("report built with", f"simsys {version('simsys')}, matplotlib {matplotlib.__version__}"))
    rows.append(("rebuild", f"simsys report {run.run_dir.name}  (from the folder that holds it)"))
    return rows


def _explain(run: RunData) -> list[dict]:
    from simsys.explain import sections

    return [{"title": title, "paragraphs": [" ".join(p) for p in paragraphs]}
            for title, paragraphs in sections(run.scenario)[1:]]


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("simsys.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def context(run: RunData, built: Built) -> dict:
    """Everything the template shows."""
    from simsys.explain import affected_by, bias_name

    sc = run.scenario
    _, hi = run.chosen
    lede = next((f for f in run.findings if f.kind == "lede"), None)
    data = explorer_data(run)
    tables = _headline_tables(run)
    graph_frames = []
    for path, png in built.graph_frames.items():
        biases, nodes = affected_by(sc, path)
        what = [f"bias {bias_name(sc, i)}" for i in biases] + nodes
        graph_frames.append({"path": path, "img": _img(png),
                             "alt": f"the causal graph, with {', '.join(what) or 'nothing'} highlighted: moved by {path}"})
    frames = {kind: [{"point": p, "img": _img(png), "alt": f"{kind} at {run.point_label(p)}"}
                     for p, png in enumerate(pngs)] for kind, pngs in built.frames.items()}
    figures = {name: _img(png) for name, (png, _) in built.figures.items()}
    return {
        "name": sc.name,
        "description": " ".join(sc.spec.description.split()) if sc.spec.description else "",
        "run_id": run.run_dir.name,
        "facts": [("settings", str(len(run.points))), ("replicates", str(run.replicates)),
                  ("models", str(len(run.models))), ("seed", str(run.manifest.get("seed"))),
                  ("scenario", str(run.manifest.get("scenario_sha256") or "")[:12])],
        "explain": _explain(run),
        "lede": _finding_item(lede) if lede is not None else None,
        "tables": tables,
        "key_findings": [_finding_item(f) for f in run.findings if f.kind not in KEY_EXCLUDE],
        "detail_findings": [_finding_item(f) for f in run.findings if f.kind in ("gap", "caused")],
        "methods": _methods(run, built),
        "explorer": {"initial": hi, "axes": data["axes"], "coords": data["coords"],
                     "sentences": data["sentences"][hi], "numbers": data["numbers"][hi],
                     "models": run.plain_models, "parts": EXPLORER_PARTS,
                     "metrics": [{"id": d, "short": SHORT.get(d, d), "rate": t["rate"], "compared": t["compared"],
                                  "reference": t["reference"]} for d, t in zip(run.metrics, tables)],
                     "frames": frames, "graph_frames": graph_frames},
        "explorer_data": data,
        "figures": figures,
        "predictions_note": built.predictions.note,
        "has_audit": any(f.kind == "audit" for f in run.findings),
        "test_labels_equal_at_hi": run.test_labels_equal_truth(hi),
        "replicates": run.replicates,
        "constants": {"min_cases": I.MIN_CASES, "level": f"{I.LEVEL:.0%}", "tau": fmt(PARITY_TAU, "ratio"),
                      "tau_inv": fmt(1 / PARITY_TAU, "ratio")},
        "target": sc.spec.roles.target,
        "provenance": _provenance(run, built),
        "css": _static("report.css"),
        "error_js": _static("errors.js"),
        "explorer_js": _static("explorer.js"),
    }


def render(run: RunData, built: Built) -> str:
    """The report page: one self-contained HTML document."""
    return _environment().get_template("report.html.j2").render(context(run, built))


def write_figures(run: RunData, built: Built) -> Path:
    """``figures/<name>.png`` and ``.svg`` for every figure, and ``figures/graph.dot``."""
    out = run.run_dir / "figures"
    out.mkdir(exist_ok=True)
    for name in OPTIONAL_FIGURES:  # drawn by an earlier build, not by this one: stale
        if name not in built.figures:
            for ext in ("png", "svg"):
                (out / f"{name}.{ext}").unlink(missing_ok=True)
    for name, (png, svg) in built.figures.items():
        atomic_write(out / f"{name}.png", lambda t, b=png: Path(t).write_bytes(b))
        atomic_write(out / f"{name}.svg", lambda t, b=svg: Path(t).write_bytes(b))
    atomic_write(out / "graph.dot", lambda t: Path(t).write_text(to_dot(run.scenario), encoding="utf-8"))
    return out


def write_report(run_dir: str | Path, *, allow_imports: bool = False) -> Path:
    """Rebuild ``figures/`` and ``report.html`` of a finished run folder; returns the report's path.

    ``allow_imports`` lets the report fit the run's models again when they are not built-ins
    (``simsys report --allow-import``); see :mod:`simsys.report.predictions`.

    Raises
    ------
    RunError
        If the folder is not a finished run, or something in it is damaged.
    """
    run = load_run(run_dir)
    built = build(run, allow_imports=allow_imports)
    write_figures(run, built)
    page = render(run, built)
    path = run.run_dir / "report.html"
    atomic_write(path, lambda t: Path(t).write_text(page, encoding="utf-8"))
    return path


__all__ = ["Built", "build", "context", "explorer_data", "explorer_numbers", "explorer_sentences",
           "render", "write_figures", "write_report"]
