"""The HTTP side: /metrics, /healthz, the status page and a small JSON API.

Read-only endpoints are open (bind ``listen:`` to loopback or a trusted network);
endpoints that change state need ``Authorization: Bearer <api_token>``. Everything shown
comes from probes and targets, so every string is HTML-escaped on the status page.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from watcher.secret import Secret

__all__ = ["Request", "Response", "WebServer", "json_response"]

log = logging.getLogger("watcher.web")
MAX_BODY = 64 * 1024
# How long a client may leave the server waiting for any one read or write: a client
# that opens a connection and sends nothing (or stops halfway) loses it, and its thread.
REQUEST_TIMEOUT = 10.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: str
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        status, json.dumps(data, indent=2, default=str).encode() + b"\n", "application/json"
    )


def text_response(text: str, status: int = 200) -> Response:
    return Response(status, text.encode())


Handler = Callable[[Request], Response]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    token: bool


class WebServer:
    """A threaded HTTP server with a route table; other parts add their own routes."""

    def __init__(
        self, listen: str, *, api_token: Secret | None, request_timeout: float = REQUEST_TIMEOUT
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.api_token = api_token
        self.request_timeout = request_timeout
        self.routes: list[_Route] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, method: str, pattern: str, handler: Handler, *, token: bool = False) -> None:
        self.routes.append(_Route(method, re.compile(f"^{pattern}$"), handler, token))

    def start(self) -> None:
        web = self

        class _Handler(BaseHTTPRequestHandler):
            server_version = "watcher"
            sys_version = ""
            protocol_version = "HTTP/1.1"
            timeout = web.request_timeout

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("%s %s", self.client_address[0], fmt % args)

            def _serve(self) -> None:
                response = web.dispatch(self)
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Cache-Control", "no-store")
                for key, value in response.headers.items():
                    self.send_header(key, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        self._server = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()
        log.info("listening on http://%s:%d", self.host, self.port)

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def dispatch(self, raw: BaseHTTPRequestHandler) -> Response:
        parts = urlsplit(raw.path)
        refused = _refuse_body(raw.headers)
        if refused is not None:
            # The body was not read: what follows on the connection cannot be trusted.
            raw.close_connection = True
            return refused
        length = int(raw.headers.get("Content-Length") or 0)
        body = raw.rfile.read(length) if length else b""
        request = Request(
            method="GET" if raw.command == "HEAD" else raw.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in raw.headers.items()},
            body=body,
            client=raw.client_address[0],
        )
        allowed = []
        for route in self.routes:
            match = route.pattern.match(request.path)
            if not match:
                continue
            allowed.append(route.method)
            if route.method != request.method:
                continue
            if route.token and not self.api_token:
                return json_response(
                    {"error": "this endpoint is off: set api_token in watcher.yml to enable it"},
                    403,
                )
            if route.token and not self._authorised(request):
                return json_response(
                    {"error": "a valid Authorization: Bearer token is needed"}, 401
                )
            request.params = match.groupdict()
            try:
                return route.handler(request)
            except Exception:
                log.exception("handler for %s %s failed", request.method, request.path)
                return json_response({"error": "internal error"}, 500)
        if allowed:
            return Response(
                405, b"method not allowed\n", headers={"Allow": ", ".join(sorted(set(allowed)))}
            )
        return text_response("not found\n", 404)

    def _authorised(self, request: Request) -> bool:
        if not self.api_token:
            return False
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), self.api_token.reveal().encode())


def _refuse_body(headers: Any) -> Response | None:
    """A 4xx for a body the server will not read, or None if it is fine to read."""
    if headers.get("Transfer-Encoding"):
        return text_response("send the body with a Content-Length, not chunked\n", 411)
    raw = (headers.get("Content-Length") or "0").strip()
    if not (raw.isascii() and raw.isdigit()):
        return text_response("Content-Length must be a number of bytes\n", 400)
    if len(raw) > 9 or int(raw) > MAX_BODY:
        return text_response(f"request body too large (at most {MAX_BODY} bytes)\n", 413)
    return None


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, refresh: int | None = 30) -> Response:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{meta}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2330}}
h1{{font-size:1.3rem}} h2{{font-size:1.1rem;margin-top:1.5rem}}
table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #dde}}
th{{background:#f3f4f8}} .ok{{color:#17803d}} .fail{{color:#b42318;font-weight:600}} .error{{color:#b54708;font-weight:600}}
.P1{{background:#fde2e1}} .P2{{background:#fdecd2}} .muted{{color:#667}} code{{font-size:12px}}
</style></head><body>{body}
<p class="muted">Rendered {escape(datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))} by watcher.</p>
</body></html>"""
    return Response(200, document.encode(), "text/html; charset=utf-8")
