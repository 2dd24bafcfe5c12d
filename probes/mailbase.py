"""What the ``smtp``, ``imap`` and ``pop3`` probes share: TLS options, certificate
verdicts and the reasons a failed connection is given.

Certificate problems get reasons of their own (``cert_expired``, ``cert_untrusted``,
``cert_expiring``) so the shipped certificate rules, not the service-down rules, speak
for them: an expired certificate is a ticket, not a page at 3 a.m. Credentials never go
over a connection whose certificate failed verification.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import field_validator, model_validator

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext
from probes.http import cert_days_left
from watcher.core.durations import parse_duration
from watcher.core.secret import Secret

__all__ = [
    "CERT_REASONS",
    "IMAP4",
    "IMAP4_SSL",
    "POP3",
    "POP3_SSL",
    "REPLY_CAP",
    "SMTP",
    "SMTP_SSL",
    "ReplyTooLong",
    "MailboxProbe",
    "MailConfig",
    "cert_failure",
    "connection_failure",
    "days_left",
    "judge_common",
]

CERT_REASONS = ("cert_expired", "cert_untrusted", "cert_expiring")
# The most a probe reads from one server connection (each TLS layer counts afresh). The
# standard library bounds a line, not how many lines a reply has nor the size an IMAP
# literal announces: a broken or hostile server could fill the memory with either.
REPLY_CAP = 1024 * 1024
_X509_EXPIRED = 10
_X509_NOT_YET_VALID = 9


class MailConfig(ProbeConfig):
    """Connection options of the mail probes. ``tls`` is implicit TLS (SMTPS, IMAPS,
    POP3S); ``starttls`` upgrades a plain connection. Verification is on unless
    ``tls_verify: false`` is written."""

    default_ports: ClassVar[tuple[int, int]] = (0, 0)  # (plain or STARTTLS, implicit TLS)

    host: str | None = None
    port: int | None = None
    tls: bool = False
    starttls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    cert_min_days: float | None = None
    user: str | None = None
    password: Secret | None = None
    max_latency: timedelta | None = None

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | None) -> int | None:
        if value is not None and not 0 < value < 65536:
            raise ValueError("a port is between 1 and 65535")
        return value

    @field_validator("max_latency", mode="before")
    @classmethod
    def _latency(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _consistent(self) -> MailConfig:
        if self.tls and self.starttls:
            raise ValueError(
                "choose one: tls: true (implicit TLS) or starttls: true (upgrade), not both"
            )
        if (self.user is None) != (self.password is None):
            raise ValueError('a login needs both user and password (password: "${ENV_VAR}")')
        if self.password is not None and not (self.tls or self.starttls):
            raise ValueError("a password is only sent over TLS: add tls: true or starttls: true")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return self.default_ports[1] if self.tls else self.default_ports[0]

    def where(self, ctx: ProbeContext) -> tuple[str, int]:
        return self.host or ctx.host or "127.0.0.1", self.effective_port


class ReplyTooLong(OSError):
    """The server sent more than a probe reads from one connection."""


class _CappedReader:
    """The read side of a server connection, refusing to hand over more than ``limit`` bytes."""

    def __init__(self, raw: Any, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._left = limit

    def _take(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            raise ReplyTooLong(f"more than {self._limit // 1024} KiB")
        return data

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self._left + 1:
            size = self._left + 1  # one byte past the budget tells it was overrun
        return self._take(self._raw.readline(size))

    def read(self, size: int | None = -1) -> bytes:
        # An IMAP literal announces its size: one over the budget is refused before it is
        # waited for, let alone allocated.
        if size is None or size < 0 or size > self._left:
            raise ReplyTooLong(
                f"an answer announced as {size} bytes, more than {self._limit // 1024} KiB"
            )
        return self._take(self._raw.read(size))

    def close(self) -> None:
        self._raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _CappedReplies:
    """Mixed into the standard library's mail clients, which all read through ``self.file``."""

    @property
    def file(self) -> Any:
        return self.__dict__.get("_capped_file")

    @file.setter
    def file(self, value: Any) -> None:
        if value is not None and not isinstance(value, _CappedReader):
            value = _CappedReader(value, REPLY_CAP)
        self.__dict__["_capped_file"] = value


class SMTP(_CappedReplies, smtplib.SMTP):
    pass


class SMTP_SSL(_CappedReplies, smtplib.SMTP_SSL):  # noqa: N801 - the standard library's name
    pass


class IMAP4(_CappedReplies, imaplib.IMAP4):
    pass


class IMAP4_SSL(_CappedReplies, imaplib.IMAP4_SSL):  # noqa: N801
    pass


class POP3(_CappedReplies, poplib.POP3):
    pass


class POP3_SSL(_CappedReplies, poplib.POP3_SSL):  # noqa: N801
    pass


def tls_context(
    ctx: ProbeContext, cfg: MailConfig, *, verify: bool | None = None
) -> ssl.SSLContext:
    return ctx.http.ssl_context(
        verify=cfg.tls_verify if verify is None else verify, ca_file=cfg.ca_file
    )


