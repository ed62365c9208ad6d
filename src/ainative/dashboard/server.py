"""The dashboard's web server: Starlette routes over ``api`` plus the static single-page app.

::

    browser ──GET /, /queues, ...──> index.html + static/app.js (uPlot, no CDN, no build step)
       └──poll every 1.5 s──> GET /api/v1/<resource> ──> api.<resource>() ──> JSON
                                   (auth middleware: only when bound beyond loopback)

Bound to 127.0.0.1 by default. Any other interface needs the Ray cluster's auth token: requests
then carry ``Authorization: Bearer <token>`` or the session cookie the login form sets (an HMAC of
the token, so the token itself is never stored in the browser). Without a token such a bind is
refused before the socket opens.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import logging
import os
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from ainative import errors
from ainative.dashboard import api, schema

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8266
COOKIE = "ainative_dashboard"
STATIC = Path(__file__).with_name("static")
PAGES = ("cluster", "queues", "jobs", "endpoints", "cost")
HISTORY_POINTS = 600
logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cluster_token() -> str | None:
    """The Ray cluster's auth token where Ray looks for it: $RAY_AUTH_TOKEN, the file named by
    $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def check_bind(host: str, token: str | None) -> str | None:
    """The token the server must require (None on loopback); ConfigError for a non-loopback bind
    without one, raised before anything listens."""
    if not isinstance(host, str) or not host:
        raise errors.ConfigError(f"dashboard host must be an interface address, got {host!r}",
                                 field="host", value=host)
    if is_loopback(host):
        return None
    if not token:
        raise errors.ConfigError(
            f"refusing to serve the dashboard on {host!r} without authentication: no Ray cluster token "
            "found ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token). Copy the head node's "
            "~/.ray/auth_token here, or keep the default host 127.0.0.1 and tunnel to it (ssh -L)",
            field="host", value=host)
    return token


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"ainative-dashboard-session", hashlib.sha256).hexdigest()


class History:
    """Endpoint samples kept by the server so that plots show the last minutes on first load."""

    def __init__(self, points: int = HISTORY_POINTS, min_gap_s: float = 0.9) -> None:
        self.points, self.min_gap_s = points, min_gap_s
        self._by_name: dict[str, collections.deque[dict[str, Any]]] = {}
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, rows: list[dict[str, Any]], now: float) -> None:
        with self._lock:
            if now - self._last < self.min_gap_s:
                return
            self._last = now
            for row in rows:
                if "error" in row:
                    continue
                buf = self._by_name.setdefault(row["name"], collections.deque(maxlen=self.points))
                buf.append({"ts": now, **{k: row.get(k) for k in (
                    "qps", "p50_ms", "p99_ms", "replicas", "requests_total", "failed_total",
                    "shed_total", "queue_length")}})

    def get(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._by_name.get(name, ()))


