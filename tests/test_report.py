"""Tests of the pictures and the report: ``simsys.report``, ``simsys.drawing``, ``simsys.explain`` and
the ``graph``, ``report`` and ``explain`` commands.

A tiny run (one model, two sweep points, two replicates, a few thousand patients) is made once per
session through ``simsys run``, which writes its figures and report at the end; the tests read that
folder (or a copy, when they change it). What the page says is checked against findings built here,
independently of the report, from the folder's ``results.parquet`` and ``manifest.json`` with
:func:`simsys.findings.build_findings` (and against the ``findings.csv`` the run itself wrote): every
sentence of the findings is a finding's text, every number of the explorer a finding's quantity.
"""

from __future__ import annotations

import json
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

from simsys import explain as X
from simsys import report as R
from simsys.biases import bias_name
from simsys.cli import main
from simsys.drawing import graph_elements, layout, to_dot
from simsys.findings import RunView, build_findings, fmt
from simsys.intervals import LEVEL, MIN_CASES
from simsys.render import gap_table, methods_table
from simsys.scenario import from_dict, load_scenario

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

#: The tiny scenario with fairness methods beside the baseline (one setting, three replicates).
METHODS = TINY.replace(
    "  models: [{name: logreg, model: logistic_regression}]\n",
    "  models:\n"
    "    - {name: logreg, model: logistic_regression}\n"
    "    - {name: reweighing, model: reweighing}\n"
    "    - {name: eo, model: group_thresholds, params: {constraint: equal_opportunity}}\n"
    "  baseline: logreg\n",
).replace('  sweep: {grid: {"biases[0].keep": [1.0, 0.2]}}\n', "").replace("replicates: 2", "replicates: 3")

_RUNS: dict[str, Path] = {}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def make_run(tmp_path_factory, name: str, text: str) -> Path:
    """A run folder made (with its report) by ``simsys run`` once per session."""
    if name not in _RUNS:
        base = tmp_path_factory.mktemp(f"report-{name}")
        path = base / "report_tiny.yaml"
        path.write_text(text)
        result = invoke("run", path, "--output-dir", base / "out", "--run-id", "r", "--workers", "1")
        assert result.exit_code == 0, result.output
        run_dir = base / "out" / "report_tiny" / "r"
        assert f"report: {run_dir / 'report.html'}" in result.stderr
        assert "warning" not in result.stderr, result.stderr
        _RUNS[name] = run_dir
    return _RUNS[name]


def tiny_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory, "tiny", TINY)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="session")
def methods_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory, "methods", METHODS)


def folder_findings(run_dir: Path):
    """The run's view and findings, built here from the folder's files (not by the report)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    scenario = from_dict(manifest["scenario"], source=manifest["source"])
    view = RunView(pd.read_parquet(run_dir / "results.parquet"), scenario, manifest)
    return view, build_findings(view)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


VOID = {"img", "input", "br", "meta", "link", "hr", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]


class Page(HTMLParser):
    """The page as a tree; every tag with its attributes; the text of each element with an id or
    data-key; the explorer's JSON."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self._cur = self.root
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)
        self.close()
        self.text_of = {}
        for n in self.root.iter():
            key = n.attrs.get("data-key") or n.attrs.get("id")
            if key:
                self.text_of[key] = n.text()
        self.all_text = self.root.text()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        node = Node(tag, a, self._cur)
        self._cur.children.append(node)
        if tag not in VOID:
            self._cur = node

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._cur.children.append(Node(tag, dict(attrs), self._cur))

    def handle_endtag(self, tag):
        n = self._cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self._cur = n.parent

    def handle_data(self, data):
        self._cur.children.append(data)

    def by_id(self, ident: str) -> Node:
        return next(n for n in self.root.iter() if n.attrs.get("id") == ident)

    def data(self) -> dict:
        return json.loads(self.by_id("explorer-data").text())


def words(text: str) -> str:
    return " ".join(text.split())


