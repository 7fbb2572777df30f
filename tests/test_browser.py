"""The report's explorer in a real browser: headless Chromium (Debian's ``chromium`` package, which
``.ci/run`` installs) opens ``report.html``, runs its JavaScript and dumps the resulting DOM.

The page writes every JavaScript error (and every resource that fails to load) into
``#js-errors`` and marks ``#explorer`` with ``data-ready="1"`` and ``data-point="<P>"`` once it has
drawn a setting, so the dumped DOM says whether the page loaded cleanly and what it shows. A setting
is chosen through the address: ``#point=P`` jumps to sweep point P, and ``#slide=A:I`` moves slider
A to position I and fires its ``input`` event, as a reader dragging it does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from test_report import Page, folder_findings, tiny_run

from simsys.findings import fmt

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)
# Locally a missing Chromium skips these tests; in CI (CI=true, set by the CI runner) .ci/run
# installs it, so a missing browser there is a failure, not a silent skip.
if CHROMIUM is None and os.environ.get("CI", "").lower() == "true":
    raise RuntimeError("CI=true but headless Chromium is not installed (.ci/run should install it)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium); CI installs it")


@pytest.fixture(scope="module")
def page_of(tmp_path_factory):
    run_dir = tiny_run(tmp_path_factory)
    report = run_dir / "report.html"
    profile = tmp_path_factory.mktemp("chromium-profile")

    def load(fragment: str = "") -> tuple[Page, str]:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
               report.as_uri() + fragment]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "<html" in proc.stdout, proc.stderr[-3000:]
        return Page(proc.stdout), proc.stdout

    load.run_dir = run_dir
    return load


def explorer(page: Page) -> dict:
    return next(a for t, a in page.tags if t == "section" and a.get("id") == "explorer")


def shown_frames(page: Page) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t, a in page.tags:
        if t == "img" and "frame" in a.get("class", "").split() and "hidden" not in a:
            out.setdefault(a["alt"].split(" at ")[0], []).append(a["data-point"])
    return out


def expected(run_dir, point: int) -> tuple[dict[str, str], list[str]]:
    """The numbers and sentences the explorer should show at ``point``: the quantities and texts of
    that point's gap and caused findings, built here from the run folder."""
    _, findings = folder_findings(run_dir)
    by_key = {f.key: f for f in findings}
    out = {}
    for d, (vs, ds) in (("fnr", ("pct", "pp")), ("auroc", ("dec", "sdec"))):
        q = by_key[f"gap/{d}/{point}/logreg/biased"].quantities
        c = by_key[f"caused/{d}/{point}/logreg"].quantities
        out[f"logreg|{d}|compared"] = fmt(q["compared"].value, vs)
        out[f"logreg|{d}|reference"] = fmt(q["reference"].value, vs)
        out[f"logreg|{d}|gap"] = fmt(q["gap"].value, ds)
        out[f"logreg|{d}|clean"] = fmt(c["clean_gap"].value, ds)
        out[f"logreg|{d}|caused"] = fmt(c["caused"].value, ds)
        out[f"logreg|{d}|caused_iv"] = f"[{fmt(c['caused'].lo, ds)}, {fmt(c['caused'].hi, ds)}]"
    texts = [by_key[k].text for k in (f"gap/fnr/{point}/logreg/biased", f"caused/fnr/{point}/logreg")]
    return out, texts


def assert_shows(page: Page, run_dir, point: int) -> None:
    root = explorer(page)
    assert root["data-ready"] == "1"
    assert root["data-point"] == str(point)
    errors = next(a for t, a in page.tags if a.get("id") == "js-errors")
    assert "hidden" in errors and page.text_of.get("js-errors", "") == ""
    assert shown_frames(page) == {"headline": [str(point)], "groups": [str(point)], "cohort": [str(point)]}
    assert page.text_of["value-0"] == ["1", "0.2"][point]
    numbers, texts = expected(run_dir, point)
    for key, value in numbers.items():
        assert page.text_of[key] == value, key
    items = page.by_id("explorer-sentences").find_all("li")
    assert [n.find_all(cls="text")[0].text() for n in items] == texts
    assert texts[0].startswith(f"At biases[0].keep = {['1', '0.2'][point]}, logreg (trained on the biased data) "
                               "had a false-negative rate of ")


def test_the_page_loads_without_errors_at_the_most_biased_setting(page_of):
    page, html = page_of()
    assert_shows(page, page_of.run_dir, 1)
    data = json.loads(re.search(r'id="explorer-data">(.*?)</script>', html, re.S).group(1))
    assert data["initial"] == 1


@pytest.mark.parametrize("point", [0, 1])
def test_the_address_moves_the_slider_figures_and_numbers(page_of, point):
    page, _ = page_of(f"#point={point}")
    assert_shows(page, page_of.run_dir, point)


def test_dragging_the_slider_moves_the_figures_and_numbers(page_of):
    page, _ = page_of("#slide=0:0")  # from the initial setting (point 1) to the first position
    assert_shows(page, page_of.run_dir, 0)
    page, _ = page_of("#point=0&slide=0:1")
    assert_shows(page, page_of.run_dir, 1)
