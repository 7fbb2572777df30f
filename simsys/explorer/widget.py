"""``simsys.explore(scenario)`` in Jupyter: the explorer's controls inline, as ipywidgets.

Why ipywidgets and not an iframe of ``simsys explore``'s web page: a notebook's kernel often runs
on another machine than the browser (JupyterHub, Colab, VS Code remote), where a server the kernel
starts on its own 127.0.0.1 cannot be reached from the page; widgets talk to the kernel through
the notebook's own connection, need no port and no second server, and keep working wherever the
notebook does. The widget drives the same engine (:mod:`simsys.explorer.engine`) and shows the same
HTML (:mod:`simsys.explorer.view`) and the same lit graph (:mod:`simsys.display`) as the web page.

ipywidgets is an optional extra (``pip install 'simsys[notebook]'``); without it
:func:`simsys.explore` raises a one-line error saying so.
"""

from __future__ import annotations

import html
import os
from typing import Any

from simsys.errors import SimsysError
from simsys.explorer.engine import Engine, describe, highlight

_MISSING = "simsys.explore in a notebook needs ipywidgets: pip install 'simsys[notebook]'"

try:
    import ipywidgets as W
except ImportError:  # pragma: no cover - exercised only without the extra
    W = None


def _box_base():
    return W.VBox if W is not None else object


class Explorer(_box_base()):
    """The explorer as an ipywidgets box.

    Attributes
    ----------
    engine : Engine
    controls : dict
        Setting key -> its widget (a slider or a menu; the threshold's "policy" box is
        ``policy``).
    snapshot : Snapshot
        The numbers shown now; ``sentences`` the words about them.
    """

    def __init__(self, scenario: Any, settings: dict | None = None):
        if W is None:
            raise SimsysError(_MISSING)
        from simsys.display import GRAPH_CSS, graph_svg
        from simsys.explorer.view import SECTIONS, render_panel
        from simsys.scenario import Scenario, load_scenario

        if isinstance(scenario, str | os.PathLike):
            scenario = load_scenario(scenario)
        if not isinstance(scenario, Scenario):
            raise TypeError(f"explore: expected a Scenario or a scenario file, got {type(scenario).__name__}")
        self.engine = Engine(scenario)
        self._graph = graph_svg(scenario)
        self._css = f"<style>{GRAPH_CSS}</style>"
        self._render = render_panel
        self.snapshot = self.engine.compute(settings or {})
        self.sentences = describe(self.engine, self.snapshot)
        self.controls: dict[str, Any] = {}
        self.policy = None
        sections = []
        for section, title in SECTIONS:
            rows = [self._widget(c) for c in self.engine.controls if c.section == section]
            if rows:
                box = W.VBox(rows)
                if section == "world":
                    acc = W.Accordion(children=[box])
                    acc.set_title(0, title)
                    acc.selected_index = None
                    sections.append(acc)
                else:
                    sections.append(W.VBox([W.HTML(f"<b>{html.escape(title)}</b>"), box]))
        self.error = W.HTML("")
        self.graph = W.HTML(self._css + f"<div class='simsys-graph'>{self._graph.svg}</div>")
        self.panel = W.HTML(render_panel(self.engine, self.snapshot, self.sentences))
        left = W.VBox(sections, layout=W.Layout(width="360px", flex="0 0 360px"))
        right = W.VBox([self.error, self.graph, self.panel], layout=W.Layout(flex="1 1 auto"))
        super().__init__([W.HBox([left, right])])
        self._updating = False

    def _widget(self, c):
        value = self.snapshot.settings[c.key]
        style = {"description_width": "initial"}
        common = dict(description=c.label, continuous_update=False, style=style,
                      layout=W.Layout(width="340px"))
        if c.kind == "choice":
            w = W.Dropdown(options=list(c.choices), value=value, description=c.label, style=style)
        elif c.kind == "integer":
            w = W.IntSlider(min=int(c.lo), max=int(c.hi), step=int(c.step), value=int(value), **common)
        else:
            w = W.FloatSlider(min=c.lo, max=c.hi, step=c.step, value=0.5 if value == "policy" else value,
                              readout_format=".4g", **common)
        w.observe(self._changed, names="value")
        self.controls[c.key] = w
        if c.kind == "threshold":
            self.policy = W.Checkbox(value=value == "policy", description="the scenario's policy",
                                     indent=False)
            w.disabled = value == "policy"
            self.policy.observe(self._changed, names="value")
            return W.VBox([w, self.policy])
        return w

    def _read(self) -> dict:
        out = {}
        for key, w in self.controls.items():
            out[key] = w.value
            if key == "threshold" and self.policy is not None and self.policy.value:
                out[key] = "policy"
        return out

    def _changed(self, _change=None) -> None:
        if self._updating:
            return
        if self.policy is not None:
            self.controls["threshold"].disabled = self.policy.value
        self.update(self._read())

    def update(self, settings: dict) -> None:
        """Show another setting (validated by the engine; an error is shown, not raised)."""
        from simsys.display import light_svg, lit_ids

        try:
            snap = self.engine.compute({**self.snapshot.settings, **settings})
        except SimsysError as exc:
            self.error.value = f"<p class='sx-error' style='color:#b00'>{html.escape(str(exc))}</p>"
            return
        before = self.snapshot
        self.error.value = ""
        self.sentences = describe(self.engine, snap, before)
        moved = [k for k in snap.settings if before.settings.get(k) != snap.settings[k]]
        self.snapshot = snap
        lit = lit_ids(self._graph, highlight(self.engine, moved))
        self.graph.value = self._css + f"<div class='simsys-graph'>{light_svg(self._graph.svg, lit)}</div>"
        self.panel.value = self._render(self.engine, snap, self.sentences)
        self._updating = True
        try:  # show what was computed (e.g. after a programmatic update)
            for key, w in self.controls.items():
                v = snap.settings[key]
                if key == "threshold":
                    self.policy.value = v == "policy"
                    w.disabled = v == "policy"
                    if v != "policy":
                        w.value = v
                elif w.value != v:
                    w.value = v
        finally:
            self._updating = False

    def __repr__(self) -> str:
        return f"simsys explorer of {self.engine.scenario.name}: " + " ".join(self.sentences)


__all__ = ["Explorer"]
