"""Tests of the pictures and the report: ``simsys.report``, ``simsys.drawing``, ``simsys.explain`` and
the ``graph``, ``report`` and ``explain`` commands.

A tiny run (one model, two sweep points, two replicates, a few thousand patients) is made once per
session through ``simsys run``, which writes its figures and report at the end; the tests read that
folder (or a copy, when they change it). Numbers the report prints are checked against means and
Student-t intervals computed here from ``results.parquet``, not from the report's own summary.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from simsys import explain as X
from simsys import report as R
from simsys.biases import bias_name
from simsys.cli import main
from simsys.drawing import graph_elements, layout, to_dot
from simsys.scenario import load_scenario

HERE = Path(__file__).parent
DATA = HERE / "data"
SCENARIOS = HERE.parent / "scenarios"

TINY = """\
name: report_tiny
description: >
  A tiny scenario for the report tests. Group g=1 is kept less often in the training data, and
  its true cases are often labelled negative.
seed: 5
params: {share: 0.35}
nodes:
  g: {kind: bernoulli, p: share, description: the group}
  x1: {kind: normal, mean: "0.5*g", sd: 1}
  x2: {kind: normal, mean: 0, sd: 1}
  y: {kind: bernoulli, logit: "-1.2 + 1.4*x1 - 0.8*x2 + 0.4*g", description: the outcome}
roles: {group: g, target: y, features: [x1, x2], reference_group: {g: 0}}
biases:
  - {name: fewer_g1, type: representation, group: {g: 1}, keep: 0.5}
  - {name: missed_g1, type: label, group: {g: 1}, false_negative_rate: 0.3}
populations: {train: {n: 3000, biased: true}, test: {n: 2000, biased: true}}
experiment:
  models: [{name: logreg, model: logistic_regression}]
  threshold: {kind: sensitivity, target: 0.8}
  sweep: {grid: {"biases[0].keep": [1.0, 0.2]}}
  replicates: 2
  test_n: 2000
  validation_n: 500
"""

_RUNS: dict[str, Path] = {}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def tiny_run(tmp_path_factory) -> Path:
    """The session's tiny run folder, made (with its report) by ``simsys run`` on first use."""
    if "tiny" not in _RUNS:
        base = tmp_path_factory.mktemp("report")
        path = base / "report_tiny.yaml"
        path.write_text(TINY)
        result = invoke("run", path, "--output-dir", base / "out", "--run-id", "r", "--workers", "1")
        assert result.exit_code == 0, result.output
        run_dir = base / "out" / "report_tiny" / "r"
        assert f"report: {run_dir / 'report.html'}" in result.stderr
        _RUNS["tiny"] = run_dir
    return _RUNS["tiny"]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def f3(x: float) -> str:
    s = f"{x:.3f}"
    return "0.000" if s == "-0.000" else s


def mean_iv(results: pd.DataFrame, **where) -> tuple[float, float, float]:
    """Mean over replicates and the Student-t 95% interval, from the raw results table."""
    mask = np.ones(len(results), dtype=bool)
    for col, value in where.items():
        mask &= (results[col] == value).to_numpy()
    v = results.loc[mask].sort_values("replicate")["value"].to_numpy()
    assert len(v) == 2, where
    m, sd = v.mean(), v.std(ddof=1)
    half = stats.t.ppf(0.975, len(v) - 1) * sd / math.sqrt(len(v))
    return m, m - half, m + half


