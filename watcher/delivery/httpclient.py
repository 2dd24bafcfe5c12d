"""The one place HTTP leaves the process: shared TLS contexts and requests sessions.

Building an SSL context loads the whole CA bundle (about 20 ms of CPU); a probe that
did it per check would spend most of its time there. Contexts are built once per
verification setting and shared by every probe and integration that uses that setting.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from watcher import __version__

__all__ = ["USER_AGENT", "HttpClients", "new_session"]

log = logging.getLogger("watcher.http")

USER_AGENT = f"watcher/{__version__} (+incident auto-ticketer)"
DEFAULT_TIMEOUT = 10.0
# The most of an answer an integration keeps: helpdesk and pager APIs answer in kilobytes;
# a service (or something posing as one) that sends more must not fill the memory.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# Headers that may follow a redirect to another host; everything else a session or a
# request set (API keys, tokens) stays behind, as requests already does for Authorization.
_KEPT_ACROSS_HOSTS = frozenset(
    {
        "user-agent",
        "accept",
        "accept-encoding",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)


class _ContextAdapter(HTTPAdapter):
    def __init__(self, context: ssl.SSLContext | None, **kw: Any) -> None:
        self._context = context
        super().__init__(**kw)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


class _Session(requests.Session):
    """A requests session that never waits forever, always says who it is, keeps at most
    ``max_body`` bytes of an answer and sends its credentials to no other host."""

    def __init__(self, timeout: float, max_body: int = MAX_RESPONSE_BYTES) -> None:
        super().__init__()
        self.default_timeout = timeout
        self.max_body = max_body
        self.headers["User-Agent"] = USER_AGENT

    # narrower than requests' own signature on purpose: every caller passes method and url
    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        if kwargs.get("stream"):
            return super().request(method, url, *args, **kwargs)  # the caller reads, and caps
        kwargs["stream"] = True
        response = super().request(method, url, *args, **kwargs)
        body = bytearray()
        with response:
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > self.max_body:
                    log.warning(
                        "%s answered more than %d bytes; the rest is dropped",
                        response.url.split("?")[0],
                        self.max_body,
                    )
                    del body[self.max_body :]
                    break
        response._content = bytes(body)  # what .content, .text and .json() read
        response._content_consumed = True  # type: ignore[attr-defined]
        return response

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(str(response.request.url), str(prepared_request.url)):
            for name in list(prepared_request.headers):
                if name.lower() not in _KEPT_ACROSS_HOSTS:
                    del prepared_request.headers[name]


def new_session(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    verify: bool | str = True,
    clients: HttpClients | None = None,
) -> requests.Session:
    """A session for an integration: timeouts, User-Agent and a shared TLS context."""
    session = _Session(timeout)
    session.verify = verify
    if clients is not None and verify is not False:
        context = clients.ssl_context(
            verify=True, ca_file=verify if isinstance(verify, str) else None
        )
        session.mount("https://", _ContextAdapter(context))
    return session


class HttpClients:
    """Shared TLS contexts, keyed by how they verify."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def ssl_context(self, *, verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
        key = (verify, ca_file)
        context = self._contexts.get(key)
        if context is not None:
            return context
        with self._lock:
            context = self._contexts.get(key)
            if context is None:
                context = self._build(verify, ca_file)
                self._contexts[key] = context
        return context

    @staticmethod
    def _build(verify: bool, ca_file: str | None) -> ssl.SSLContext:
        if not verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        context = ssl.create_default_context(cafile=ca_file)
        if ca_file is None and not context.cert_store_stats().get("x509_ca"):
            import certifi  # a slim image may have no system CA store

            context.load_verify_locations(certifi.where())
        return context
