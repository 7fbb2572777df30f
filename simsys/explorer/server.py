"""``simsys explore FILE``: the explorer as a local web app (Starlette on uvicorn).

Why Starlette and uvicorn: a live page needs a few routes (the page, one JSON endpoint, static
files) and a server that stops cleanly on Ctrl-C. Starlette and uvicorn are small pure-Python
packages (with anyio and h11 about 4 MB installed, against Flask's six packages plus a production
server such as waitress), widely used and maintained, and uvicorn shuts down gracefully on
SIGINT. They are ordinary dependencies of simsys for that reason; nothing else imports them.

Safety, since the page's requests are untrusted:

- the server binds to 127.0.0.1 only (never another interface) and accepts only the Host names
  ``127.0.0.1`` and ``localhost`` (a page elsewhere cannot reach it by DNS rebinding);
- every request value is validated by :meth:`simsys.explorer.engine.Engine.check` against the
  bounds of the scenario's controls; the model is a built-in name; the page never sends code, a
  file name or a scenario; request bodies above :data:`MAX_BODY` bytes are refused;
- everything the page uses is served from the package (``simsys/explorer/static``: one script,
  one style sheet; the page uses the system's fonts), and a Content-Security-Policy forbids
  loading anything from elsewhere.

The page (:func:`page`) holds the controls, the graph as SVG with ids (``simsys.display``) and the
results (``simsys.explorer.view``). On each change the script posts the settings and the previous
settings to ``/api/state`` and gets back the results as HTML, the sentences, the graph ids to
light and the snapshot's numbers.
"""

from __future__ import annotations

import json
import socket
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path

from simsys.errors import SimsysError
from simsys.explorer.engine import Engine, describe, highlight
from simsys.explorer.view import esc, render_controls, render_panel

STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024
HOST = "127.0.0.1"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'")
_MISSING = ("simsys explore needs starlette and uvicorn (simsys's own dependencies): "
            "pip install starlette uvicorn")


class Explorer:
    """What the app serves: an engine, the graph SVG with ids, and the page."""

    def __init__(self, scenario, *, graph=None, warm: bool = True):
        from simsys.display import graph_svg

        self.engine = Engine(scenario)
        self.graph = graph if graph is not None else graph_svg(scenario)
        # the scenario's own setting, computed before serving: it warms the kernels and caches
        self.initial = self.engine.compute({}) if warm else None

    def state(self, payload: object) -> dict:
        """The answer to one request ``{"settings": {...}, "previous": {...} | null}``."""
        if not isinstance(payload, dict) or set(payload) - {"settings", "previous"}:
            raise SimsysError("request: expected {\"settings\": {...}, \"previous\": {...} or null}")
        snap = self.engine.compute(payload.get("settings"))
        prev = payload.get("previous")
        before = self.engine.compute(prev) if prev is not None else None
        sentences = describe(self.engine, snap, before)
        moved = [k for k in snap.settings if before is not None and before.settings.get(k) != snap.settings[k]]
        from simsys.display import lit_ids

        lit = lit_ids(self.graph, highlight(self.engine, moved))
        return {"settings": snap.settings, "sentences": sentences, "highlight": lit,
                "panel": render_panel(self.engine, snap, sentences), "snapshot": snap.to_dict(),
                "server_ms": snap.server_ms}


def page(explorer: Explorer) -> str:
    """The whole page (the initial setting rendered in it, so that it shows without a request)."""
    from simsys.display import GRAPH_CSS

    eng = explorer.engine
    snap = explorer.initial or eng.compute({})
    sentences = describe(eng, snap)
    sc = eng.scenario
    desc = " ".join(sc.spec.description.split())
    # JSON inside <script>: no character that could end the element or start markup
    settings = json.dumps(snap.settings).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>simsys explore: {esc(sc.name)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="static/explore.css">
<style>{GRAPH_CSS}</style>
</head><body>
<header><h1>simsys explore: {esc(sc.name)}</h1>
<p class="sx-desc">{esc(desc[:600] + (' ...' if len(desc) > 600 else ''))}</p></header>
<main id="explorer" data-ready="0" data-busy="0">
<aside id="sx-controls">{render_controls(eng, snap.settings)}
<p><button type="button" id="sx-reset">Back to the scenario's settings</button></p></aside>
<section id="sx-results">
<div id="sx-error" class="sx-error" hidden></div>
<div id="sx-graph" class="simsys-graph">{explorer.graph.svg}</div>
<p class="sx-note">In red: the bias and the variables the last moved setting acts on.</p>
<div id="sx-panel">{render_panel(eng, snap, sentences)}</div>
</section></main>
<script id="sx-initial" type="application/json">{settings}</script>
<script src="static/explore.js"></script>
</body></html>
"""


def create_app(explorer: Explorer):
    """The Starlette application: ``/`` (the page), ``/api/state`` (POST), ``/static/...``."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.middleware import Middleware
        from starlette.middleware.trustedhost import TrustedHostMiddleware
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, JSONResponse
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError:
        raise SimsysError(_MISSING) from None

    html_text = page(explorer)

    async def index(request: Request):
        return HTMLResponse(html_text)

    async def state(request: Request):
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return JSONResponse({"error": f"request: larger than {MAX_BODY} bytes"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"request: larger than {MAX_BODY} bytes"}, status_code=413)
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "request: not JSON"}, status_code=400)
        try:
            answer = await run_in_threadpool(explorer.state, payload)
        except SimsysError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(answer)

    class SecurityHeaders:
        """Adds the Content-Security-Policy and no-sniff headers to every response."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            async def send_with_headers(message):
                if message["type"] == "http.response.start":
                    extra = [(b"content-security-policy", CSP.encode()),
                             (b"x-content-type-options", b"nosniff"),
                             (b"cache-control", b"no-store")]
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
                await send(message)

            await self.app(scope, receive, send_with_headers)

    return Starlette(
        routes=[Route("/", index), Route("/api/state", state, methods=["POST"]),
                Mount("/static", app=StaticFiles(directory=STATIC), name="static")],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=[HOST, "localhost"]),
                    Middleware(SecurityHeaders)])


def bind(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port`` 0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise SimsysError(f"explore: --port: cannot listen on {HOST}:{port} ({exc.strerror}); "
                          "choose another port, or 0 for a free one") from None
    return sock


def make_server(explorer: Explorer, sock: socket.socket):
    """A uvicorn server for the app on ``sock`` (run it with ``server.run(sockets=[sock])``)."""
    try:
        import uvicorn
    except ImportError:
        raise SimsysError(_MISSING) from None
    config = uvicorn.Config(create_app(explorer), log_level="warning", lifespan="off",
                            access_log=False, server_header=False)
    return uvicorn.Server(config)


def serve(scenario, *, port: int = 0, open_browser: bool = True,
          echo: Callable[[str], None] = print) -> None:
    """Serve the explorer of a scenario until Ctrl-C (then return normally, whenever it comes)."""
    sock = None
    try:
        explorer = Explorer(scenario)
        sock = bind(port)
        url = f"http://{HOST}:{sock.getsockname()[1]}/"
        server = make_server(explorer, sock)
        echo(f"simsys explore: {scenario.name} at {url} (Ctrl-C stops it)")
        if open_browser:
            threading.Timer(0.3, webbrowser.open, args=(url,)).start()
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # before serving, or re-raised by uvicorn once it has shut down
        pass
    finally:
        if sock is not None:
            sock.close()
    echo("simsys explore: stopped")


__all__ = ["Explorer", "bind", "create_app", "make_server", "page", "serve"]
