"""Tests of the rich displays for Jupyter (``simsys.display``): the graph SVG with ids lit by the
rule of ``draw_graph(highlight=...)``, a scenario's, a cohort's and a run's ``_repr_html_``."""

from __future__ import annotations

import html
import re
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest

import simsys
from simsys import display as D
from simsys.drawing import HIGHLIGHT, draw_graph, graph_elements
from simsys.findings import fmt

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.yaml"
MELANOMA = ROOT / "scenarios" / "melanoma.yaml"


@pytest.fixture(scope="module")
def melanoma():
    return simsys.load_scenario(MELANOMA)


@pytest.fixture(scope="module")
def graph(melanoma):
    return D.graph_svg(melanoma)


def test_every_box_label_and_arrow_of_the_drawing_has_an_id(melanoma, graph):
    ge = graph_elements(melanoma)
    root = ElementTree.fromstring(graph.svg)  # well-formed XML
    ids = {el.get("id") for el in root.iter() if el.get("id", "").startswith("simsys-")}
    assert ids == graph.all_ids
    assert set(graph.element_ids) == set(ge.elements)
    for eid, own in graph.element_ids.items():
        assert len(own) == (4 if ge.elements[eid].role == "kept" else 3)  # box, two labels (+ border)
    assert len(graph.edges) == len(ge.edges)
    # a box's id is on the patch drawn at that element's place: its name is the text beside it
    box = graph.element_ids["melanoma"][0]
    name = re.search(rf'<g id="{box}-t0">\s*<!-- (.*?) -->', graph.svg)
    assert name.group(1) == "melanoma"


def test_lit_ids_follow_draw_graphs_highlight_rule(melanoma, graph):
    """draw_graph(highlight={bias:0}) draws in red exactly the patches lit_ids names."""
    hl = {"bias:0"}
    fig = draw_graph(melanoma, highlight=hl)
    red = [p for p in fig.axes[0].patches if _hex(p.get_edgecolor()) == HIGHLIGHT.lower()]
    lit = D.lit_ids(graph, hl)
    boxes = [i for i in lit if re.fullmatch(r"simsys-el-\d+", i)]
    edges = [i for i in lit if i.startswith("simsys-edge-")]
    assert len(red) == len(boxes) + len(edges)
    assert boxes == [graph.element_ids["bias:0"][0]]
    assert D.lit_ids(graph, set()) == []


def test_light_svg_marks_the_ids_and_the_root(graph):
    ids = D.lit_ids(graph, {"bias:2"})
    out = D.light_svg(graph.svg, ids)
    assert out.startswith('<svg class="has-lit" ')
    assert sorted(re.findall(r'<g id="([^"]+)" class="lit"', out)) == sorted(ids)
    assert D.light_svg(graph.svg, []) == graph.svg


def _hex(rgba) -> str:
    from matplotlib.colors import to_hex

    return to_hex(rgba)


def test_a_scenario_shows_its_graph_roles_and_biases(melanoma):
    html = melanoma._repr_html_()
    assert "<svg" in html and html.count("<svg") == 1
    assert "skin_pigment, age, contrast, asymmetry, diameter, evolution and acral" in html
    assert "missed_melanomas (label bias): a true melanoma = 1 is recorded as 0 (missed): 5% light, " \
           "10% medium, 20% dark." in html
    assert "<script" not in html  # notebooks that distrust scripts still show it whole


def test_a_cohort_summary_equals_a_pandas_twin():
    sc = simsys.load_scenario(TINY)
    train = simsys.sample(sc, 3000)
    twin = simsys.sample(sc, 3000, biased=False)
    s = simsys.cohort_summary(train, sc, twin=twin)
    t = s.table
    for g in (0, 1):
        row, part, drawn = t.loc[f"group={g}"], train[train["group"] == g], twin[twin["group"] == g]
        assert row["patients"] == len(part)
        assert row["true_cases"] == part["disease"].sum()
        assert row["recorded_cases"] == part["disease_observed"].sum()
        assert row["kept"] == pytest.approx(len(part) / len(drawn))
        assert row["marker_recorded_mean"] == pytest.approx(part["marker_observed"].mean())
        assert row["income_missing"] == pytest.approx(part["income_observed"].isna().mean())
    assert t.loc["overall", "patients"] == len(train)
    # the label bias on group 1 shows: fewer recorded than true cases there, none lost in group 0
    assert t.loc["group=1", "recorded_cases"] < t.loc["group=1", "true_cases"]
    assert t.loc["group=0", "recorded_cases"] == t.loc["group=0", "true_cases"]
    html = s._repr_html_()
    r1 = t.loc["group=1"]
    assert f"({int(r1['true_cases']):,})" in html and f"({int(r1['recorded_cases']):,})" in html
    assert "who is kept" not in html  # the twin was given
    assert "Pass <code>twin=</code>" in simsys.cohort_summary(train, sc)._repr_html_()


def test_a_cohort_summary_names_a_missing_column():
    sc = simsys.load_scenario(TINY)
    with pytest.raises(ValueError, match="the cohort has no column 'disease'"):
        simsys.cohort_summary(pd.DataFrame({"x": [1]}), sc)


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    return simsys.run(TINY, output_dir=tmp_path_factory.mktemp("runs"), replicates=2, workers=1)


def test_a_run_result_shows_its_findings_and_figure(tiny_result):
    html_text = tiny_result._repr_html_()
    # every key finding's sentence (as simsys.findings wrote it) and the caused gap of the table
    for f in tiny_result.findings:
        if f.kind not in ("gap", "caused"):
            assert html.escape(f.text) in html_text, f.key
    caused = next(f for f in tiny_result.findings if f.kind == "caused" and f.subject["metric"] == "fnr")
    q = caused.quantities["caused"]
    assert f"{fmt(q.value, 'pp')} [{fmt(q.lo, 'pp')}, {fmt(q.hi, 'pp')}]" in html_text
    assert re.search(r"<img [^>]*src='data:image/png;base64,[A-Za-z0-9+/=]+'", html_text)


def test_a_run_kept_in_memory_shows_its_findings_and_says_where_figures_come_from(tiny_result):
    mem = simsys.runner.RunResult(tiny_result.results, tiny_result.summary, tiny_result.errors, None,
                                  tiny_result.manifest, tiny_result.findings, tiny_result.view)
    html_text = mem._repr_html_()
    assert "false-negative rate (FNR) against the truth" in html_text and "<img" not in html_text
    assert "run with an <code>output_dir</code>" in html_text
    assert np.isfinite(tiny_result.summary["mean"]).any()