def cert_failure(exc: ssl.SSLCertVerificationError, where: str) -> tuple[str, str]:
    """(reason, message) for a certificate that failed verification."""
    if exc.verify_code == _X509_EXPIRED:
        return "cert_expired", f"TLS certificate of {where} has expired"
    if exc.verify_code == _X509_NOT_YET_VALID:
        return "cert_untrusted", f"TLS certificate of {where} is not valid yet"
    return "cert_untrusted", f"TLS certificate of {where} not trusted: {exc.verify_message or exc}"


def connection_failure(
    exc: BaseException, where: str, timeout: float, step: str = "connect"
) -> Outcome:
    """A ``fail`` for whatever stopped the conversation with the server."""
    flood = exc if isinstance(exc, ReplyTooLong) else exc.__context__
    if isinstance(flood, ReplyTooLong):  # smtplib reports it as a closed connection
        return Outcome.fail(
            f"{where} sent {flood} in one conversation ({step}); cut off", reason="protocol"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason, message = cert_failure(exc, where)
        return Outcome.fail(message, reason=reason)
    if isinstance(exc, ssl.SSLError):
        return Outcome.fail(f"TLS handshake with {where} failed: {exc.reason or exc}", reason="tls")
    if isinstance(exc, ConnectionRefusedError):
        return Outcome.fail(f"connection to {where} refused", reason="refused")
    if isinstance(exc, socket.gaierror):
        return Outcome.fail(
            f"cannot resolve {where.rsplit(':', 1)[0]}: {exc.strerror}", reason="dns"
        )
    if isinstance(exc, TimeoutError):
        return Outcome.fail(
            f"{where} did not answer within {timeout:.1f}s ({step})", reason="timeout"
        )
    if isinstance(
        exc, (ConnectionResetError, BrokenPipeError, EOFError, smtplib.SMTPServerDisconnected)
    ):
        return Outcome.fail(f"{where} closed the connection ({step})", reason="protocol")
    if isinstance(exc, OSError):
        return Outcome.fail(
            f"cannot talk to {where} ({step}): {exc.strerror or exc}", reason="refused"
        )
    return Outcome.fail(
        f"{where} broke the exchange ({step}): {type(exc).__name__}: {exc}", reason="protocol"
    )


def days_left(sock: Any) -> float | None:
    """Days until the peer certificate of a TLS socket expires (negative once expired)."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    der = sock.getpeercert(binary_form=True)
    return round(cert_days_left(der, datetime.now(UTC)), 3) if der else None


def judge_common(cfg: MailConfig, metrics: dict[str, float]) -> list[tuple[str, str]]:
    """(reason, message) for the limits every mail probe has: latency and certificate age."""
    failures = []
    days = metrics.get("cert_days_left")
    if cfg.cert_min_days is not None and days is not None and days < cfg.cert_min_days:
        failures.append(
            (
                "cert_expiring",
                f"certificate expires in {days:.1f} days (minimum {cfg.cert_min_days:g})",
            )
        )
    latency = metrics.get("latency_s")
    if (
        cfg.max_latency is not None
        and latency is not None
        and latency > cfg.max_latency.total_seconds()
    ):
        failures.append(
            ("slow", f"answered in {latency:.2f}s, over {cfg.max_latency.total_seconds():g}s")
        )
    return failures


def text_of(value: object) -> str:
    """A server's reply or an exception's first argument as one clean string."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    if isinstance(value, BaseException) and value.args:
        return text_of(value.args[0])
    return str(value).strip()


def quote(text: str) -> str:
    """An IMAP quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MailboxProbe(Probe):
    """``imap`` and ``pop3``: one session, then the verdicts both share.

    Subclasses give ``_session`` (connect, TLS, login, look at the mailbox, filling
    ``metrics`` and ``transcript``), ``_days_without_verifying`` (a second handshake that
    sends nothing, to date a certificate verification refused) and ``_detail``.
    """

    config: MailConfig

    def check(self, ctx: ProbeContext) -> Outcome:
        cfg = self.config
        host, port = cfg.where(ctx)
        metrics: dict[str, float] = {}
        transcript: list[str] = []
        started = time.perf_counter()
        outcome = self._session(ctx, host, port, metrics, transcript)
        metrics["latency_s"] = time.perf_counter() - started
        if outcome.reason in ("cert_expired", "cert_untrusted"):
            days = self._days_without_verifying(ctx, host, port)
            if days is not None:
                metrics["cert_days_left"] = days
        evidence = "\n".join(transcript)
        if outcome.status != "ok":
            return Outcome(outcome.status, outcome.message, metrics, {}, evidence, outcome.reason)
        failures = judge_common(cfg, metrics)
        if failures:
            return Outcome.fail(
                "; ".join(m for _, m in failures),
                metrics=metrics,
                evidence=evidence,
                reason=failures[0][0],
            )
        return Outcome.ok(
            f"{host}:{port} answered in {metrics['latency_s'] * 1000:.0f} ms{self._detail(metrics)}",
            metrics=metrics,
            evidence=evidence,
        )

    def _session(
        self,
        ctx: ProbeContext,
        host: str,
        port: int,
        metrics: dict[str, float],
        transcript: list[str],
    ) -> Outcome:
        raise NotImplementedError

    def _days_without_verifying(self, ctx: ProbeContext, host: str, port: int) -> float | None:
        raise NotImplementedError

    def _detail(self, metrics: dict[str, float]) -> str:
        return f", {int(metrics['messages'])} messages" if "messages" in metrics else ""