def read_page(run_dir: Path) -> Page:
    return Page((run_dir / "report.html").read_text(encoding="utf-8"))


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
    assert not (figures / "methods.png").exists()  # no fairness methods
    assert (figures / "graph.dot").read_text().startswith('digraph "report_tiny"')
    # PNGs are exactly figsize x 150 dpi (no tight cropping): sizes documented in docs/report.md
    assert png_size(figures / "headline.png") == (1500, round((2.3 * 2 + 0.7) * 150))  # FNR, AUROC
    assert png_size(figures / "groups.png") == (1500, round((1.9 * 5 + 1.1) * 150))
    assert png_size(figures / "roc_calibration.png") == (1500, round((3.4 * 1 + 0.6) * 150))
    assert png_size(figures / "cohort.png") == (1500, round((0.42 * 4 + 3.6) * 150))
    lay = layout(load_scenario(_scenario_file(run_dir)))
    assert png_size(figures / "graph.png") == (round(lay.width * 150), round(lay.height * 150))
    # the ROC figure needed predictions: recomputed for the most-biased point, and cached
    assert (figures / "predictions_point0001_rep000.parquet").is_file()


def _scenario_file(run_dir: Path) -> Path:
    return run_dir.parent.parent.parent / "report_tiny.yaml"


def test_the_cohort_picture_sums_the_recorded_counts_over_the_replicates(run_dir):
    run = R.load_run(run_dir)
    assert run.chosen == (0, 1)  # keep 0.2 drops more of g=1 than keep 1
    res = pd.read_parquet(run_dir / "results.parquet")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for p in (0, 1):
        for training, n, pos in (("biased", run.cohorts.biased_n, run.cohorts.biased_pos),
                                 ("clean", run.cohorts.clean_n, run.cohorts.clean_pos),
                                 ("test", run.cohorts.test_n, run.cohorts.test_pos)):
            for gi, g in enumerate(("g=0", "g=1")):
                rows = res[(res["point"] == p) & (res["model"] == "data") & (res["training"] == training)
                           & (res["scope"] == "counts") & (res["group"] == g)]
                total = rows.groupby("metric")["value"].sum()
                assert n[p, gi] == total[["tp", "fp", "fn", "tn"]].sum()
                assert pos[p, gi] == total["tp"] + total["fn"]  # true cases
        # the training sets' sizes the runner recorded, summed over the two replicates
        sizes = [manifest["train_sizes"][f"{p}/{r}"] for r in (0, 1)]
        assert run.cohorts.biased_n[p].sum() == sum(s[0] for s in sizes)
        assert run.cohorts.clean_n[p].sum() == sum(s[1] for s in sizes) == 2 * 3000
    # the label bias acts on the recorded labels of g=1: fewer recorded than true cases
    assert run.cohorts.biased_labelled[1, 1] < run.cohorts.biased_pos[1, 1]


def test_group_bars_are_the_summary_estimates_with_intervals_inside_zero_to_one(run_dir):
    from simsys.report import figures as F

    run = R.load_run(run_dir)
    summary = pd.read_parquet(run_dir / "summary.parquet")
    fig = F.groups_figure(run, 1)
    ax = next(a for a in fig.get_axes() if a.get_title(loc="left") == "false-negative rate")  # the truth's
    bars = [p for p in ax.patches if p.get_height() != 0]
    rows = summary[(summary["point"] == 1) & (summary["model"] == "logreg") & (summary["training"] == "biased")
                   & (summary["reference"] == "truth") & (summary["scope"] == "group") & (summary["metric"] == "fnr")]
    want = [rows.loc[rows["group"] == g, ["estimate", "lo", "hi", "mean"]].iloc[0] for g in ("g=0", "g=1")]
    assert [b.get_height() for b in bars] == pytest.approx([w["estimate"] for w in want], abs=1e-12)
    assert all(w["lo"] >= 0 and w["hi"] <= 1 for w in want)
    # the pooled estimate, not the mean over replicates, is what is drawn
    assert any(abs(w["estimate"] - w["mean"]) > 1e-9 for w in want)


# --- the report page -------------------------------------------------------------------------------
def test_the_report_is_self_contained_html(run_dir):
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    tags = [t for t, _ in page.tags]
    assert tags[0] == "html" and "body" in tags
    ids = {a.get("id") for _, a in page.tags}
    for section in ("scenario", "findings", "explorer", "figures", "definitions", "provenance"):
        assert section in ids, section
    assert "methods" not in ids  # no fairness methods in this run
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
    assert "report_tiny: how the injected biases reach the model" in page.all_text
    assert "A tiny scenario for the report tests." in page.text_of["scenario"]


