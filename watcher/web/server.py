"""The HTTP side: /metrics, /healthz, the status page and a small JSON API.

Read-only endpoints are open (bind ``listen:`` to loopback or a trusted network);
endpoints that change state need ``Authorization: Bearer <api_token>``. Everything shown
comes from probes and targets; the status page (``watcher.web.status_page``) escapes it all.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import re
import selectors
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from watcher.core.secret import Secret

__all__ = ["ClientError", "Request", "Response", "WebServer", "json_response"]

log = logging.getLogger("watcher.web")
MAX_BODY = 64 * 1024
# How long a client may leave the server waiting for any one read: a client that stops
# halfway loses its connection, and its thread.
REQUEST_TIMEOUT = 10.0
# How long one whole request (line, headers and body) may take, however steadily it
# trickles in: per-read timeouts alone let a client sending a byte a second keep a thread.
REQUEST_DEADLINE = 15.0
# How long writing one answer may take (a /metrics exposition of tens of MB included).
WRITE_TIMEOUT = 60.0
# Threads that serve requests at once; a connection only takes one once it sends bytes.
MAX_HANDLERS = 64
# Connections that have sent something and wait for a free thread; beyond it, a 503.
MAX_WAITING = 256
# How long a connection that has sent something may wait for a thread before its 503.
WAIT_FOR_HANDLER = 5.0
# Connections held open that have sent nothing yet; the oldest goes when a new one comes.
MAX_IDLE = 1024
# The kernel's queue of connections not yet accepted: a burst of clients fits in it.
BACKLOG = 128
# Request methods are tokens (RFC 9110); anything else is a malformed request line.
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,19}")
# Ids live in SQLite INTEGER columns, which end at 2**63 - 1.
MAX_ID = 2**63 - 1


class ClientError(Exception):
    """A mistake in the request: answered with ``status`` and ``message``, nothing done."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: str
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body counts as ``{}``.

        Raises ClientError (400) for a body that is not JSON or not an object, so a
        handler acts only on what it understood."""
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except RecursionError:
            raise ClientError(400, "the body's JSON is nested too deeply") from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise ClientError(400, f"the body is not JSON ({_first_line(exc)})") from None
        if not isinstance(data, dict):
            raise ClientError(400, "the body must be a JSON object ({...})")
        return data

    def id_param(self, name: str = "id") -> int:
        """A whole-number path parameter that can name a stored row, else ClientError (400)."""
        raw = self.params.get(name) or ""
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > MAX_ID:
            raise ClientError(400, f"{name} must be a whole number from 0 to {MAX_ID}")
        return int(raw)


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
    """A threaded HTTP server with a route table; other parts add their own routes.

    One thread accepts connections and holds those that have sent nothing yet; a
    connection gets one of at most ``MAX_HANDLERS`` handler threads once it sends its
    first bytes, and then has ``REQUEST_DEADLINE`` for each whole request.
    """

    def __init__(
        self,
        listen: str,
        *,
        api_token: Secret | None,
        request_timeout: float | None = None,
        request_deadline: float | None = None,
        max_handlers: int | None = None,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.api_token = api_token
        # Read at construction, not import, so tests can narrow the module's limits.
        self.request_timeout = request_timeout or REQUEST_TIMEOUT
        self.request_deadline = request_deadline or REQUEST_DEADLINE
        self.max_handlers = max_handlers or MAX_HANDLERS
        self.routes: list[_Route] = []
        self._listener: _Listener | None = None

    def route(self, method: str, pattern: str, handler: Handler, *, token: bool = False) -> None:
        self.routes.append(_Route(method, re.compile(f"^{pattern}$"), handler, token))

    def start(self) -> None:
        self._listener = _Listener(self)
        self.port = self._listener.port
        self._listener.start()
        log.info("listening on http://%s:%d", self.host, self.port)

    def stop(self) -> None:
        if self._listener:
            self._listener.stop()
            self._listener = None

    def dispatch(self, raw: BaseHTTPRequestHandler) -> Response:
        parts = urlsplit(raw.path)
        refused = _refuse_body(raw.headers)
        if refused is not None:
            # The body was not read: what follows on the connection cannot be trusted.
            raw.close_connection = True
            return refused
        length = int(raw.headers.get("Content-Length") or 0)
        body = raw.rfile.read(length) if length else b""
        if len(body) < length:
            raise ConnectionResetError("the client closed before its body was complete")
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
            except ClientError as exc:
                return json_response({"error": exc.message}, exc.status)
            except Exception as exc:
                # One line at error; the traceback only for those who asked for debug.
                log.error(
                    "handler for %s %s failed: %s",
                    request.method,
                    _printable(request.path),
                    _first_line(exc),
                )
                log.debug("handler traceback", exc_info=True)
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
    lengths = {value.strip() for value in headers.get_all("Content-Length") or []}
    if len(lengths) > 1:
        return text_response("send one Content-Length\n", 400)
    raw = lengths.pop() if lengths else "0"
    if not (raw.isascii() and raw.isdigit()):
        return text_response("Content-Length must be a number of bytes\n", 400)
    if len(raw) > 9 or int(raw) > MAX_BODY:
        return text_response(f"request body too large (at most {MAX_BODY} bytes)\n", 413)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _printable(text: str, limit: int = 120) -> str:
    """Client-sent text made safe for a one-line log: no control characters, bounded."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


