"""A controllable real HTTP(S) server in a thread, for probe tests.

Responses are set per path at run time (status, body, headers, delay); every request is
recorded. With ``tls=CertPair`` it serves HTTPS with that certificate (see ``certs.py`` for
CA-signed, self-signed and expired ones). ``stop()`` then ``start()`` reuses the same port,
for "site down, then back" tests. Start-up is a few milliseconds.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .base import LOOPBACK, free_port, register_cleanup, unregister_cleanup, wait_for_port
from .certs import CertPair


@dataclass
class Response:
    """What the server answers on a path."""

    status: int = 200
    body: bytes | str = b"OK"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts, slow-site tests)

    def body_bytes(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # including the query string, as sent
    headers: dict[str, str]
    body: bytes
    time: float  # time.time() when it arrived


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart on the same port despite TIME_WAIT
    owner: HTTPTestServer

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that reject our test certificate or hang up are expected in TLS tests;
        # only print real handler bugs.
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers

    def _handle(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner._record(
            RecordedRequest(self.command, self.path, dict(self.headers.items()), body, time.time())
        )
        resp = owner.response_for(self.path)
        if resp.delay:
            time.sleep(resp.delay)
        payload = resp.body_bytes()
        self.send_response(resp.status)
        headers = {"Content-Type": "text/plain; charset=utf-8", **resp.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # requests are recorded; keep pytest output clean


class HTTPTestServer:
    """ThreadingHTTPServer on 127.0.0.1:``port`` with per-path responses and a request log."""

    def __init__(
        self,
        *,
        port: int | None = None,
        tls: CertPair | None = None,
        default: Response | None = None,
    ) -> None:
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.tls = tls
        self.default = default or Response()
        self.requests: list[RecordedRequest] = []
        self._routes: dict[str, Response] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._cleanup_handle: int | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. ``http://127.0.0.1:40123``."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def url_for(self, path: str = "/") -> str:
        return self.url + (path if path.startswith("/") else "/" + path)

    # -- behaviour
    def set_response(
        self,
        path: str,
        status: int = 200,
        body: bytes | str = b"OK",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer requests for ``path`` (exact match; the query string is ignored) like this."""
        with self._lock:
            self._routes[path] = Response(status, body, dict(headers or {}), delay)

    def set_default(
        self,
        status: int = 200,
        body: bytes | str = b"OK",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """The answer for paths without their own response."""
        with self._lock:
            self.default = Response(status, body, dict(headers or {}), delay)

    def response_for(self, path: str) -> Response:
        with self._lock:
            return self._routes.get(path.split("?", 1)[0], self.default)

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- control
    def start(self) -> HTTPTestServer:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.owner = self
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls.cert_path, self.tls.key_path)
            # Handshake lazily in the handler thread, so a client that stalls or rejects the
            # certificate does not block the accept loop.
            server.socket = ctx.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"http-test-{self.port}",
            daemon=True,
        )
        self._thread.start()
        if self._cleanup_handle is None:
            self._cleanup_handle = register_cleanup(self.stop)
        wait_for_port(self.host, self.port, timeout=5)
        return self

    def stop(self) -> None:
        """Stop listening and close the socket (connections are refused until start())."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._cleanup_handle is not None:
            unregister_cleanup(self._cleanup_handle)
            self._cleanup_handle = None

    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> HTTPTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
