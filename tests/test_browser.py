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

import pandas as pd
import pytest
from test_report import Page, f3, mean_iv, tiny_run

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


def expected_numbers(run_dir, point: int) -> dict[str, str]:
    res = pd.read_parquet(run_dir / "results.parquet")
    out = {}
    for d in ("fnr", "auroc"):
        for part in ("d_model", "caused"):
            m, _, _ = mean_iv(res, point=point, model="logreg", training="biased", reference="truth",
                              scope="amplification", metric=f"{d}_difference.{part}")
            out[f"logreg|{d}_difference.{part}"] = f3(m)
        m, _, _ = mean_iv(res, point=point, model="logreg", training="clean", reference="truth",
                          scope="disparity", metric=f"{d}_difference")
        out[f"logreg|{d}_difference.clean"] = f3(m)
    for g in ("g=0", "g=1"):
        for k in ("fnr", "auroc"):
            m, _, _ = mean_iv(res, point=point, model="logreg", training="biased", reference="truth",
                              scope="group", group=g, metric=k)
            out[f"logreg|{g}|{k}"] = f3(m)
    return out


def assert_shows(page: Page, run_dir, point: int) -> None:
    root = explorer(page)
    assert root["data-ready"] == "1"
    assert root["data-point"] == str(point)
    errors = next(a for t, a in page.tags if a.get("id") == "js-errors")
    assert "hidden" in errors and page.text_of.get("js-errors", "") == ""
    assert shown_frames(page) == {"headline": [str(point)], "groups": [str(point)], "cohort": [str(point)]}
    assert page.text_of["value-0"] == ["1", "0.2"][point]
    for key, value in expected_numbers(run_dir, point).items():
        assert page.text_of[key] == value, key
    sentence = page.text_of["explorer-sentence"]
    assert sentence.startswith(f"At biases[0].keep = {['1', '0.2'][point]}: the false-negative rate gap is "
                               f"{expected_numbers(run_dir, point)['logreg|fnr_difference.d_model']} for logreg")


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