class _Handler(BaseHTTPRequestHandler):
    """Parses requests under the server's deadline and answers through its routes."""

    server: _Listener  # type: ignore[assignment]
    server_version = "watcher"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Errors found before the version is read still get a status line, not a bare body.
    default_request_version = "HTTP/1.0"
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def setup(self) -> None:
        self.connection = self.request
        self.deadline = time.monotonic() + self.server.web.request_deadline
        self.started = False  # has a byte of the current request arrived?
        self.answering = False
        self.ended = False  # has the client closed its side?
        self.rfile = io.BufferedReader(_DeadlineReader(self))
        # write() is all the handler calls, as with the stdlib's own unbuffered writer
        self.wfile = _Writer(self.connection)  # type: ignore[assignment]

    def handle_one_request(self) -> None:
        self.deadline = time.monotonic() + self.server.web.request_deadline
        self.started = self.answering = self.ended = False
        self.command = ""
        self.requestline = ""
        self.request_version = self.default_request_version
        self.close_connection = True
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            return
        if len(self.raw_requestline) > 65536:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        if not self.parse_request():
            return
        if self.ended:
            # The stream ended before the blank line that closes the headers: a cut-off
            # request is not acted on as if it were whole.
            raise ConnectionResetError("the client closed before its headers ended")
        if not _METHOD.fullmatch(self.command):
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request method")
            return
        # Every method goes through the route table, which answers 404 or 405 for those
        # it has no route for (the standard handler's 501 would blame the server).
        response = self.server.web.dispatch(self)
        self.answer(response)

    def answer(self, response: Response) -> None:
        self.answering = True
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

    def handle_expect_100(self) -> bool:
        # A body that will be refused is refused now: inviting it with 100 Continue first
        # would have the client send megabytes only to be told no.
        refused = _refuse_body(self.headers)
        if refused is not None:
            self.close_connection = True
            self.answer(refused)
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            # A client speaking another protocol is the client's mistake: a 4xx.
            code, message = HTTPStatus.BAD_REQUEST, "only HTTP/1.0 and HTTP/1.1 are spoken here"
        self.answering = True
        super().send_error(code, message, None)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], _printable(format % args, 300))

    def describe(self, exc: OSError) -> str:
        """A one-line account of a connection lost to ``exc``; empty for one lost between
        requests (an idle keep-alive connection closing is nothing to report)."""
        line = _printable(self.requestline or "", 120) or "a request"
        client = self.client_address[0]
        if isinstance(exc, TimeoutError):
            if self.answering:
                return f"cut off client {client}: too slow to take the answer to {line}"
            if self.started:
                return f"cut off client {client}: too slow to send {line}"
            return ""
        if self.answering:
            return f"client {client} hung up before the answer to {line} was sent ({type(exc).__name__})"
        if self.started:
            return f"client {client} hung up in the middle of {line} ({type(exc).__name__})"
        return ""


