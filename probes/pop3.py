"""``pop3``: connect (POP3S or STLS), log in, STAT the maildrop.

    - pop3: {port: 995, tls: true, user: monitor, password: "${POP_PW}"}

Without a login it checks the greeting and TLS only. A refused or silent server is
``fail``; a refused login is ``error`` (reason ``auth``).
"""

from __future__ import annotations

import contextlib
import poplib
import time
from typing import ClassVar

from probes import mailbase
from probes.base import Outcome, ProbeContext
from probes.mailbase import (
    MailboxProbe,
    MailConfig,
    connection_failure,
    days_left,
    text_of,
    tls_context,
)

__all__ = ["Pop3Probe", "Pop3Config"]


class Pop3Config(MailConfig):
    default_ports: ClassVar[tuple[int, int]] = (110, 995)


class Pop3Probe(MailboxProbe):
    kind = "pop3"
    Config = Pop3Config
    metrics: ClassVar[frozenset[str]] = frozenset(
        {
            "connect_s",
            "tls_s",
            "login_s",
            "stat_s",
            "latency_s",
            "cert_days_left",
            "messages",
            "mailbox_bytes",
        }
    )
    config: Pop3Config

    def _connect(
        self, ctx: ProbeContext, host: str, port: int, *, verify: bool | None = None
    ) -> poplib.POP3:
        cfg = self.config
        if cfg.tls:
            return mailbase.POP3_SSL(
                host, port, context=tls_context(ctx, cfg, verify=verify), timeout=ctx.timeout
            )
        return mailbase.POP3(host, port, timeout=ctx.timeout)

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
            pop = self._connect(ctx, host, port)
        except (OSError, poplib.error_proto) as exc:
            return connection_failure(exc, where, ctx.timeout, step)
        try:
            metrics["connect_s"] = time.perf_counter() - t0
            transcript.append(f"<<< {text_of(pop.getwelcome())}")
            if cfg.tls:
                metrics["tls_s"] = metrics["connect_s"]
            if cfg.starttls:
                step = "STLS"
                if "STLS" not in pop.capa():
                    return Outcome.fail(f"{where} does not offer STLS", reason="tls")
                t1 = time.perf_counter()
                pop.stls(context=tls_context(ctx, cfg))
                metrics["tls_s"] = time.perf_counter() - t1
                transcript.append(">>> STLS (ok)")
            days = days_left(pop.sock)
            if days is not None:
                metrics["cert_days_left"] = days
            if cfg.user is None or cfg.password is None:
                return Outcome.ok()
            step = "login"
            t2 = time.perf_counter()
            try:
                pop.user(cfg.user)
                pop.pass_(cfg.password.reveal())
            except poplib.error_proto as exc:
                transcript.append(f">>> USER {cfg.user} / PASS\n<<< {text_of(exc)}")
                return Outcome.error(
                    f"{where} refused the login of {cfg.user}: {text_of(exc)}", reason="auth"
                )
            metrics["login_s"] = time.perf_counter() - t2
            transcript.append(f">>> USER {cfg.user} / PASS\n<<< +OK")
            step = "STAT"
            t3 = time.perf_counter()
            count, size = pop.stat()
            metrics["stat_s"] = time.perf_counter() - t3
            metrics["messages"] = count
            metrics["mailbox_bytes"] = size
            transcript.append(f">>> STAT\n<<< +OK {count} {size}")
            return Outcome.ok()
        except (OSError, poplib.error_proto) as exc:
            return connection_failure(exc, where, ctx.timeout, step)
        finally:
            _quietly_quit(pop)

    def _days_without_verifying(self, ctx: ProbeContext, host: str, port: int) -> float | None:
        """Reads the rejected certificate's dates; nothing but the handshake is sent."""
        try:
            pop = self._connect(ctx, host, port, verify=False)
        except (OSError, poplib.error_proto):
            return None
        try:
            if self.config.starttls:
                pop.stls(context=tls_context(ctx, self.config, verify=False))
            return days_left(pop.sock)
        except (OSError, poplib.error_proto):
            return None
        finally:
            _quietly_quit(pop)


def _quietly_quit(pop: poplib.POP3) -> None:
    try:
        pop.quit()
    except (OSError, poplib.error_proto):
        with contextlib.suppress(OSError):
            pop.close()