class Page(HTMLParser):
    """Every tag with its attributes, the text of each element with an id or data-key, and the
    JSON of the explorer."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text_of: dict[str, str] = {}
        self._open: list[tuple[str, str]] = []
        self.all_text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        key = a.get("data-key") or a.get("id")
        if tag not in ("img", "input", "br", "meta"):
            self._open.append((tag, key))

    def handle_endtag(self, tag):
        while self._open:
            t, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data):
        self.all_text.append(data)
        for _, key in self._open:
            if key:
                self.text_of[key] = self.text_of.get(key, "") + data


# --- the run's figures ---------------------------------------------------------------------------
def test_a_run_writes_every_figure_as_png_and_svg(run_dir):
    figures = run_dir / "figures"
    for name in R.FIGURES:
        for ext in ("png", "svg"):
            f = figures / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 2000, f
        svg = ElementTree.parse(figures / f"{name}.svg").getroot()  # well-formed XML
        assert svg.tag == "{http://www.w3.org/2000/svg}svg", name
    assert not (figures / "headline_heatmap.png").exists()  # one setting swept: no heatmap
    assert (figures / "graph.dot").read_text().startswith('digraph "report_tiny"')
    # PNGs are exactly figsize x 150 dpi (no tight cropping): sizes documented in docs/report.md
    assert png_size(figures / "headline.png") == (1500, round((2.3 * 5 + 0.7) * 150))
    assert png_size(figures / "groups.png") == (1500, round((1.9 * 5 + 1.1) * 150))
    assert png_size(figures / "roc_calibration.png") == (1500, round((3.4 * 1 + 0.6) * 150))
    assert png_size(figures / "cohort.png") == (1500, round((0.42 * 4 + 3.6) * 150))
    lay = layout(load_scenario(_scenario_file(run_dir)))
    assert png_size(figures / "graph.png") == (round(lay.width * 150), round(lay.height * 150))
    # the ROC figure needed predictions: recomputed for the most-biased point, and cached
    assert (figures / "predictions_point0001_rep000.parquet").is_file()


def _scenario_file(run_dir: Path) -> Path:
    return run_dir.parent.parent.parent / "report_tiny.yaml"


def test_the_most_biased_point_is_the_one_farthest_from_the_clean_twin(run_dir):
    run = R.load_run(run_dir)
    cohort = R.cohorts(run)
    assert cohort.distance[1] > cohort.distance[0] > 0  # keep 0.2 drops more of g=1 than keep 1
    assert R.chosen_points(cohort) == (0, 1)
    # the cohort numbers of the biased set are the first replicate's rows of the results table
    res = run.results
    rows = res[(res["point"] == 1) & (res["replicate"] == 0) & (res["model"] == "data")
               & (res["metric"] == "label_n") & (res["group"] != "overall")]
    assert cohort.biased_n[1].tolist() == rows.sort_values("group")["value"].tolist()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert cohort.clean_n[1].sum() == manifest["train_sizes"]["1/0"][1] == 3000


def test_ties_go_to_the_later_point_for_the_most_biased_and_the_earlier_for_the_least():
    def cohort(d):
        z = np.zeros((len(d), 1))
        return R.Cohorts(z, z, z, z, z, z, z, np.array(d, dtype=float))

    assert R.chosen_points(cohort([0.1, 0.3, 0.3, 0.1])) == (0, 2)
    assert R.chosen_points(cohort([np.nan, np.nan])) == (0, 1)


# --- the report page -------------------------------------------------------------------------------
def test_the_report_is_self_contained_html(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    tags = [t for t, _ in page.tags]
    assert tags[0] == "html" and "body" in tags
    ids = {a.get("id") for _, a in page.tags}
    for section in ("scenario", "findings", "explorer", "figures", "definitions", "provenance"):
        assert section in ids, section
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) >= len(R.FIGURES) + 2 * 3  # the figures, and three frames per sweep point
    for a in imgs:
        assert re.match(r"data:image/(png|svg\+xml);base64,[A-Za-z0-9+/=]+$", a["src"]), a["src"][:40]
    for t, a in page.tags:
        assert t not in ("link", "iframe", "object", "embed"), t
        if t == "script":
            assert "src" not in a
        for name in ("href", "src", "action", "poster"):
            if name in a:
                assert a[name].startswith(("#", "data:")), (t, name, a[name][:40])
    no_data = re.sub(r"data:[^\"']+", "", text)
    assert "http://" not in no_data and "https://" not in no_data
    assert "report_tiny: how the injected biases reach the model" in "".join(page.all_text)
    assert "A tiny scenario for the report tests." in page.text_of["scenario"]


def test_the_findings_print_the_numbers_of_the_results_table(run_dir):
    page = Page((run_dir / "report.html").read_text(encoding="utf-8"))
    findings = " ".join(page.text_of["findings"].split())
    res = pd.read_parquet(run_dir / "results.parquet")
    common = {"model": "logreg", "training": "biased", "reference": "truth", "scope": "amplification"}
    for d in ("fnr", "auroc"):
        a, _, _ = mean_iv(res, point=0, metric=f"{d}_difference.d_model", **common)
        b, lo, hi = mean_iv(res, point=1, metric=f"{d}_difference.d_model", **common)
        c, clo, chi = mean_iv(res, point=1, metric=f"{d}_difference.caused", **common)
        clean, _, _ = mean_iv(res, point=1, model="logreg", training="clean", reference="truth",
                              scope="disparity", metric=f"{d}_difference")
        assert f"from {f3(a)} to {f3(b)} (95% interval {f3(lo)} to {f3(hi)}) for logreg" in findings, d
        assert f"the injected biases caused {f3(c)} ({f3(clo)} to {f3(chi)}) for logreg" in findings, d
        assert f"still had a gap of {f3(clean)} for logreg" in findings, d
    assert findings.count("Lowering the probability that a patient with g = 1 stays in the training "
                          "data (bias fewer_g1) from 1 to 0.2 moved the") == 1
    # who is missed: per-group false-negative rates as percentages
    fnr = {g: mean_iv(res, point=1, model="logreg", training="biased", reference="truth", scope="group",
                      group=g, metric="fnr")[0] for g in ("g=0", "g=1")}
    worst, best = max(fnr, key=fnr.get), min(fnr, key=fnr.get)
    assert (f"logreg missed {fnr[worst]:.1%} of the true y cases among {worst}, against "
            f"{fnr[best]:.1%} among {best}") in findings
    # what an audit with the recorded (biased) test labels would have measured
    obs, _, _ = mean_iv(res, point=1, model="logreg", training="biased", reference="observed",
                        scope="disparity", metric="fnr_difference")
    truth, _, _ = mean_iv(res, point=1, model="logreg", training="biased", reference="truth",
                          scope="disparity", metric="fnr_difference")
    assert f"would have been {f3(obs)} instead of {f3(truth)} for logreg" in findings


def test_the_explorer_holds_every_point_and_its_numbers(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    data = json.loads(re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>',
                                text, re.S).group(1))
    assert data["initial"] == 1
    assert data["axes"] == [{"path": "biases[0].keep", "label": "biases[0].keep", "title": "biases[0].keep",
                             "values": ["1", "0.2"]}]
    assert data["pointOf"] == {"0": 0, "1": 1}
    res = pd.read_parquet(run_dir / "results.parquet")
    for p in (0, 1):
        nums = data["numbers"][p]
        for d in ("fnr", "auroc"):
            for part in ("d_model", "caused"):
                m, _, _ = mean_iv(res, point=p, model="logreg", training="biased", reference="truth",
                                  scope="amplification", metric=f"{d}_difference.{part}")
                assert nums[f"logreg|{d}_difference.{part}"] == f3(m)
        for g in ("g=0", "g=1"):
            m, _, _ = mean_iv(res, point=p, model="logreg", training="biased", reference="truth",
                              scope="group", group=g, metric="fnr")
            assert nums[f"logreg|{g}|fnr"] == f3(m)
        frames = [a for t, a in page.tags if t == "img" and a.get("data-point") == str(p)]
        assert {a["alt"].split(" at ")[0] for a in frames} == {"headline", "groups", "cohort"}
        assert all(("hidden" in a) == (p != 1) for a in frames)
    # without JavaScript the page shows the initial point's numbers
    assert page.text_of["logreg|fnr_difference.d_model"] == data["numbers"][1]["logreg|fnr_difference.d_model"]


def test_simsys_report_rebuilds_the_same_report_byte_for_byte(run_dir, tmp_path):
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    before = {f.relative_to(copy): f.read_bytes() for f in copy.rglob("*") if f.is_file()}
    result = invoke("report", copy)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"report: {copy / 'report.html'}\n"
    after = {f.relative_to(copy): f.read_bytes() for f in copy.rglob("*") if f.is_file()}
    assert after.keys() == before.keys()
    changed = [str(k) for k in after if after[k] != before[k] and k.name != "run.log"]
    assert changed == []
    # without the cached predictions, the cell is recomputed with its seed: the same curves
    (copy / "figures" / "predictions_point0001_rep000.parquet").unlink()
    assert invoke("report", copy).exit_code == 0
    assert (copy / "report.html").read_bytes() == before[Path("report.html")]
    assert (copy / "figures" / "roc_calibration.svg").read_bytes() == before[Path("figures/roc_calibration.svg")]


def test_report_needs_a_finished_run_folder(tmp_path, run_dir):
    result = invoke("report", tmp_path)
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path}: not a run folder (no manifest.json)\n"
    copy = tmp_path / "unfinished"
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["status"] = "running"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("report", copy)
    assert result.exit_code == 1
    assert result.stderr == (f"error: {copy}: the run is not finished (status 'running'); finish it with: "
                             f"simsys run --resume {copy}\n")


def test_two_settings_swept_on_a_grid_give_a_heatmap_and_two_sliders(tmp_path):
    text = TINY.replace('sweep: {grid: {"biases[0].keep": [1.0, 0.2]}}',
                        'sweep: {grid: {"biases[0].keep": [1.0, 0.2], "biases[1].false_negative_rate": [0.0, 0.5]}}')
    text = text.replace("replicates: 2", "replicates: 1")
    path = tmp_path / "report_tiny.yaml"
    path.write_text(text)
    result = invoke("run", path, "--output-dir", tmp_path, "--run-id", "grid", "--workers", "1", "--no-report")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "report_tiny" / "grid"
    assert not (run_dir / "report.html").exists()
    assert invoke("report", run_dir).exit_code == 0
    assert png_size(run_dir / "figures" / "headline_heatmap.png")[0] == 1500
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="explorer-data">(.*?)</script>', html, re.S).group(1))
    assert [a["path"] for a in data["axes"]] == ["biases[0].keep", "biases[1].false_negative_rate"]
    assert data["pointOf"] == {"0,0": 0, "0,1": 1, "1,0": 2, "1,1": 3}
    assert data["initial"] == 3  # fewest of g=1 kept and most of its labels flipped
    assert 'id="slider-1"' in html
    # one replicate: no intervals anywhere, said plainly rather than printed as nan
    assert "nan" not in " ".join(Page(html).text_of["findings"].split()).lower()


# --- the graph -------------------------------------------------------------------------------------
GRAPH_SCENARIOS = [DATA / "tiny.yaml", SCENARIOS / "melanoma.yaml"]


@pytest.mark.parametrize("path", GRAPH_SCENARIOS, ids=lambda p: p.stem)
def test_the_graph_draws_every_node_and_bias_with_its_role(path, tmp_path):
    sc = load_scenario(path)
    for ext in ("dot", "svg", "png"):
        result = invoke("graph", path, "-o", tmp_path / f"g.{ext}")
        assert result.exit_code == 0, result.output
        assert result.stderr == f"wrote {tmp_path / f'g.{ext}'}\n"
    dot = (tmp_path / "g.dot").read_text()
    svg = (tmp_path / "g.svg").read_text()
    labels = dict(re.findall(r'^  "([^"]+)" \[label="([^"]*)"', dot, re.M))
    names = list(sc.spec.nodes) + [bias_name(sc, i) for i in range(len(sc.spec.biases))]
    names += [f"{sc.spec.roles.target}_observed"]
    for name in names:
        assert any(lbl.split("\\n")[0] == name for lbl in labels.values()), name
        assert f"<!-- {name} -->" in svg, name  # matplotlib keeps each text as a comment
    roles = sc.spec.roles
    assert labels[roles.target].endswith("target (truth)")
    for g in sc.groups:
        assert "group" in labels[g]
    for f in roles.features:
        assert "feature" in labels[f]
    assert labels["in training data"] == "in training data\\nwho is kept"
    # every edge joins two drawn elements; every bias reads something and changes something
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)"', dot, re.M)
    assert all(u in labels and v in labels for u, v in edges)
    for i in range(len(sc.spec.biases)):
        assert any(v == f"bias:{i}" for _, v in edges) and any(u == f"bias:{i}" for u, _ in edges)
    for child, parents in sc.parents.items():
        for p in parents:
            assert (p, child) in edges
    assert dot.count("{") == dot.count("}")
    lay = layout(sc)
    assert png_size(tmp_path / "g.png") == (round(lay.width * 150), round(lay.height * 150))
    assert to_dot(sc) == dot  # the same text every time


def test_the_graph_lays_out_left_to_right_in_causal_order():
    sc = load_scenario(SCENARIOS / "melanoma.yaml")
    lay = layout(sc)
    x = {e: lay.centres[e][0] for e in lay.elements.elements}
    for child, parents in sc.parents.items():
        for p in parents:
            assert x[p] < x[child], (p, child)
    biases = [e for e in x if e.startswith("bias:")]
    assert min(x[b] for b in biases) > max(x[n] for n in sc.spec.nodes)
    assert x["in training data"] > max(x[b] for b in biases)


def test_graph_refuses_an_unknown_format(tmp_path):
    result = invoke("graph", DATA / "tiny.yaml", "-o", tmp_path / "g.txt")
    assert result.exit_code == 2
    assert f"{tmp_path / 'g.txt'}: unknown format '.txt'; use a file ending in .svg, .png, .pdf or .dot" \
        in result.stderr


def test_a_highlighted_bias_is_drawn_in_red():
    sc = load_scenario(SCENARIOS / "melanoma.yaml")
    biases, nodes = X.affected_by(sc, "params.keep_dark")
    assert [bias_name(sc, i) for i in biases] == ["under_representation"] and nodes == []
    assert X.affected_by(sc, "biases[2].false_negative_rate") == ([2], [])
    assert X.affected_by(sc, "params.prev_dark") == ([], ["melanoma"])
    assert X.affected_by(sc, "nodes.age.sd") == ([], ["age"])
    from simsys.drawing import HIGHLIGHT, draw_graph

    fig = draw_graph(sc, highlight={"bias:0"})
    red = [p for p in fig.axes[0].patches if matplotlib_colour(p.get_edgecolor()) == HIGHLIGHT.lower()]
    assert len(red) >= 3  # the bias box, and the arrows into and out of it
    assert len(graph_elements(sc).elements) == len(sc.spec.nodes) + len(sc.spec.biases) + 2


def matplotlib_colour(rgba) -> str:
    from matplotlib.colors import to_hex

    return to_hex(rgba)


# --- explain ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", GRAPH_SCENARIOS, ids=lambda p: p.stem)
def test_explain_mentions_every_node_and_bias(path):
    sc = load_scenario(path)
    result = invoke("explain", "--full", path)
    assert result.exit_code == 0, result.output
    text = result.stdout
    for node in sc.spec.nodes:
        assert re.search(rf"^\d+\. {node}\b", text, re.M), node
    for i in range(len(sc.spec.biases)):
        assert re.search(rf"^\d+\. {re.escape(bias_name(sc, i))} \(", text, re.M), i
    for title in ("The variables, in causal order", "Roles", "The injected biases", "Populations"):
        assert title in text
    assert ("The experiment" in text) == (sc.spec.experiment is not None)
    assert "It depends on nothing else in the graph: a root cause." in " ".join(text.split())
    assert max(len(line) for line in text.splitlines()) <= X.WIDTH


def test_explain_says_what_each_bias_does_to_whom():
    sc = load_scenario(DATA / "tiny.yaml")
    text = " ".join(X.explain(sc).split())
    assert "patients with group = 1 are kept with probability 0.5" in text
    assert "among patients with group = 1, a true disease = 1 is recorded as 0 (a missed case) with probability 0.2" in text
    assert "for patients with group = 1, marker is recorded as 1 times the true value, plus -0.3, plus noise with sd 0.1" in text
    assert "for all patients, income is missing with probability 0.1" in text
    assert "only patients with biopsy = 1 (non-zero) enter it" in text


def test_the_new_commands_have_help():
    for name in ("graph", "report", "explain"):
        command = main.commands[name]
        assert command.help, name
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, (name, param.name)