def create_app(token: str | None = None) -> Any:
    """The ASGI app. ``token``: required from every client (bearer or login cookie) when set."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    history = History()

    def reply(fn: Any, *args: Any) -> Response:
        try:
            body = fn(*args)
        except errors.ConfigError as exc:
            return JSONResponse({"available": False, "error": str(exc), "fix": str(exc)}, status_code=400)
        except Exception as exc:  # a read that failed: say so, as data the page can show
            logger.exception("dashboard API %s failed", getattr(fn, "__name__", fn))
            return JSONResponse({"available": False, "error": f"{type(exc).__name__}: {exc}",
                                 "fix": "see the dashboard's log; the cluster may be restarting"},
                                status_code=503)
        return JSONResponse(body)

    def endpoints_with_history(window_s: float) -> dict[str, Any]:
        body = api.endpoints(window_s)
        history.add(body.get("endpoints", []), time.time())
        for row in body.get("endpoints", []):
            row["history"] = history.get(row["name"])
        return body

    async def v1(request: Request) -> Response:
        return JSONResponse(api.index())

    async def cluster(request: Request) -> Response:
        return reply(api.cluster)

    async def queues(request: Request) -> Response:
        return reply(api.queues)

    async def jobs(request: Request) -> Response:
        return reply(api.jobs)

    async def job_events(request: Request) -> Response:
        return reply(api.job_events, request.path_params["name"])

    async def endpoints(request: Request) -> Response:
        return reply(endpoints_with_history, float(request.query_params.get("window_s", 10.0)))

    async def cost(request: Request) -> Response:
        return reply(api.cost, request.query_params.get("since", "30d"))

    async def cost_report(request: Request) -> Response:
        q = request.query_params
        return reply(api.cost_report, q.get("by", "team"), q.get("since"), q.get("until"))

    async def api_schema(request: Request) -> Response:
        return JSONResponse(schema.json_schema())

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(_LOGIN.format(error=""))
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0].strip()
        if token is None or not hmac.compare_digest(given.encode(), token.encode()):
            return HTMLResponse(_LOGIN.format(error="<p class=err>That is not this cluster's token.</p>"),
                                status_code=401)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp

    routes = [Route("/api/v1", v1), Route("/api/v1/cluster", cluster), Route("/api/v1/queues", queues),
              Route("/api/v1/jobs", jobs), Route("/api/v1/jobs/{name}/events", job_events),
              Route("/api/v1/endpoints", endpoints), Route("/api/v1/cost", cost),
              Route("/api/v1/cost/report", cost_report), Route("/api/v1/schema", api_schema),
              Route("/login", login, methods=["GET", "POST"]), Route("/", page),
              *[Route(f"/{p}", page) for p in PAGES],
              Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static")]
    app = Starlette(routes=routes)
    app.add_middleware(_Guard, token=token)
    return app


class _Guard:
    """Pure ASGI middleware: security headers always; the token check when one is required."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token
        self.session = session_value(token) if token else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token and not self._allowed(scope):
            await self._refuse(scope, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [
                    (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", b"default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                 b"img-src 'self' data:; connect-src 'self'")]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _allowed(self, scope: dict[str, Any]) -> bool:
        path = scope.get("path", "")
        if path == "/login" or path.startswith("/static/login"):
            return True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self.token and hmac.compare_digest(
                auth[7:].strip().encode(), self.token.encode()):
            return True
        cookies = {}
        for part in headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            cookies[key] = value
        return bool(self.session) and hmac.compare_digest(
            cookies.get(COOKIE, "").encode(), str(self.session).encode())

    async def _refuse(self, scope: dict[str, Any], send: Any) -> None:
        if scope.get("path", "").startswith("/api/"):
            status, body, ctype = 401, b'{"available": false, "error": "unauthorized", "fix": ' \
                b'"send Authorization: Bearer <the Ray cluster token> or log in at /login"}', \
                b"application/json"
            extra = [(b"www-authenticate", b"Bearer")]
        else:
            status, body, ctype, extra = 303, b"", b"text/plain", [(b"location", b"/login")]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), *extra]})
        await send({"type": "http.response.body", "body": body})


_LOGIN = """<!doctype html><html lang=en><head><meta charset=utf-8><title>ainative dashboard: log in</title>
<link rel=stylesheet href=/static/login.css></head><body><form method=post action=/login>
<h1>ainative</h1><p>This dashboard is served beyond localhost. Paste the Ray cluster's token
(<code>~/.ray/auth_token</code> on the head node).</p>{error}
<input type=password name=token autocomplete=current-password autofocus aria-label=token>
<button type=submit>Log in</button></form></body></html>"""


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
          log_level: str = "warning") -> None:
    """Serve until interrupted. ``token`` defaults to the Ray cluster's (needed off loopback)."""
    import uvicorn

    required = check_bind(host, token if token is not None else cluster_token())
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise errors.ConfigError(f"dashboard port must be 0-65535, got {port!r}", field="port", value=port)
    uvicorn.run(create_app(required), host=host, port=port, log_level=log_level, access_log=False)


def start_in_thread(*, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None,
                    timeout_s: float = 10.0) -> tuple[Any, threading.Thread, str]:
    """Serve from a daemon thread of this process (tests, notebooks): (server, thread, url).
    A ``token`` given here is required even on loopback. Stop with ``stop(server, thread)``."""
    import socket

    import uvicorn

    required = token or check_bind(host, None)
    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(required), host=host, port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="ainative-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise errors.AinativeError(f"dashboard did not start on {host}:{port} within {timeout_s:g} s")
        time.sleep(0.02)
    return server, thread, f"http://{host}:{port}"


def stop(server: Any, thread: threading.Thread, timeout_s: float = 10.0) -> None:
    server.should_exit = True
    thread.join(timeout_s)