def test_every_sentence_of_the_findings_is_a_findings_text(run_dir):
    page = read_page(run_dir)
    view, findings = folder_findings(run_dir)
    section = page.by_id("findings")
    items = section.find_all(cls="finding")
    shown = [n.find_all(cls="text")[0].text() for n in items]
    # every finding but the methods' (none here), each once, in the findings' order
    expected = [f for f in findings if f.kind not in ("method", "fair_only_observed")]
    assert sorted(shown) == sorted(f.text for f in expected)
    assert shown[0] == findings[0].text and findings[0].kind == "lede"
    # the same findings the run itself wrote (built in memory from its own results)
    written = pd.read_csv(run_dir / "findings.csv")["text"].tolist()
    assert [f.text for f in findings] == written
    by_text = {f.text: f for f in findings}
    for n in items:
        f = by_text[n.find_all(cls="text")[0].text()]
        tags = [t.text() for t in n.find_all(cls="verdict")]
        assert tags == ([] if f.verdict == "supported" else [f.verdict]), f.key
        remedy = [r.text() for r in n.find_all(cls="remedy")]
        assert remedy == ([f"What would settle it: {f.remedy}."] if f.remedy else []), f.key
    # the headline tables are the findings' quantities, as simsys.render lays them out
    tables = section.find_all("table")
    for table, metric in zip(tables, ("fnr", "auroc"), strict=True):
        header, rows = gap_table(view, findings, metric)
        cells = [[c.text() for c in tr.find_all() if c.tag in ("td", "th")] for tr in table.find_all("tr")]
        assert cells == [header, *rows]
    # nothing else in the section holds a number about the run: with the finding items and the
    # tables taken out, only the method's constants remain (the interval level, the minimum of cases)
    rest = []

    def walk(node):
        for c in node.children:
            if isinstance(c, str):
                rest.append(c)
            elif c.tag != "table" and "finding" not in c.classes:
                walk(c)

    walk(section)
    rest_text = words(" ".join(rest)).replace(f"{LEVEL:.0%}", "").replace(f" {MIN_CASES} cases", " cases")
    for g in view.groups:  # group labels are names, not numbers
        rest_text = rest_text.replace(g, "<group>")
    assert not re.search(r"\d", rest_text), rest_text


def test_the_explorer_holds_every_point_and_the_numbers_of_its_findings(run_dir):
    page = read_page(run_dir)
    data = page.data()
    _, findings = folder_findings(run_dir)
    by_key = {f.key: f for f in findings}
    assert data["initial"] == 1
    assert data["axes"] == [{"path": "biases[0].keep", "label": "biases[0].keep", "title": "biases[0].keep",
                             "values": ["1", "0.2"]}]
    assert data["pointOf"] == {"0": 0, "1": 1}
    for p in (0, 1):
        nums = data["numbers"][p]
        for d, (vs, ds) in (("fnr", ("pct", "pp")), ("auroc", ("dec", "sdec"))):
            gap, caused = by_key[f"gap/{d}/{p}/logreg/biased"], by_key[f"caused/{d}/{p}/logreg"]
            q, c = gap.quantities, caused.quantities
            assert gap.verdict != "too few cases" and caused.verdict != "too few cases"
            assert nums[f"logreg|{d}|compared"] == fmt(q["compared"].value, vs)
            assert nums[f"logreg|{d}|reference"] == fmt(q["reference"].value, vs)
            assert nums[f"logreg|{d}|gap"] == fmt(q["gap"].value, ds)
            assert nums[f"logreg|{d}|gap_iv"] == f"[{fmt(q['gap'].lo, ds)}, {fmt(q['gap'].hi, ds)}]"
            assert nums[f"logreg|{d}|clean"] == fmt(c["clean_gap"].value, ds)
            assert nums[f"logreg|{d}|caused"] == fmt(c["caused"].value, ds)
            assert nums[f"logreg|{d}|caused_iv"] == f"[{fmt(c['caused'].lo, ds)}, {fmt(c['caused'].hi, ds)}]"
            # each shown number is in the finding's own sentence too
            assert nums[f"logreg|{d}|gap"] in gap.text
        assert len(nums) == 2 * 7  # nothing else
        assert data["sentences"][p] == [
            {"key": f.key, "text": f.text, "verdict": f.verdict}
            for f in (by_key[f"gap/fnr/{p}/logreg/biased"], by_key[f"caused/fnr/{p}/logreg"])]
        frames = [a for t, a in page.tags if t == "img" and a.get("data-point") == str(p)]
        assert {a["alt"].split(" at ")[0] for a in frames} == {"headline", "groups", "cohort"}
        assert all(("hidden" in a) == (p != 1) for a in frames)
    # without JavaScript the page shows the initial point's numbers and sentences
    for key, value in data["numbers"][1].items():
        assert page.text_of[key] == value, key
    shown = [n.find_all(cls="text")[0].text() for n in page.by_id("explorer-sentences").find_all("li")]
    assert shown == [s["text"] for s in data["sentences"][1]]


