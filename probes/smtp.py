"""``smtp``: the 220 banner, EHLO and its extensions, TLS, AUTH, and optionally a mail
sent through the server and found in a mailbox over IMAP (``roundtrip``).

    - smtp: {port: 25, starttls: true}
    - smtp: {port: 587, starttls: true, user: monitor, password: "${SMTP_PW}",
             roundtrip: {to: monitor@example.org, deadline: 60s}}

A refused or silent server is ``fail`` (it is down for everyone who sends mail); a
refused login is ``error`` (the probe cannot tell whether the server is fine). A server
that accepts the probe mail but does not deliver it within the deadline fails with
reason ``roundtrip``: it is down for its users even though port 25 answers.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import smtplib
import socket
import ssl
import time
import uuid
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probes import mailbase
from probes.base import Outcome, Probe, ProbeContext
from probes.mailbase import (
    MailConfig,
    connection_failure,
    days_left,
    judge_common,
    quote,
    text_of,
    tls_context,
)
from watcher.core.durations import parse_duration
from watcher.core.secret import Secret
from watcher.core.types import Duration, check_regex

__all__ = ["SmtpProbe", "SmtpConfig", "RoundtripConfig", "TAG_HEADER"]

TAG_HEADER = "X-Watcher-Probe"
_POLL_EVERY = 0.25


class MailboxAccess(BaseModel):
    """Where the roundtrip mail is looked for; unset fields come from the smtp probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None
    port: int | None = None
    tls: bool = True
    starttls: bool = False
    tls_verify: bool | None = None
    ca_file: str | None = None
    user: str | None = None
    password: Secret | None = None
    mailbox: str = "INBOX"

    @model_validator(mode="after")
    def _consistent(self) -> MailboxAccess:
        if self.tls and self.starttls:
            raise ValueError(
                "choose one: tls: true or starttls: true (write tls: false with starttls: true)"
            )
        if self.password is not None and not (self.tls or self.starttls):
            raise ValueError(
                "the mailbox password is only sent over TLS: tls: true or starttls: true"
            )
        return self


