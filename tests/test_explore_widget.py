"""Tests of ``simsys.explore(scenario)`` in a notebook: ipywidgets driving the same engine and
showing the same HTML and lit graph as the web page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import simsys

W = pytest.importorskip("ipywidgets")

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.yaml"


@pytest.fixture(scope="module")
def explorer():
    return simsys.explore(simsys.load_scenario(TINY))


def test_it_is_a_widget_with_a_control_per_setting(explorer):
    assert isinstance(explorer, W.VBox)
    assert set(explorer.controls) == {c.key for c in explorer.engine.controls}
    assert isinstance(explorer.controls["biases[0].keep"], W.FloatSlider)
    assert isinstance(explorer.controls["model"], W.Dropdown)
    assert explorer.controls["biases[0].keep"].value == 0.5


def test_moving_a_slider_shows_the_engines_numbers_and_lights_the_bias(explorer):
    from simsys.display import lit_ids
    from simsys.explorer.engine import describe, highlight
    from simsys.explorer.view import render_panel

    engine = explorer.engine
    before = engine.compute(explorer.snapshot.settings)
    explorer.controls["biases[0].keep"].value = 0.2
    after = engine.compute({**before.settings, "biases[0].keep": 0.2})
    assert explorer.snapshot.settings == after.settings
    want = describe(engine, after, before)
    assert explorer.sentences == want
    assert want[0].startswith("Lowering the probability that a patient with group = 1 stays")
    shown = re.sub(r"Server time \d+ ms( \(cached\))?", "", explorer.panel.value)
    assert shown == re.sub(r"Server time \d+ ms( \(cached\))?", "", render_panel(engine, after, want))
    lit = re.findall(r'<g id="([^"]+)" class="lit"', explorer.graph.value)
    assert sorted(lit) == lit_ids(explorer._graph, highlight(engine, ["biases[0].keep"]))
    assert explorer._graph.element_ids["bias:0"][0] in lit


def test_the_threshold_policy_box_and_a_refused_value(explorer):
    explorer.policy.value = False
    assert explorer.snapshot.settings["threshold"] == explorer.controls["threshold"].value
    explorer.update({"biases[0].keep": 3.0})  # what no slider allows: shown, not raised
    assert "settings.biases[0].keep: expected a number in [0, 1], got 3" in explorer.error.value
    explorer.update({"model": "gradient_boosting"})
    assert explorer.error.value == ""
    assert explorer.controls["model"].value == "gradient_boosting"


def test_without_ipywidgets_the_error_says_what_to_install(monkeypatch):
    from simsys.explorer import widget

    monkeypatch.setattr(widget, "W", None)
    with pytest.raises(simsys.SimsysError) as exc:
        widget.Explorer(TINY)
    assert str(exc.value) == "simsys.explore in a notebook needs ipywidgets: pip install 'simsys[notebook]'"
