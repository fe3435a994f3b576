"""The small local web server both pages share: aiohttp, static HTML/JS/CSS, a JSON API, and its guards.

Safety, as Jupyter does it: by default the server binds 127.0.0.1 and answers only requests whose
``Host`` is a loopback name (a page on another site cannot reach it through DNS rebinding); any other
``--host`` gets a random token that every request must carry (``?token=`` in the printed URL, then a
cookie). Writes must be JSON posts from the page's own origin, so another site cannot forge one. Every
response forbids inline scripts (Content-Security-Policy), and the pages put row text into the DOM as
text only (``textContent``): no HTML from the data is ever parsed as markup.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import socket
import threading
import webbrowser
from collections.abc import Awaitable, Callable, Iterator
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from synthgen.errors import ConfigError

__all__ = ["LOOPBACK", "AppServer", "json_body", "make_app", "page_handler", "serve"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")
_COOKIE = "synthgen_token"
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _static(name: str) -> bytes:
    return resources.files("synthgen.review").joinpath("static", name).read_bytes()


def page_handler(name: str) -> Handler:
    """A handler that serves one file of ``static/`` (the pages, their script and style)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        suffix = name[name.rfind(".") :]
        return web.Response(body=_static(name), content_type=_TYPES[suffix], charset="utf-8")

    return handler


async def json_body(request: web.Request) -> dict[str, Any]:
    """The posted JSON object; a 400 naming the problem otherwise."""
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body is not a JSON object")
    return body


def _guard(token: str | None) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None:
            host = (urlsplit(f"//{request.host}").hostname or "").strip("[]")
            if host not in LOOPBACK:
                raise web.HTTPForbidden(text=f"this server answers on 127.0.0.1 only, not {host}")
        else:
            given = request.query.get("token") or request.headers.get("X-Synthgen-Token") or ""
            given = given or request.cookies.get(_COOKIE, "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPForbidden(text="open the URL with its ?token= that synthgen printed")
        if request.method not in ("GET", "HEAD"):
            if request.content_type != "application/json":
                raise web.HTTPUnsupportedMediaType(text="post JSON")
            origin = request.headers.get("Origin")
            if origin and urlsplit(origin).netloc != request.host:
                raise web.HTTPForbidden(text="cross-origin request refused")
        try:
            response = await handler(request)
        except ConfigError as exc:
            response = web.json_response({"error": exc.render()}, status=400)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        if token is not None and request.query.get("token"):
            response.set_cookie(_COOKIE, token, httponly=True, samesite="Strict")
        return response

    return guard


def make_app(token: str | None) -> web.Application:
    """An application with the guards; the caller adds its routes."""
    app = web.Application(middlewares=[_guard(token)], client_max_size=2 * 1024 * 1024)
    app.router.add_get("/static/app.css", page_handler("app.css"))
    app.router.add_get("/static/common.js", page_handler("common.js"))
    app.router.add_get("/favicon.ico", _no_icon)
    return app


async def _no_icon(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


class AppServer:
    """One application served on ``host:port`` (port 0: a free one) in a thread of its own, so a test or a
    notebook can drive it; :func:`serve` runs one until Ctrl-C."""

    def __init__(
        self, app: Callable[[str | None], web.Application], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.host, self.port = host, port
        self.token: str | None = None if host in LOOPBACK else secrets.token_urlsafe(24)
        self.app = app(self.token)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="synthgen-review", daemon=True)
        self._runner = web.AppRunner(self.app, access_log=None)

    def url(self, path: str = "/", host: str | None = None) -> str:
        """The page's URL (with its token off loopback); ``host`` replaces the bound address (a wildcard
        such as 0.0.0.0 is no address to browse to)."""
        host = host or self.host
        host = f"[{host}]" if ":" in host else host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port}{path}{query}"

    def start(self) -> AppServer:
        self._thread.start()

        async def up() -> None:
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self.port).start()

        try:
            asyncio.run_coroutine_threadsafe(up(), self._loop).result(timeout=30)
        except OSError as exc:
            self.stop()
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}", field="port"
            ) from None
        self.port = int(self._runner.addresses[0][1])  # port 0: the free one the OS gave
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    @contextlib.contextmanager
    def running(self) -> Iterator[AppServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def serve(
    app: Callable[[str | None], web.Application],
    *,
    host: str,
    port: int,
    path: str,
    open_browser: bool,
    notify: Callable[[str], None],
) -> None:
    """Serve until Ctrl-C; say the URL (with its token off loopback) and open it when asked."""
    server = AppServer(app, host, port)
    if server.token is not None:
        notify(f"serving on {host}, beyond this machine: the URL carries a token; share it with care")
    with server.running():
        url = server.url(path, "127.0.0.1" if host in _WILDCARDS else None)
        if host in _WILDCARDS:
            notify(f"from other machines: {server.url(path, socket.gethostname())}")
        notify(f"open {url}  (Ctrl-C stops)")
        if open_browser:
            webbrowser.open(url)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
