"""``simsys explore`` in a real browser: headless Chromium driven by Selenium through Debian's
chromium-driver (both installed by ``.ci/run``). The server runs in a thread on a free port of
127.0.0.1; the test opens the page, moves a slider with the keyboard as a reader would, and sees
the numbers, the sentences and the graph's highlight change -- to the engine's own numbers.

Locally a missing Chromium or chromedriver skips these tests; under CI=true it is a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
MELANOMA = ROOT / "scenarios" / "melanoma.yaml"

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)
DRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/lib/chromium/chromedriver",
                           "/usr/bin/chromedriver") if p and Path(p).is_file()), None)
try:
    import selenium  # noqa: F401
    HAVE_SELENIUM = True
except ImportError:  # pragma: no cover
    HAVE_SELENIUM = False
MISSING = [what for what, ok in (("chromium", CHROMIUM), ("chromium-driver", DRIVER), ("selenium", HAVE_SELENIUM))
           if not ok]
if MISSING and os.environ.get("CI", "").lower() == "true":
    raise RuntimeError(f"CI=true but {', '.join(MISSING)} is missing (.ci/run installs chromium and "
                       "chromium-driver; the test extras bring selenium)")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed "
                                "(apt-get install chromium chromium-driver); CI installs them")


@pytest.fixture(scope="module")
def served():
    import simsys
    from simsys.explorer import server as S

    explorer = S.Explorer(simsys.load_scenario(MELANOMA))
    sock = S.bind(0)
    server = S.make_server(explorer, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/", explorer
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the Debian driver by path: selenium-manager (which would download one) never runs
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=60.0):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            value = condition(driver)
        except (StaleElementReferenceException, NoSuchElementException):
            value = None  # the page re-rendered the element between finding and reading it
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the page")


def cell(driver, key):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-key="{key}"]').text


def lit(driver) -> set[str]:
    return set(driver.execute_script(
        "return Array.from(document.querySelectorAll('#sx-graph svg .lit')).map(e => e.id)"))


def test_moving_a_slider_changes_the_numbers_and_lights_the_bias(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from simsys.display import lit_ids
    from simsys.explorer.engine import counted, describe, highlight, rate

    url, explorer = served
    engine = explorer.engine
    browser.get(url)
    wait_for(browser, lambda d: d.find_element(By.ID, "explorer").get_attribute("data-ready") == "1")
    before = engine.compute({})
    dark = "skin_tone=dark"
    kept = before.training[2]["kept"]
    assert cell(browser, f"training|kept|{dark}").startswith(f"{kept:,} (")
    assert lit(browser) == set()

    slider = browser.find_element(By.CSS_SELECTOR, 'input[data-key="params.keep_dark"]')
    assert slider.get_attribute("value") == "0.3"
    slider.send_keys(Keys.HOME)  # the keyboard: the slider's minimum, 0.03 (input and change events)
    wait_for(browser, lambda d: d.find_element(By.ID, "explorer").get_attribute("data-busy") == "0"
             and d.find_element(By.CSS_SELECTOR, 'input[data-key="params.keep_dark"]').get_attribute("value") == "0.03"
             and "to 0.03" in d.find_element(By.ID, "sx-sentences").text)

    after = engine.compute({"params.keep_dark": 0.03})
    assert cell(browser, f"training|kept|{dark}").startswith(f"{after.training[2]['kept']:,} (")
    assert after.training[2]["kept"] < kept
    cm = after.models["biased"]["truth"][2]
    assert cell(browser, f"biased|truth|fnr|{dark}") == counted(rate(cm, "fnr"))
    sentences = browser.find_element(By.ID, "sx-sentences").text.splitlines()
    assert sentences == describe(engine, after, before)
    assert sentences[0] == "Lowering keep_dark (it sets bias under_representation) from 0.3 to 0.03."
    assert browser.find_element(By.CSS_SELECTOR, 'output[data-for="params.keep_dark"]').text == "0.03"

    # the graph: the under-representation bias and its arrows lit, the rest faded
    want = set(lit_ids(explorer.graph, highlight(engine, ["params.keep_dark"])))
    assert explorer.graph.element_ids["bias:0"][0] in want
    assert lit(browser) == want
    assert "has-lit" in browser.find_element(By.CSS_SELECTOR, "#sx-graph svg").get_attribute("class")
    opacity = browser.execute_script(
        "return getComputedStyle(document.getElementById(arguments[0])).opacity",
        explorer.graph.element_ids["skin_pigment"][0])
    assert float(opacity) == pytest.approx(0.3)

    # a threshold move: the policy box off, the slider on; nothing is lit (no bias moved)
    box = browser.find_element(By.CSS_SELECTOR, '[data-policy-for="threshold"]')
    box.click()
    wait_for(browser, lambda d: "Moving the decision threshold" in d.find_element(By.ID, "sx-sentences").text
             and d.find_element(By.ID, "explorer").get_attribute("data-busy") == "0")
    assert lit(browser) == set()
    assert cell(browser, "biased|threshold") == "0.5"

    # no script error, and every resource the page loaded came from the server itself
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(url) for r in resources), resources
    assert browser.find_element(By.ID, "sx-error").get_attribute("hidden") is not None


def test_a_refused_value_shows_the_servers_one_line_error(served, browser):
    from selenium.webdriver.common.by import By

    url, _ = served
    browser.get(url)
    wait_for(browser, lambda d: d.find_element(By.ID, "explorer").get_attribute("data-ready") == "1")
    # a page that sends what no slider allows (as a tampered page would) gets the error shown
    browser.execute_script("""
        var s = document.querySelector('input[data-key="params.keep_dark"]');
        s.max = '5'; s.value = '4'; s.dispatchEvent(new Event('change'));""")
    wait_for(browser, lambda d: d.find_element(By.ID, "sx-error").text)
    assert browser.find_element(By.ID, "sx-error").text == \
        "settings.params.keep_dark: expected a number in [0.03, 1], got 4"
    # the controls go back to what the page shows
    assert browser.find_element(By.CSS_SELECTOR, 'input[data-key="params.keep_dark"]').get_attribute("value") == "0.3"
