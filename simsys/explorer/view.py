"""The explorer's results as HTML: one renderer for the web page and the notebook widget.

The web page inserts this HTML as it comes from the server, and the widget shows it in an
``ipywidgets.HTML``; both therefore show the same tables with the same words. Every number cell
carries a ``data-key`` (``biased|truth|fnr|skin_tone=dark``, ``training|kept|skin_tone=dark``,
``gap|biased|fnr``) so that tests and scripts can read it without parsing the layout.
"""

from __future__ import annotations

import html
import math

from simsys.explorer.engine import MIN_CASES, Control, Engine, Snapshot, counted, pct, rate

CSS_CLASS = "sx-panel"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _td(key: str, text: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<td data-key="{esc(key)}"{c}>{esc(text)}</td>'


def _signed_points(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:+.1f} pts"


def render_sentences(sentences: list[str]) -> str:
    return "".join(f"<p>{esc(s)}</p>" for s in sentences)


def render_panel(engine: Engine, snap: Snapshot, sentences: list[str]) -> str:
    """The results of one snapshot: what changed (sentences), who is in the training data, the
    model against the truth and the recorded labels per group (rates with counts, confusion
    matrices), and the gaps with the part the biases caused."""
    target = snap.target
    out = [f'<div class="{CSS_CLASS}" data-scenario="{esc(snap.scenario)}">',
           f'<div class="sx-sentences" id="sx-sentences">{render_sentences(sentences)}</div>']

    # who is in the training data
    kept_all = sum(t["kept"] for t in snap.training)
    out.append("<h3>Who is in the training data</h3><table class='sx-table'><thead><tr><th>group</th>"
               "<th>drawn</th><th>kept</th><th>share of the training data</th>"
               f"<th>true {esc(target)} cases kept</th><th>recorded as {esc(target)}</th></tr></thead><tbody>")
    for g, t in zip(snap.groups, snap.training):
        share = t["kept"] / kept_all if kept_all else math.nan
        out.append("<tr><th>" + esc(g) + "</th>" + _td(f"training|drawn|{g}", f"{t['drawn']:,}")
                   + _td(f"training|kept|{g}", f"{t['kept']:,} ({pct(t['kept'] / t['drawn']) if t['drawn'] else '-'})")
                   + _td(f"training|share|{g}", pct(share))
                   + _td(f"training|true_cases|{g}", f"{t['true_cases']:,}")
                   + _td(f"training|recorded_cases|{g}", f"{t['recorded_cases']:,}") + "</tr>")
    out.append(f"<tr><th>all</th><td>{sum(t['drawn'] for t in snap.training):,}</td>"
               + _td("training|kept|all", f"{kept_all:,}") + "<td>100%</td>"
               + f"<td>{sum(t['true_cases'] for t in snap.training):,}</td>"
               + f"<td>{sum(t['recorded_cases'] for t in snap.training):,}</td></tr></tbody></table>")

    # the model, per group
    for training, title in (("biased", "The model trained on the biased data"),
                            ("clean", "The same model trained on the clean twin")):
        m = snap.models[training]
        out.append(f"<h3>{esc(title)}, on {sum(t['patients'] for t in snap.test):,} test patients</h3>")
        if m.get("error"):
            out.append(f"<p class='sx-error' data-key='{training}|error'>{esc(m['error'])}</p>")
            continue
        out.append(f"<p class='sx-note'>Trained on {m['n_train']:,} patients ({m['positives']:,} labelled "
                   f"{esc(target)} = 1); threshold <span data-key='{training}|threshold'>{m['threshold']:.3g}</span>.</p>")
        out.append("<table class='sx-table'><thead><tr><th rowspan='2'>group</th><th rowspan='2'>true cases</th>"
                   "<th colspan='2'>missed (false-negative rate)</th><th colspan='2'>false alarms "
                   "(false-positive rate)</th><th rowspan='2'>AUROC</th></tr><tr><th>truth</th>"
                   "<th>recorded labels (an audit)</th><th>truth</th><th>recorded labels</th></tr></thead><tbody>")
        for gi, g in enumerate(snap.groups):
            tr, rc = m["truth"][gi], m["recorded"][gi]
            auroc = m["auroc"][gi]
            cells = [_td(f"{training}|truth|cases|{g}", f"{rate(tr, 'fnr').n:,}")]
            for k in ("fnr", "fpr"):
                few = rate(tr, k).n < MIN_CASES
                cells.append(_td(f"{training}|truth|{k}|{g}", counted(rate(tr, k)), "sx-few" if few else ""))
                cells.append(_td(f"{training}|recorded|{k}|{g}", counted(rate(rc, k))))
            cells.append(_td(f"{training}|auroc|{g}", "-" if not math.isfinite(auroc) else f"{auroc:.3f}"))
            out.append(f"<tr><th>{esc(g)}</th>{''.join(cells)}</tr>")
        out.append("</tbody></table>")

    # gaps
    d = snap.to_dict()
    out.append("<h3>The gap between groups (largest minus smallest) and the part the biases caused</h3>"
               "<table class='sx-table'><thead><tr><th>against the truth</th><th>trained on the biased data</th>"
               "<th>trained on the clean twin</th><th>caused by the biases</th></tr></thead><tbody>")
    for k, name in (("fnr", "missed (false-negative rate)"), ("fpr", "false alarms (false-positive rate)")):
        out.append(f"<tr><th>{esc(name)}</th>" + _td(f"gap|biased|{k}", _signed_points(d['gaps']['biased'][k]))
                   + _td(f"gap|clean|{k}", _signed_points(d["gaps"]["clean"][k]))
                   + _td(f"gap|caused|{k}", _signed_points(d["caused"][k])) + "</tr>")
    out.append("</tbody></table>")

    # confusion matrices of the model trained on the biased data
    m = snap.models["biased"]
    if not m.get("error"):
        out.append("<h3>Confusion matrices of the model trained on the biased data</h3><div class='sx-cms'>")
        for gi, g in enumerate(snap.groups):
            for ref in ("truth", "recorded"):
                cm = m[ref][gi]
                key = f"cm|{ref}|{g}"
                out.append(
                    f"<table class='sx-cm' data-key='{esc(key)}'><caption>{esc(g)}, against the "
                    f"{'truth' if ref == 'truth' else 'recorded labels'}</caption>"
                    "<tr><th></th><th>flagged</th><th>not flagged</th></tr>"
                    f"<tr><th>{esc(target)} = 1</th><td>{cm['tp']:,}</td><td>{cm['fn']:,}</td></tr>"
                    f"<tr><th>{esc(target)} = 0</th><td>{cm['fp']:,}</td><td>{cm['tn']:,}</td></tr></table>")
        out.append("</div>")
    out.append(f"<p class='sx-note'>Rates in <span class='sx-few'>grey</span> rest on fewer than {MIN_CASES} cases. "
               f"Server time {snap.server_ms:.0f} ms{' (cached)' if snap.cached else ''}.</p></div>")
    return "".join(out)


def _fmt(c: Control, v) -> str:
    if c.kind == "integer":
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


SECTIONS = (("sweep", "What the experiment sweeps"), ("bias", "The biases"), ("size", "Patients"),
            ("model", "The model"), ("world", "The world (every other number of the scenario)"))


def render_controls(engine: Engine, settings: dict) -> str:
    """The form of the web page: a slider or a menu per control, grouped by section."""
    out = []
    for section, title in SECTIONS:
        ctls = [c for c in engine.controls if c.section == section]
        if not ctls:
            continue
        tag = "details" if section == "world" else "fieldset"
        head = f"<summary>{esc(title)}</summary>" if tag == "details" else f"<legend>{esc(title)}</legend>"
        out.append(f"<{tag} class='sx-section' data-section='{section}'>{head}")
        for i, c in enumerate(ctls):
            cid = f"ctl-{section}-{i}"
            v = settings[c.key]
            label = f"<label for='{cid}' title='{esc(c.key)}'>{esc(c.label)}</label>"
            help_ = f"<small>{esc(c.help)}</small>" if c.help else ""
            if c.kind == "choice":
                opts = "".join(f"<option value='{esc(o)}'{' selected' if o == v else ''}>{esc(o)}</option>"
                               for o in c.choices)
                field = f"<select id='{cid}' data-key='{esc(c.key)}' data-kind='choice'>{opts}</select>"
                out.append(f"<div class='sx-control'>{label}{field}{help_}</div>")
                continue
            policy = c.kind == "threshold"
            num = 0.5 if v == "policy" else v
            field = (f"<input type='range' id='{cid}' data-key='{esc(c.key)}' data-kind='{c.kind}' "
                     f"min='{c.lo!r}' max='{c.hi!r}' step='{c.step!r}' value='{num!r}'"
                     f"{' disabled' if policy and v == 'policy' else ''}>"
                     f"<output id='{cid}-value' data-for='{esc(c.key)}'>{esc(_fmt(c, v))}</output>")
            if policy:
                field += (f"<label class='sx-policy'><input type='checkbox' id='{cid}-policy' "
                          f"data-policy-for='{esc(c.key)}'{' checked' if v == 'policy' else ''}> the "
                          "scenario's policy</label>")
            out.append(f"<div class='sx-control'>{label}{field}{help_}</div>")
        out.append(f"</{tag}>")
    return "".join(out)


__all__ = ["render_controls", "render_panel", "render_sentences"]