class RoundtripConfig(BaseModel):
    """Send a tagged mail to ``to`` and wait until it is in the mailbox (then delete it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    to: str
    sender: str | None = Field(default=None, alias="from")
    deadline: Duration = timedelta(seconds=60)
    imap: MailboxAccess = MailboxAccess()


class SmtpConfig(MailConfig):
    default_ports: ClassVar[tuple[int, int]] = (25, 465)

    helo: str | None = None
    banner: str | None = None
    extensions: list[str] = []
    roundtrip: RoundtripConfig | None = None

    @field_validator("banner")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return check_regex(value)

    @model_validator(mode="before")
    @classmethod
    def _roundtrip_timeout(cls, data: Any) -> Any:
        # The wait for delivery is part of the check: give it room unless told otherwise.
        if isinstance(data, dict) and data.get("roundtrip") and data.get("timeout") is None:
            rt = data["roundtrip"]
            deadline = (
                parse_duration(rt.get("deadline", 60))
                if isinstance(rt, dict)
                else timedelta(seconds=60)
            )
            data = {**data, "timeout": deadline + timedelta(seconds=20)}
        return data

    @model_validator(mode="after")
    def _roundtrip_login(self) -> SmtpConfig:
        rt = self.roundtrip
        if rt is not None and (rt.imap.user or self.user) is None:
            raise ValueError(
                "roundtrip needs a mailbox login: set roundtrip.imap.user and password, or user/password"
            )
        if rt is not None and (rt.imap.password or self.password) is None:
            raise ValueError(
                'roundtrip needs the mailbox password: roundtrip.imap.password: "${ENV_VAR}"'
            )
        if rt is not None and self.timeout is not None and self.timeout <= rt.deadline:
            raise ValueError(
                f"timeout ({self.timeout.total_seconds():g}s) must be longer than roundtrip.deadline "
                f"({rt.deadline.total_seconds():g}s); leave timeout out to get deadline + 20s"
            )
        return self


class _Stop(Exception):
    """Ends the conversation early with a verdict."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class SmtpProbe(Probe):
    kind = "smtp"
    Config = SmtpConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {
            "banner_s",
            "ehlo_s",
            "tls_s",
            "auth_s",
            "send_s",
            "latency_s",
            "roundtrip_seconds",
            "cert_days_left",
            "size_limit_bytes",
            "extensions",
        }
    )
    config: SmtpConfig

    def check(self, ctx: ProbeContext) -> Outcome:
        cfg = self.config
        host, port = cfg.where(ctx)
        metrics: dict[str, float] = {}
        transcript: list[str] = []
        started = time.perf_counter()
        try:
            outcome = self._converse(ctx, host, port, metrics, transcript)
        except _Stop as stop:
            outcome = stop.outcome
        metrics.setdefault("latency_s", time.perf_counter() - started)
        if outcome.reason in ("cert_expired", "cert_untrusted") and "cert_days_left" not in metrics:
            days = self._days_without_verifying(ctx, host, port)
            if days is not None:
                metrics["cert_days_left"] = days
        evidence = "\n".join(transcript)
        if outcome.status != "ok":
            return Outcome(
                outcome.status,
                outcome.message,
                metrics,
                {},
                evidence or outcome.evidence,
                outcome.reason,
            )
        failures = judge_common(cfg, metrics)
        if failures:
            return Outcome.fail(
                "; ".join(m for _, m in failures),
                metrics=metrics,
                evidence=evidence,
                reason=failures[0][0],
            )
        return Outcome(outcome.status, outcome.message, metrics, {}, evidence, outcome.reason)

    # ------------------------------------------------------------------ the session

    def _wait(self, ctx: ProbeContext) -> float:
        """How long one answer may take: the check's timeout, less the roundtrip's own
        deadline (waiting for delivery is not waiting for an answer)."""
        rt = self.config.roundtrip
        if rt is None:
            return ctx.timeout
        return max(5.0, ctx.timeout - rt.deadline.total_seconds())

    def _client(self, ctx: ProbeContext, *, verify: bool | None = None) -> smtplib.SMTP:
        cfg = self.config
        helo = cfg.helo or socket.gethostname() or "watcher"
        if cfg.tls:
            return mailbase.SMTP_SSL(
                local_hostname=helo,
                timeout=self._wait(ctx),
                context=tls_context(ctx, cfg, verify=verify),
            )
        return mailbase.SMTP(local_hostname=helo, timeout=self._wait(ctx))

    def _converse(
        self,
        ctx: ProbeContext,
        host: str,
        port: int,
        metrics: dict[str, float],
        transcript: list[str],
    ) -> Outcome:
        cfg = self.config
        where = f"{host}:{port}"
        client = self._client(ctx)
        client._host = host  # type: ignore[attr-defined]  # smtplib sets it only when given to __init__
        started = time.perf_counter()
        try:
            t0 = started
            try:
                code, banner = client.connect(host, port)
            except smtplib.SMTPConnectError as exc:
                text = text_of(exc.smtp_error)
                transcript.append(f"<<< {exc.smtp_code} {text}")
                raise _Stop(
                    Outcome.fail(f"{where} greeted with {exc.smtp_code} {text}", reason="banner")
                ) from None
            except (OSError, smtplib.SMTPException) as exc:
                raise _Stop(connection_failure(exc, where, self._wait(ctx), "connect")) from None
            metrics["banner_s"] = time.perf_counter() - t0
            if cfg.tls:
                metrics["tls_s"] = metrics["banner_s"]
                self._cert_days(client, metrics)
            transcript.append(f"<<< {code} {text_of(banner)}")
            if cfg.banner is not None and not _search(cfg.banner, text_of(banner)):
                raise _Stop(
                    Outcome.fail(
                        f"banner {text_of(banner)!r} does not match /{cfg.banner}/", reason="banner"
                    )
                )
            features = self._ehlo(client, where, self._wait(ctx), metrics, transcript)
            offered = set(features)  # STARTTLS is offered before TLS only
            if cfg.starttls:
                if "starttls" not in features:
                    raise _Stop(Outcome.fail(f"{where} does not offer STARTTLS", reason="tls"))
                t1 = time.perf_counter()
                try:
                    client.starttls(context=tls_context(ctx, cfg))
                except (OSError, smtplib.SMTPException) as exc:
                    raise _Stop(
                        connection_failure(exc, where, self._wait(ctx), "STARTTLS")
                    ) from None
                metrics["tls_s"] = time.perf_counter() - t1
                self._cert_days(client, metrics)
                transcript.append(">>> STARTTLS (ok)")
                features = self._ehlo(client, where, self._wait(ctx), metrics, transcript)
            metrics["extensions"] = len(features)
            size = features.get("size", "").split()
            if size and size[0].isdigit() and int(size[0]) > 0:
                metrics["size_limit_bytes"] = int(size[0])
            offered |= set(features)
            missing = [e for e in cfg.extensions if e.lower() not in offered]
            if missing:
                raise _Stop(
                    Outcome.fail(
                        f"{where} does not advertise {', '.join(missing)}", reason="extensions"
                    )
                )
            if cfg.user is not None and cfg.password is not None:
                self._login(client, where, self._wait(ctx), metrics, transcript)
            sent = None
            if cfg.roundtrip is not None:
                sent = self._send(ctx, client, where, metrics, transcript)
        finally:
            _quietly_quit(client)
            metrics["latency_s"] = time.perf_counter() - started
        if sent is not None:
            return self._await_delivery(ctx, host, sent, metrics, transcript)
        return Outcome.ok(f"{where} answered in {metrics['latency_s'] * 1000:.0f} ms")

    def _ehlo(
        self,
        client: smtplib.SMTP,
        where: str,
        timeout: float,
        metrics: dict[str, float],
        transcript: list[str],
    ) -> dict[str, str]:
        t0 = time.perf_counter()
        try:
            code, reply = client.ehlo()
            if code != 250:
                transcript.append(f"<<< EHLO {code} {text_of(reply)}")
                code, reply = client.helo()
        except (OSError, smtplib.SMTPException) as exc:
            raise _Stop(connection_failure(exc, where, timeout, "EHLO")) from None
        metrics["ehlo_s"] = metrics.get("ehlo_s", 0.0) + time.perf_counter() - t0
        transcript.append(f">>> EHLO\n<<< {code} " + text_of(reply).replace("\n", "\n<<< "))
        if code != 250:
            raise _Stop(
                Outcome.fail(
                    f"{where} refused EHLO and HELO: {code} {text_of(reply)}", reason="protocol"
                )
            )
        return dict(client.esmtp_features)

    def _login(
        self,
        client: smtplib.SMTP,
        where: str,
        timeout: float,
        metrics: dict[str, float],
        transcript: list[str],
    ) -> None:
        cfg = self.config
        assert cfg.user is not None and cfg.password is not None
        t0 = time.perf_counter()
        try:
            client.login(cfg.user, cfg.password.reveal())
        except smtplib.SMTPAuthenticationError as exc:
            transcript.append(
                f">>> AUTH ({cfg.user})\n<<< {exc.smtp_code} {text_of(exc.smtp_error)}"
            )
            raise _Stop(
                Outcome.error(
                    f"{where} refused the login of {cfg.user}: {exc.smtp_code} {text_of(exc.smtp_error)}",
                    reason="auth",
                )
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise _Stop(
                Outcome.error(f"{where} offers no AUTH on this port", reason="auth")
            ) from None
        except smtplib.SMTPException as exc:
            raise _Stop(Outcome.error(f"login at {where} failed: {exc}", reason="auth")) from None
        except OSError as exc:
            raise _Stop(connection_failure(exc, where, timeout, "AUTH")) from None
        metrics["auth_s"] = time.perf_counter() - t0
        transcript.append(f">>> AUTH ({cfg.user})\n<<< 235 accepted")

    def _cert_days(self, client: smtplib.SMTP, metrics: dict[str, float]) -> None:
        days = days_left(client.sock)
        if days is not None:
            metrics["cert_days_left"] = days

    def _days_without_verifying(self, ctx: ProbeContext, host: str, port: int) -> float | None:
        """Reads the rejected certificate's dates over a connection that sends nothing else."""
        client = self._client(ctx, verify=False)
        client._host = host  # type: ignore[attr-defined]
        try:
            client.connect(host, port)
            if self.config.starttls:
                client.ehlo()
                client.starttls(context=tls_context(ctx, self.config, verify=False))
            return days_left(client.sock)
        except (OSError, smtplib.SMTPException):
            return None
        finally:
            _quietly_quit(client)

    # ------------------------------------------------------------------ roundtrip

    def _send(
        self,
        ctx: ProbeContext,
        client: smtplib.SMTP,
        where: str,
        metrics: dict[str, float],
        transcript: list[str],
    ) -> tuple[str, float]:
        rt = self.config.roundtrip
        assert rt is not None
        tag = f"{ctx.site}/{ctx.target}/{self.config.name or self.kind}/{uuid.uuid4().hex}"
        message = EmailMessage()
        message["From"] = rt.sender or rt.to
        message["To"] = rt.to
        message["Subject"] = f"watcher delivery check {tag.rsplit('/', 1)[1][:12]}"
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="watcher.invalid")
        message[TAG_HEADER] = tag
        message.set_content(
            f"watcher sent this message to check that mail for {rt.to} is delivered.\n"
            "It deletes it as soon as it arrives; if you see it, delivery was slow.\n"
        )
        t0 = time.perf_counter()
        try:
            refused = client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _Stop(
                Outcome.fail(
                    f"{where} refused the probe mail to {rt.to}: {code} {text_of(text)}",
                    reason="roundtrip",
                )
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise _Stop(
                Outcome.fail(
                    f"{where} refused the probe mail: {exc.smtp_code} {text_of(exc.smtp_error)}",
                    reason="roundtrip",
                )
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _Stop(
                connection_failure(exc, where, self._wait(ctx), "sending the probe mail")
            ) from None
        if refused:
            raise _Stop(
                Outcome.fail(f"{where} refused the probe mail to {rt.to}", reason="roundtrip")
            )
        metrics["send_s"] = time.perf_counter() - t0
        transcript.append(f">>> probe mail {TAG_HEADER}: {tag}\n<<< 250 accepted")
        return tag, t0

    def _await_delivery(
        self,
        ctx: ProbeContext,
        smtp_host: str,
        sent: tuple[str, float],
        metrics: dict[str, float],
        transcript: list[str],
    ) -> Outcome:
        cfg = self.config
        rt = cfg.roundtrip
        assert rt is not None
        tag, sent_at = sent
        box = rt.imap
        host = box.host or smtp_host
        port = box.port or (993 if box.tls else 143)
        where = f"{host}:{port}"
        user = box.user or cfg.user or ""
        password = (box.password or cfg.password or Secret("")).reveal()
        verify = cfg.tls_verify if box.tls_verify is None else box.tls_verify
        context = ctx.http.ssl_context(verify=verify, ca_file=box.ca_file or cfg.ca_file)
        deadline = sent_at + rt.deadline.total_seconds()
        undelivered = f"accepted by {smtp_host} but "
        try:
            if box.tls:
                imap: imaplib.IMAP4 = mailbase.IMAP4_SSL(
                    host, port, ssl_context=context, timeout=self._wait(ctx)
                )
            else:
                imap = mailbase.IMAP4(host, port, timeout=self._wait(ctx))
                if box.starttls:
                    imap.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.error) as exc:
            failed = connection_failure(exc, where, self._wait(ctx), "IMAP")
            return Outcome.fail(
                f"{undelivered}its delivery cannot be confirmed: {failed.message}",
                metrics=metrics,
                reason="roundtrip",
            )
        try:
            try:
                imap.login(user, password)
            except imaplib.IMAP4.error as exc:
                return Outcome.error(
                    f"cannot confirm delivery: {where} refused the login of {user}: {text_of(exc.args[0] if exc.args else exc)}",
                    metrics=metrics,
                    reason="auth",
                )
            status, _ = imap.select(quote(box.mailbox))
            if status != "OK":
                return Outcome.error(
                    f"cannot confirm delivery: no mailbox {box.mailbox!r} at {where}",
                    metrics=metrics,
                    reason="mailbox",
                )
            while True:
                found = _search_tag(imap, tag)
                if found:
                    metrics["roundtrip_seconds"] = round(time.perf_counter() - sent_at, 3)
                    break
                if time.perf_counter() >= deadline:
                    break
                time.sleep(min(_POLL_EVERY, max(0.0, deadline - time.perf_counter())))
                imap.noop()
            # This probe's earlier mails that came in after their deadline go too.
            _delete(imap, _search_tag(imap, tag.rsplit("/", 1)[0] + "/"))
        except (OSError, imaplib.IMAP4.error) as exc:
            failed = connection_failure(exc, where, self._wait(ctx), "IMAP")
            return Outcome.fail(
                f"{undelivered}confirming delivery failed: {failed.message}",
                metrics=metrics,
                reason="roundtrip",
            )
        finally:
            _quietly_logout(imap)
        if "roundtrip_seconds" not in metrics:
            transcript.append(
                f"*** not in {box.mailbox} of {user} at {where} after {rt.deadline.total_seconds():g}s"
            )
            return Outcome.fail(
                f"{undelivered}not delivered to {rt.to} within {rt.deadline.total_seconds():g}s",
                metrics=metrics,
                reason="roundtrip",
            )
        transcript.append(
            f"*** delivered to {box.mailbox} of {user} in {metrics['roundtrip_seconds']:.2f}s (deleted)"
        )
        return Outcome.ok(f"mail delivered to {rt.to} in {metrics['roundtrip_seconds']:.1f}s")


def _search_tag(imap: imaplib.IMAP4, text: str) -> list[bytes]:
    status, data = imap.search(None, "HEADER", TAG_HEADER, quote(text))
    if status != "OK" or not data or not data[0]:
        return []
    return data[0].split()


def _delete(imap: imaplib.IMAP4, numbers: list[bytes]) -> None:
    if numbers:
        imap.store(b",".join(numbers).decode(), "+FLAGS.SILENT", r"(\Deleted)")
        imap.expunge()


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def _quietly_quit(client: smtplib.SMTP) -> None:
    try:
        if client.sock is not None:
            client.quit()
    except (OSError, smtplib.SMTPException, ssl.SSLError):
        client.close()


def _quietly_logout(imap: imaplib.IMAP4) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        imap.logout()
