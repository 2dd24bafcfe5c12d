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

from probes import mailbase
from probes.base import Outcome, ProbeContext
from probes.mailbase import (
    MailboxProbe,
    MailConfig,
    connection_failure,
    days_left,
    quote,
    text_of,
    tls_context,
)

__all__ = ["ImapProbe", "ImapConfig"]


class ImapConfig(MailConfig):
    default_ports: ClassVar[tuple[int, int]] = (143, 993)

    mailbox: str = "INBOX"


class ImapProbe(MailboxProbe):
    kind = "imap"
    Config = ImapConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {"connect_s", "tls_s", "login_s", "select_s", "latency_s", "cert_days_left", "messages"}
    )
    config: ImapConfig

    def _detail(self, metrics: dict[str, float]) -> str:
        return (
            f", {int(metrics['messages'])} messages in {self.config.mailbox}"
            if "messages" in metrics
            else ""
        )

    def _connect(
        self, ctx: ProbeContext, host: str, port: int, *, verify: bool | None = None
    ) -> imaplib.IMAP4:
        cfg = self.config
        if cfg.tls:
            return mailbase.IMAP4_SSL(
                host, port, ssl_context=tls_context(ctx, cfg, verify=verify), timeout=ctx.timeout
            )
        return mailbase.IMAP4(host, port, timeout=ctx.timeout)

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
            transcript.append(f"<<< {text_of(imap.welcome)}")
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
                transcript.append(f">>> LOGIN {cfg.user}\n<<< NO {text_of(exc)}")
                return Outcome.error(
                    f"{where} refused the login of {cfg.user}: {text_of(exc)}", reason="auth"
                )
            metrics["login_s"] = time.perf_counter() - t2
            transcript.append(f">>> LOGIN {cfg.user}\n<<< OK")
            step = "SELECT"
            t3 = time.perf_counter()
            status, data = imap.select(quote(cfg.mailbox), readonly=True)
            if status != "OK":
                return Outcome.error(
                    f"{where} has no mailbox {cfg.mailbox!r} for {cfg.user}: {text_of(data[0])}",
                    reason="mailbox",
                )
            metrics["select_s"] = time.perf_counter() - t3
            if data and data[0] and text_of(data[0]).isdigit():
                metrics["messages"] = int(text_of(data[0]))
            transcript.append(f">>> SELECT {cfg.mailbox}\n<<< OK {text_of(data[0])} messages")
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
