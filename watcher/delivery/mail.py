"""Sending mail through the configured relay, with errors that say whether to retry."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from integrations.base import PermanentError, TransientError
from watcher.config.models import SmtpSettings
from watcher.delivery.httpclient import HttpClients

__all__ = ["send_mail", "build_message"]


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    message_id: str | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = " ".join(subject.split())  # no header injection through newlines
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id or make_msgid(domain="watcher")
    message["Auto-Submitted"] = "auto-generated"
    for key, value in (headers or {}).items():
        message[key] = " ".join(str(value).split())
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, mime, data in attachments:
        maintype, _, subtype = mime.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def send_mail(
    settings: SmtpSettings, message: EmailMessage, http: HttpClients | None = None
) -> None:
    """Sends one message; TransientError when a retry can help, PermanentError when not."""
    clients = http or HttpClients()
    context = clients.ssl_context(verify=settings.tls_verify, ca_file=settings.ca_file)
    timeout = settings.timeout.total_seconds()
    where = f"{settings.host}:{settings.port}"
    try:
        if settings.ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        with client:
            client.ehlo()
            if settings.starttls and not settings.ssl:
                client.starttls(context=context)
                client.ehlo()
            if settings.user:
                password = settings.password.reveal() if settings.password else ""
                client.login(settings.user, password)
            client.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentError(f"mail relay {where} refused the login: {exc.smtp_code}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        text = f"mail relay {where} refused the recipients {', '.join(exc.recipients)}"
        if all(400 <= c < 500 for c in codes):
            raise TransientError(text) from None
        raise PermanentError(text) from None
    except smtplib.SMTPResponseException as exc:
        text = f"mail relay {where} answered {exc.smtp_code} {exc.smtp_error!r}"
        if 400 <= exc.smtp_code < 500:
            raise TransientError(text) from None
        raise PermanentError(text) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentError(f"mail relay {where}: {exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise PermanentError(
            f"mail relay {where} certificate not trusted: {exc.verify_message}"
        ) from None
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise TransientError(
            f"mail relay {where} unreachable: {type(exc).__name__}: {exc}"
        ) from None
