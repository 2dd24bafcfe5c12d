"""``imap``: connect (IMAPS or STARTTLS), log in, select a mailbox.

    - imap: {port: 993, tls: true, user: monitor, password: "${IMAP_PW}"}

Without a login it checks the greeting and TLS only. A refused or silent server is
``fail``; a refused login is ``error`` (reason ``auth``).
"""

from __future__ import annotations

import contextlib
import imaplib
import time
from typing import ClassVar

from probes.base import Outcome, Probe, ProbeContext
from probes.mailbase import MailConfig, connection_failure, days_left, judge_common, tls_context

__all__ = ["ImapProbe", "ImapConfig"]


class ImapConfig(MailConfig):
    default_ports: ClassVar[tuple[int, int]] = (143, 993)

    mailbox: str = "INBOX"


class ImapProbe(Probe):
    kind = "imap"
    Config = ImapConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {"connect_s", "tls_s", "login_s", "select_s", "latency_s", "cert_days_left", "messages"}
    )
    config: ImapConfig

    def check(self, ctx: ProbeContext) -> Outcome:
        cfg = self.config
        host, port = cfg.where(ctx)
        where = f"{host}:{port}"
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
        detail = (
            f", {int(metrics['messages'])} messages in {cfg.mailbox}"
            if "messages" in metrics
            else ""
        )
        return Outcome.ok(
            f"{where} answered in {metrics['latency_s'] * 1000:.0f} ms{detail}",
            metrics=metrics,
            evidence=evidence,
        )

    def _connect(
        self, ctx: ProbeContext, host: str, port: int, *, verify: bool | None = None
    ) -> imaplib.IMAP4:
        cfg = self.config
        if cfg.tls:
            return imaplib.IMAP4_SSL(
                host, port, ssl_context=tls_context(ctx, cfg, verify=verify), timeout=ctx.timeout
            )
        return imaplib.IMAP4(host, port, timeout=ctx.timeout)

    def _session(
        self,
        ctx: ProbeContext,
        host: str,
        port: int,
        metrics: dict[str, float],
        transcript: list[str],
    ) -> Outcome:
        cfg = self.config
        where = f"{host}:{port}"
        step = "connect"
        t0 = time.perf_counter()
        try:
            imap = self._connect(ctx, host, port)
        except (OSError, imaplib.IMAP4.error) as exc:
            return connection_failure(exc, where, ctx.timeout, step)
        try:
            metrics["connect_s"] = time.perf_counter() - t0
            transcript.append(f"<<< {_text(imap.welcome)}")
            if cfg.tls:
                metrics["tls_s"] = metrics["connect_s"]
            if cfg.starttls:
                step = "STARTTLS"
                if "STARTTLS" not in imap.capabilities:
                    return Outcome.fail(f"{where} does not offer STARTTLS", reason="tls")
                t1 = time.perf_counter()
                imap.starttls(ssl_context=tls_context(ctx, cfg))
                metrics["tls_s"] = time.perf_counter() - t1
                transcript.append(">>> STARTTLS (ok)")
            days = days_left(imap.sock)
            if days is not None:
                metrics["cert_days_left"] = days
            transcript.append("capabilities: " + " ".join(imap.capabilities))
            if cfg.user is None or cfg.password is None:
                return Outcome.ok()
            step = "LOGIN"
            t2 = time.perf_counter()
            try:
                imap.login(cfg.user, cfg.password.reveal())
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                transcript.append(f">>> LOGIN {cfg.user}\n<<< NO {_text(exc)}")
                return Outcome.error(
                    f"{where} refused the login of {cfg.user}: {_text(exc)}", reason="auth"
                )
            metrics["login_s"] = time.perf_counter() - t2
            transcript.append(f">>> LOGIN {cfg.user}\n<<< OK")
            step = "SELECT"
            t3 = time.perf_counter()
            status, data = imap.select(_quote(cfg.mailbox), readonly=True)
            if status != "OK":
                return Outcome.error(
                    f"{where} has no mailbox {cfg.mailbox!r} for {cfg.user}: {_text(data[0])}",
                    reason="mailbox",
                )
            metrics["select_s"] = time.perf_counter() - t3
            if data and data[0] and _text(data[0]).isdigit():
                metrics["messages"] = int(_text(data[0]))
            transcript.append(f">>> SELECT {cfg.mailbox}\n<<< OK {_text(data[0])} messages")
            return Outcome.ok()
        except (OSError, imaplib.IMAP4.error) as exc:
            return connection_failure(exc, where, ctx.timeout, step)
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.logout()

    def _days_without_verifying(self, ctx: ProbeContext, host: str, port: int) -> float | None:
        """Reads the rejected certificate's dates; nothing but the handshake is sent."""
        try:
            imap = self._connect(ctx, host, port, verify=False)
        except (OSError, imaplib.IMAP4.error):
            return None
        try:
            if self.config.starttls:
                imap.starttls(ssl_context=tls_context(ctx, self.config, verify=False))
            return days_left(imap.sock)
        except (OSError, imaplib.IMAP4.error):
            return None
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.logout()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    if isinstance(value, BaseException) and value.args:
        return _text(value.args[0])
    return str(value).strip()