class _DeadlineReader(io.RawIOBase):
    """Socket reads bounded by a per-read timeout and by the request's total deadline."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.sock: socket.socket = handler.connection

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.handler.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than its deadline")
        self.sock.settimeout(min(self.handler.server.web.request_timeout, left))
        count = self.sock.recv_into(buffer)
        if count:
            self.handler.started = True
        else:
            self.handler.ended = True
        return count


class _Writer(io.RawIOBase):
    """Unbuffered writes, each bounded by WRITE_TIMEOUT as a whole (sendall's timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sock.settimeout(WRITE_TIMEOUT)
        self.sock.sendall(data)
        return len(data)


class _Listener:
    """Accepts connections, parks the silent ones, and hands the rest to handler threads."""

    def __init__(self, web: WebServer) -> None:
        self.web = web
        family = socket.AF_INET6 if ":" in web.host else socket.AF_INET
        self.sock = socket.create_server((web.host, web.port), family=family, backlog=BACKLOG)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ)
        # Parked connections in arrival order: socket -> (address, cut-off time).
        self.idle: OrderedDict[socket.socket, tuple[Any, float]] = OrderedDict()
        self.waiting: deque[tuple[socket.socket, Any, float]] = deque()
        self.busy = 0
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(10)
        for conn in [*self.idle, *(c for c, _, _ in self.waiting)]:
            conn.close()
        self.idle.clear()
        self.waiting.clear()
        self.selector.close()
        for sock in (self.sock, self._wake_r, self._wake_w):
            sock.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._turn()
            except Exception as exc:  # the server must keep accepting whatever one turn hit
                log.error("HTTP accept loop: %s", _first_line(exc))
                log.debug("accept loop traceback", exc_info=True)
                self._stopping.wait(0.1)

    def _turn(self) -> None:
        """Accepts what is queued, hands over the connections that spoke, expires the rest."""
        for key, _ in self.selector.select(timeout=0.5):
            if key.fileobj is self.sock:
                self._accept()
            elif key.fileobj is self._wake_r:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            else:
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                self.selector.unregister(conn)
                address, _ = self.idle.pop(conn)
                self._hand_over(conn, address)
        self._expire(time.monotonic())

    def _accept(self) -> None:
        for _ in range(BACKLOG):  # what is queued now; then back to the others
            try:
                conn, address = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of file descriptors, say: the rest wait in the queue
                log.warning("cannot accept a connection: %s", _first_line(exc))
                return
            if len(self.idle) >= MAX_IDLE:
                oldest, _ = self.idle.popitem(last=False)
                self.selector.unregister(oldest)
                oldest.close()
            conn.setblocking(False)
            self.idle[conn] = (address, time.monotonic() + self.web.request_deadline)
            self.selector.register(conn, selectors.EVENT_READ)

    def _hand_over(self, conn: socket.socket, address: Any) -> None:
        with self.lock:
            if self.busy < self.web.max_handlers:
                self.busy += 1
            elif len(self.waiting) < MAX_WAITING:
                self.waiting.append((conn, address, time.monotonic() + WAIT_FOR_HANDLER))
                return
            else:
                _busy(conn, address)
                return
        threading.Thread(
            target=self._work, args=(conn, address), name="http-handler", daemon=True
        ).start()

    def _work(self, conn: socket.socket, address: Any) -> None:
        """Serves connections, this one and then any waiting, until none is left."""
        while True:
            self._serve(conn, address)
            with self.lock:
                if not self.waiting or self._stopping.is_set():
                    self.busy -= 1
                    return
                conn, address, _ = self.waiting.popleft()

    def _serve(self, conn: socket.socket, address: Any) -> None:
        # Made before it runs (its constructor serves the connection) so a failure can
        # still say what the connection was doing.
        handler = _Handler.__new__(_Handler)
        handler.client_address = address
        handler.requestline, handler.started, handler.answering = "", False, False
        try:
            conn.setblocking(True)
            _Handler.__init__(handler, conn, address, self)  # type: ignore[arg-type]
        except OSError as exc:  # the client went away or was too slow: not our error
            account = handler.describe(exc)
            if account:
                log.info("%s", account)
        except Exception as exc:
            log.error("connection from %s failed: %s", address[0], _first_line(exc))
            log.debug("connection traceback", exc_info=True)
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            conn.close()

    def _expire(self, now: float) -> None:
        while self.idle:
            conn, (address, cut_off) = next(iter(self.idle.items()))
            if cut_off > now:
                break
            del self.idle[conn]
            self.selector.unregister(conn)
            conn.close()  # it never said a word: nothing to answer, nothing to log
        with self.lock:
            late = []
            while self.waiting and self.waiting[0][2] <= now:
                late.append(self.waiting.popleft())
        for conn, address, _ in late:
            _busy(conn, address)


def _busy(conn: socket.socket, address: Any) -> None:
    """A short 503 without blocking the accepting thread, then the connection closes."""
    log.warning("too many requests at once: %s answered 503", address[0])
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(_BUSY)
    conn.close()


_BUSY_TEXT = b"busy: too many requests at once, try again\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_BUSY_TEXT), _BUSY_TEXT)
)