def test_the_groups_caption_says_what_the_recorded_test_labels_are(run_dir):
    caption = words(read_page(run_dir).by_id("figures").text())
    # the label bias acts on the test population's recorded labels too: the columns can differ
    assert "the recorded test labels differ from the truth for some patients" in caption
    assert "the two columns agree" not in caption and "carries no bias" not in caption
    res = pd.read_parquet(run_dir / "results.parquet")
    missed = res[(res["model"] == "data") & (res["training"] == "test") & (res["scope"] == "counts")
                 & (res["group"] == "g=1") & (res["metric"] == "fn")]["value"].sum()
    assert missed > 0


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


def _damage_manifest(edit):
    def apply(copy: Path) -> None:
        m = json.loads((copy / "manifest.json").read_text())
        edit(m)
        (copy / "manifest.json").write_text(json.dumps(m))
    return apply


def _damage_results(edit):
    def apply(copy: Path) -> None:
        frame = pd.read_parquet(copy / "results.parquet")
        edit(frame).to_parquet(copy / "results.parquet", index=False)
    return apply


DAMAGE = {
    "manifest not JSON": (lambda c: (c / "manifest.json").write_text("{not json"),
                          "{dir}/manifest.json: not valid JSON (Expecting property name enclosed in double "
                          "quotes at line 1, column 2); the run folder is damaged"),
    "manifest a list": (lambda c: (c / "manifest.json").write_text("[1, 2]"),
                        "{dir}/manifest.json: expected a JSON object, got list; the run folder is damaged"),
    "seed as text": (_damage_manifest(lambda m: m["replicate_seeds"].__setitem__(1, "7")),
                     "{dir}/manifest.json: replicate_seeds: got [{seed0}, '7']; expected a non-empty list of "
                     "integers >= 0 (the run folder is damaged)"),
    "cell replicate beyond the seeds": (_damage_manifest(lambda m: m["cells"][0].__setitem__("replicate", 9)),
                                        "{dir}/manifest.json: cells[0].replicate: found the number 9; expected "
                                        "a replicate below 2 (one per seed)"),
    "models not a list": (_damage_manifest(lambda m: m.__setitem__("models", "logreg")),
                          "{dir}/manifest.json: models: got 'logreg'; expected a list of model names or specs "
                          "(the run folder is damaged)"),
    "results not parquet": (lambda c: (c / "results.parquet").write_bytes(b"PAR1 garbage"),
                            "{dir}/results.parquet: cannot be read as a Parquet table (ArrowInvalid); expected "
                            "the table simsys run writes"),
    "values as text": (_damage_results(lambda f: f.assign(value=f["value"].astype(str))),
                       "{dir}/results.parquet: column 'value': found values of type str; expected numbers"),
    "a model name missing": (_damage_results(lambda f: f.assign(model=f["model"].astype(object).where(
        f.index != 3, None))),
        "{dir}/results.parquet: column 'model', row 3: found a missing value; expected text"),
    "a point the manifest lacks": (_damage_results(lambda f: f.assign(point=f["point"] + 5)),
                                   "{dir}/results.parquet: column 'point': found point 5, which the manifest's cells "
                                   "do not have; expected the points of manifest.json"),
    "summary without estimates": (lambda c: pd.read_parquet(c / "summary.parquet").drop(columns="estimate")
                                  .to_parquet(c / "summary.parquet", index=False),
                                  "{dir}/summary.parquet: column 'estimate': missing; expected the table simsys run "
                                  "writes (a run folder made by an older simsys needs a new run)"),
}


