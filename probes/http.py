"""``http``: one request (following redirects) with assertions on what comes back.

Built on ``http.client`` rather than requests: a monitoring check wants a fresh
connection each time (as a user's browser would make), a shared TLS context per
verification setting, timing per phase and the peer certificate, and none of a
session's pooling.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext, decode_output
from watcher.core.durations import parse_duration
from watcher.core.secret import Secret, protect_basic_auth, protect_url
from watcher.core.types import check_regex
from watcher.delivery.httpclient import USER_AGENT

__all__ = ["HttpProbe", "HttpConfig", "json_path_get", "cert_days_left", "may_send_credentials"]

_REDIRECTS = {301, 302, 303, 307, 308}
_STATUS_PATTERN = re.compile(r"^[1-5](\d\d|xx)$")


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    user: str
    password: Secret

    @model_validator(mode="after")
    def _protect_header(self) -> BasicAuth:
        protect_basic_auth(self.user, self.password.reveal())
        return self


class HttpConfig(ProbeConfig):
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, Secret] = {}
    body: str | None = None
    basic_auth: BasicAuth | None = None
    status: list[str] = ["2xx"]
    contains: str | None = None
    not_contains: str | None = None
    regex: str | None = None
    json_equals: dict[str, Any] = {}
    max_latency: timedelta | None = None
    follow_redirects: bool = True
    max_redirects: int = 5
    tls_verify: bool = True
    ca_file: str | None = None
    cert_min_days: float | None = None
    max_body_bytes: int = 1024 * 1024

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return protect_url(value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> list[str]:
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            text = str(item).lower()
            if not _STATUS_PATTERN.match(text):
                raise ValueError(f'{item!r} is not a status; write 200, [200, 301] or "2xx"')
            out.append(text)
        return out

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return check_regex(value)

    @field_validator("max_latency", mode="before")
    @classmethod
    def _latency(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)


def status_matches(code: int, patterns: list[str]) -> bool:
    text = str(code)
    return any(p == text or (p.endswith("xx") and p[0] == text[0]) for p in patterns)


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def json_path_get(document: Any, path: str) -> Any:
    """Follows ``checks.db.status`` or ``items[0].name``; raises KeyError if absent."""
    node = document
    for name, index in _PATH_PART.findall(path.removeprefix("$.")):
        if index:
            if not isinstance(node, list) or int(index) >= len(node):
                raise KeyError(path)
            node = node[int(index)]
        else:
            if not isinstance(node, dict) or name not in node:
                raise KeyError(path)
            node = node[name]
    return node


def _read_body(sock: Any, response: http.client.HTTPResponse, limit: int, deadline: float) -> bytes:
    """Up to ``limit`` bytes of the body by the check's deadline. A socket timeout alone
    bounds each read, not the whole: a body that trickles in (a stream, a server stuck
    mid-answer) would hold the check far past its timeout."""
    body = bytearray()
    while len(body) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = response.read1(min(64 * 1024, limit - len(body)))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def may_send_credentials(configured: str, url: str) -> bool:
    """Whether a request to ``url`` (a redirect's or a next page's) may carry what was
    configured for ``configured``: the same host, and not down from https to http."""
    home, there = urlsplit(configured), urlsplit(url)
    if (home.hostname or "").lower() != (there.hostname or "").lower():
        return False
    return not (home.scheme == "https" and there.scheme != "https")


def cert_days_left(der: bytes, now: datetime) -> float:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return (cert.not_valid_after_utc - now).total_seconds() / 86400.0


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return float(expected) == float(actual)
    return expected == actual or str(expected) == str(actual)


class HttpProbe(Probe):
    kind = "http"
    Config = HttpConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {
            "latency_s",
            "connect_s",
            "ttfb_s",
            "status_code",
            "body_bytes",
            "redirects",
            "cert_days_left",
        }
    )
    config: HttpConfig

    def check(self, ctx: ProbeContext) -> Outcome:
        cfg = self.config
        deadline = time.monotonic() + ctx.timeout
        started = time.perf_counter()
        plain = {"User-Agent": USER_AGENT, "Connection": "close", "Accept": "*/*"}
        headers = {**plain, **{k: v.reveal() for k, v in cfg.headers.items()}}
        if cfg.basic_auth:
            pair = f"{cfg.basic_auth.user}:{cfg.basic_auth.password.reveal()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        metrics: dict[str, float] = {}
        url = cfg.url
        redirects = 0
        while True:
            # The configured headers and credentials go to the configured host only: a
            # redirect elsewhere must not collect them.
            sent = headers if may_send_credentials(cfg.url, url) else plain
            outcome = self._one_request(ctx, url, sent, deadline, metrics)
            if isinstance(outcome, Outcome):
                metrics["latency_s"] = time.perf_counter() - started
                return Outcome(
                    outcome.status, outcome.message, metrics, {}, outcome.evidence, outcome.reason
                )
            status, response_headers, body = outcome
            location = response_headers.get("location")
            if (
                cfg.follow_redirects
                and status in _REDIRECTS
                and location
                and redirects < cfg.max_redirects
            ):
                redirects += 1
                url = urljoin(url, location)
                continue
            break
        metrics["latency_s"] = time.perf_counter() - started
        metrics["redirects"] = redirects
        metrics["status_code"] = status
        metrics["body_bytes"] = len(body)
        evidence = self._evidence(url, status, response_headers, body)
        return self._judge(status, body, metrics, evidence, url)

    def _one_request(
        self,
        ctx: ProbeContext,
        url: str,
        headers: dict[str, str],
        deadline: float,
        metrics: dict[str, float],
    ) -> Outcome | tuple[int, dict[str, str], bytes]:
        cfg = self.config
        parts = urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        remaining = max(0.05, deadline - time.monotonic())
        host = parts.hostname  # a redirect may name no host: that URL is unsupported too
        if host and parts.scheme == "https":
            context = ctx.http.ssl_context(verify=cfg.tls_verify, ca_file=cfg.ca_file)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, parts.port, timeout=remaining, context=context
            )
        elif host and parts.scheme == "http":
            conn = http.client.HTTPConnection(host, parts.port, timeout=remaining)
        else:
            return Outcome.fail(f"redirected to unsupported URL {url}", reason="redirect")
        where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        try:
            t0 = time.perf_counter()
            try:
                conn.connect()
            except ssl.SSLCertVerificationError as exc:
                return Outcome.fail(
                    f"TLS certificate of {where} not trusted: {exc.verify_message}", reason="tls"
                )
            except ssl.SSLError as exc:
                return Outcome.fail(
                    f"TLS handshake with {where} failed: {exc.reason or exc}", reason="tls"
                )
            except ConnectionRefusedError:
                return Outcome.fail(f"connection to {where} refused", reason="refused")
            except socket.gaierror as exc:
                return Outcome.fail(
                    f"cannot resolve {parts.hostname}: {exc.strerror}", reason="dns"
                )
            except TimeoutError:
                return Outcome.fail(
                    f"no connection to {where} within {remaining:.1f}s", reason="timeout"
                )
            except OSError as exc:
                return Outcome.fail(
                    f"cannot connect to {where}: {exc.strerror or exc}", reason="refused"
                )
            metrics["connect_s"] = time.perf_counter() - t0
            if parts.scheme == "https" and "cert_days_left" not in metrics:
                der = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
                if der:
                    metrics["cert_days_left"] = round(cert_days_left(der, datetime.now(UTC)), 3)
            conn.timeout = max(0.05, deadline - time.monotonic())
            sock = conn.sock  # kept: a Connection: close answer takes it off ``conn``
            sock.settimeout(conn.timeout)
            try:
                conn.request(cfg.method, path, body=cfg.body, headers=headers)
                response = conn.getresponse()
                metrics["ttfb_s"] = time.perf_counter() - t0
                body = (
                    b""
                    if cfg.method == "HEAD"
                    else _read_body(sock, response, cfg.max_body_bytes, deadline)
                )
            except TimeoutError:
                return Outcome.fail(
                    f"{where} did not answer within {ctx.timeout:.1f}s", reason="timeout"
                )
            except (http.client.HTTPException, OSError) as exc:
                return Outcome.fail(
                    f"{where} broke the exchange: {type(exc).__name__}: {exc}", reason="protocol"
                )
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def _judge(
        self, status: int, body: bytes, metrics: dict[str, float], evidence: str, url: str
    ) -> Outcome:
        cfg = self.config
        text = body.decode("utf-8", "replace")
        failures: list[tuple[str, str]] = []
        if not status_matches(status, cfg.status):
            failures.append(
                ("status", f"HTTP {status} from {url} (expected {', '.join(cfg.status)})")
            )
        if cfg.contains is not None and cfg.contains not in text:
            failures.append(("content", f"body does not contain {cfg.contains!r}"))
        if cfg.not_contains is not None and cfg.not_contains in text:
            failures.append(("content", f"body contains {cfg.not_contains!r}"))
        if cfg.regex is not None and not re.search(cfg.regex, text):
            failures.append(("content", f"body does not match /{cfg.regex}/"))
        if cfg.json_equals:
            try:
                document = json.loads(text)
            except ValueError:
                failures.append(("content", "body is not JSON"))
            else:
                for path, expected in cfg.json_equals.items():
                    try:
                        actual = json_path_get(document, path)
                    except KeyError:
                        failures.append(("content", f"JSON has no {path}"))
                        continue
                    if not _same(expected, actual):
                        failures.append(
                            ("content", f"JSON {path} is {actual!r}, expected {expected!r}")
                        )
        latency = metrics["latency_s"]
        if cfg.max_latency is not None and latency > cfg.max_latency.total_seconds():
            failures.append(
                ("slow", f"answered in {latency:.2f}s, over {cfg.max_latency.total_seconds():g}s")
            )
        days = metrics.get("cert_days_left")
        if cfg.cert_min_days is not None and days is not None and days < cfg.cert_min_days:
            failures.append(
                (
                    "cert_expiring",
                    f"certificate expires in {days:.1f} days (minimum {cfg.cert_min_days:g})",
                )
            )
        if failures:
            reason = failures[0][0]
            return Outcome.fail(
                "; ".join(m for _, m in failures), metrics=metrics, evidence=evidence, reason=reason
            )
        return Outcome.ok(
            f"HTTP {status} in {latency * 1000:.0f} ms", metrics=metrics, evidence=evidence
        )

    @staticmethod
    def _evidence(url: str, status: int, headers: dict[str, str], body: bytes) -> str:
        head = "\n".join(f"{k}: {v}" for k, v in headers.items())
        return f"{url}\nHTTP {status}\n{head}\n\n{decode_output(body[:2048])}"
