"""Tests of ``simsys explore``'s web app over real HTTP on 127.0.0.1: the page and its files come
from the package (nothing from elsewhere), requests are validated, the server binds to loopback
only, and Ctrl-C stops the command cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import simsys
from simsys.explorer import server as S

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.yaml"


@pytest.fixture(scope="module")
def app_url():
    explorer = S.Explorer(simsys.load_scenario(TINY))
    sock = S.bind(0)
    server = S.make_server(explorer, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield url, sock
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def post(url, body: bytes, headers=None):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_the_server_listens_on_loopback_only(app_url):
    _, sock = app_url
    assert sock.getsockname()[0] == "127.0.0.1"


def test_the_page_uses_only_files_from_the_package(app_url):
    url, _ = app_url
    status, headers, html = get(url)
    assert status == 200
    assert "default-src 'none'" in headers["content-security-policy"]
    refs = [r for r in re.findall(r'(?:src|href)="([^"]+)"', html) if not r.startswith(("#", "data:"))]
    assert sorted(refs) == ["static/explore.css", "static/explore.js"]  # (#...: the SVG's own glyphs)
    # nothing that would fetch from elsewhere (xmlns names are names, not requests)
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', html)
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?(?:https?:)?//", html)
    for ref in refs:
        status, headers, text = get(url + ref)
        assert status == 200 and text
        assert "http://" not in text and "https://" not in text and "@import" not in text
    static = Path(S.__file__).parent / "static"
    assert sorted(p.name for p in static.iterdir()) == ["explore.css", "explore.js"]


def test_a_change_is_answered_with_numbers_sentences_and_the_graph_to_light(app_url):
    url, _ = app_url
    status, body = post(url + "api/state", json.dumps(
        {"settings": {"biases[0].keep": 0.1}, "previous": {}}).encode())
    assert status == 200, body
    assert body["sentences"][0] == ("Lowering the probability that a patient with group = 1 stays in the "
                                    "training data (bias representation_0) from 0.5 to 0.1.")
    assert any(i.startswith("simsys-el-") for i in body["highlight"])
    assert body["settings"]["biases[0].keep"] == 0.1
    assert 'data-key="training|kept|group=1"' in body["panel"]
    kept = body["snapshot"]["training"][1]["kept"]
    assert f'data-key="training|kept|group=1">{kept:,} (' in body["panel"]


@pytest.mark.parametrize("body, status, error", [
    (b'{"settings": {"biases[0].keep": 7}}', 400, "settings.biases[0].keep: expected a number in [0, 1], got 7"),
    (b'{"settings": {"model": "os.system"}}', 400, "settings.model: expected one of "),
    (b'{"settings": {"biases[0].keep": 0.2}, "code": "x"}', 400, "request: expected"),
    (b"not json", 400, "request: not JSON"),
    (b'{"settings": {"x": 1}}', 400, "settings.x: unknown setting; allowed: "),
    (b'{"settings": {}, "pad": "' + b"x" * 70000 + b'"}', 413, "request: larger than 65536 bytes"),
])
def test_bad_requests_get_one_line_errors(app_url, body, status, error):
    url, _ = app_url
    got_status, got = post(url + "api/state", body)
    assert got_status == status
    assert got["error"].startswith(error) and "\n" not in got["error"]


def test_another_host_name_is_refused(app_url):
    url, _ = app_url
    status, _, text = get(url, headers={"Host": "attacker.example"})
    assert status == 400 and "Invalid host header" in text


def test_a_busy_port_is_a_one_line_error():
    sock = S.bind(0)
    port = sock.getsockname()[1]
    try:
        with pytest.raises(simsys.SimsysError) as exc:
            S.bind(port)
        assert str(exc.value).startswith(f"explore: --port: cannot listen on 127.0.0.1:{port} (")
    finally:
        sock.close()


def test_ctrl_c_stops_the_command_cleanly():
    proc = subprocess.Popen([sys.executable, "-m", "simsys", "explore", str(TINY), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.match(r"simsys explore: tiny at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops it\)$", line.strip())
        assert m, line
        status, _, html = get(m.group(1))
        assert status == 200 and "simsys explore: tiny" in html
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == "simsys explore: stopped\n"
    assert "Traceback" not in err and err == ""