@pytest.mark.parametrize("case", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_run_folder_is_one_line_naming_file_key_and_what_was_found(case, run_dir, tmp_path):
    damage, message = DAMAGE[case]
    copy = tmp_path / "damaged"
    shutil.copytree(run_dir, copy)
    seed0 = json.loads((copy / "manifest.json").read_text())["replicate_seeds"][0]
    damage(copy)
    result = invoke("report", copy)
    assert result.exit_code == 1
    assert result.stderr == "error: " + message.format(dir=copy, seed0=seed0) + "\n"


PLUGIN = """\
from pathlib import Path
from sklearn.linear_model import LogisticRegression

Path(__file__).with_name("IMPORTED").write_text("this file ran")


class Plain(LogisticRegression):
    pass
"""


def test_a_run_whose_models_need_imports_runs_no_code_without_allow_import(run_dir, tmp_path):
    copy = tmp_path / "plugin"
    shutil.copytree(run_dir, copy)
    (tmp_path / "plug.py").write_text(PLUGIN)
    spec = {"name": "logreg", "model": f"{tmp_path / 'plug.py'}:Plain"}
    m = json.loads((copy / "manifest.json").read_text())
    m["scenario"]["experiment"]["models"] = [spec]
    m["models"] = [spec]
    m["allow_imports"] = True  # the folder's word is not believed
    (copy / "manifest.json").write_text(json.dumps(m))
    (copy / "figures" / "predictions_point0001_rep000.parquet").unlink()
    (copy / "figures" / "roc_calibration.png").unlink()
    assert R.write_report(copy) == copy / "report.html"
    assert not (tmp_path / "IMPORTED").exists()
    assert not (copy / "figures" / "roc_calibration.png").exists()
    figures = words(read_page(copy).by_id("figures").text())
    assert (f"Not drawn: Drawing these curves would fit the run's models again, and {tmp_path / 'plug.py'}:Plain "
            "is not built into simsys (fitting runs outside code). Rerun the scenario with --save-predictions, "
            "or rebuild the report with simsys report --allow-import if you trust the run folder.") in figures
    # the caller's allow_imports (simsys report --allow-import) lets it fit them
    R.write_report(copy, allow_imports=True)
    assert (tmp_path / "IMPORTED").exists()
    assert (copy / "figures" / "roc_calibration.png").is_file()


def test_the_methods_section_shows_the_methods_findings_table_and_plot(methods_dir):
    page = read_page(methods_dir)
    _, findings = folder_findings(methods_dir)
    section = page.by_id("methods")
    shown = [n.find_all(cls="text")[0].text() for n in section.find_all(cls="finding")]
    expected = [f.text for f in findings if f.kind == "fair_only_observed"] + \
               [f.text for f in findings if f.kind == "method"]
    assert shown == expected and len(shown) >= 2  # the two methods against the baseline
    _, header, rows = methods_table(findings)
    table = section.find_all("table")[0]
    cells = [[c.text() for c in tr.find_all() if c.tag in ("td", "th")] for tr in table.find_all("tr")]
    assert cells == [header, *rows]
    # group_thresholds makes 0/1 predictions: its own operating point, marked
    assert any(r[0] == "eo *" for r in rows)
    assert (methods_dir / "figures" / "methods.png").is_file()
    assert png_size(methods_dir / "figures" / "methods.png") == (round(7.5 * 150), round(4.6 * 150))
    # every sentence with a number in the page's findings and methods sections is a finding's
    texts = {f.text for f in findings}
    for ident in ("findings", "methods"):
        for n in page.by_id(ident).find_all(cls="finding"):
            assert n.find_all(cls="text")[0].text() in texts


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
    page = Page(html)
    data = page.data()
    assert [a["path"] for a in data["axes"]] == ["biases[0].keep", "biases[1].false_negative_rate"]
    assert data["pointOf"] == {"0,0": 0, "0,1": 1, "1,0": 2, "1,1": 3}
    assert data["initial"] == 3  # fewest of g=1 kept and most of its labels flipped
    assert 'id="slider-1"' in html
    # one replicate: no intervals anywhere, said plainly rather than printed as nan
    assert "nan" not in words(page.text_of["findings"]).lower()
    assert all(v != "nan" and "nan" not in v for nums in data["numbers"] for v in nums.values())
    assert np.all([nums["logreg|fnr|gap_iv"] == "" for nums in data["numbers"]])


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
