"""The imap probe against a real Dovecot on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from probes.base import ProbeContext, Result, run_probe
from probes.imap import ImapConfig, ImapProbe
from tests.servers.mail import MailServer
from tests.support.rig import Rig
from watcher.delivery.httpclient import HttpClients

pytestmark = pytest.mark.slow

HTTP = HttpClients()


def imap(m: MailServer, **options: Any) -> Result:
    options.setdefault("ca_file", str(m.ca_path))
    ctx = ProbeContext(
        site="acme", target="mail1", host="127.0.0.1", labels={}, timeout=10.0, http=HTTP
    )
    (result,) = run_probe(ImapProbe(ImapConfig(**options)), ctx, "imap")
    return result


def login(m: MailServer, **options: Any) -> dict[str, Any]:
    return {"user": m.user.name, "password": m.password, **options}


def test_imaps_with_a_login_selects_the_inbox(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m.send(subject="one")
    m.wait_for_messages(1)
    r = imap(m, **login(m, port=m.imaps_port, tls=True))
    assert r.status == "ok", r.message
    assert r.metrics["messages"] == 1
    assert {"connect_s", "tls_s", "login_s", "select_s", "latency_s"} <= set(r.metrics)
    assert 29 < r.metrics["cert_days_left"] <= 30
    assert m.password not in r.evidence


def test_starttls_without_a_login_checks_greeting_and_certificate(
    fresh_mail_server: MailServer,
) -> None:
    m = fresh_mail_server
    r = imap(m, port=m.imap_port, starttls=True)
    assert r.status == "ok" and "cert_days_left" in r.metrics and "login_s" not in r.metrics
    assert "Dovecot" in r.evidence or "ready" in r.evidence.lower()


def test_a_wrong_password_is_an_error(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = imap(m, port=m.imaps_port, tls=True, user=m.user.name, password="wrong-Password-1")
    assert (r.status, r.reason) == ("error", "auth")
    assert "wrong-Password-1" not in r.message + r.evidence


def test_a_missing_mailbox_is_an_error(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = imap(m, **login(m, port=m.imaps_port, tls=True, mailbox="No Such Box"))
    assert (r.status, r.reason) == ("error", "mailbox")


def test_dovecot_stopped_is_a_failure(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m.stop_dovecot()
    r = imap(m, port=m.imaps_port, tls=True)
    assert (r.status, r.reason) == ("fail", "refused")


def test_an_expired_certificate_fails_with_its_own_reason(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m.use_expired_cert()
    for options in ({"port": m.imaps_port, "tls": True}, {"port": m.imap_port, "starttls": True}):
        r = imap(m, **options)
        assert (r.status, r.reason) == ("fail", "cert_expired"), (options, r.message)
        assert r.metrics["cert_days_left"] < 0


def test_a_self_signed_certificate_is_not_trusted_and_no_password_is_sent(
    fresh_mail_server: MailServer,
) -> None:
    m = fresh_mail_server
    m._set_cert(m.pki.self_signed)
    r = imap(m, **login(m, port=m.imaps_port, tls=True))
    assert (r.status, r.reason) == ("fail", "cert_untrusted")
    assert "login_s" not in r.metrics


def test_a_password_needs_tls() -> None:
    with pytest.raises(ValidationError, match="only sent over TLS"):
        ImapConfig(port=143, user="a", password="secret-1")
    assert ImapConfig(tls=True).effective_port == 993 and ImapConfig().effective_port == 143


@pytest.fixture
def rig(tmp_path: Path, fresh_mail_server: MailServer) -> Iterator[Rig]:
    m = fresh_mail_server
    rig = Rig(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: null
        targets:
          - name: mail1
            host: 127.0.0.1
            probes:
              - imap: {{port: {m.imaps_port}, tls: true, ca_file: "{m.ca_path}"}}
        """,
    )
    yield rig
    rig.close()


def test_imap_down_for_two_minutes_is_p1_and_a_bad_certificate_is_p2(
    fresh_mail_server: MailServer, rig: Rig
) -> None:
    m = fresh_mail_server
    m.stop_dovecot()
    rig.rounds(3)
    (down,) = rig.incidents()
    assert (down.state, down.priority, down.rule) == ("open", "P1", "imap-down")
    m.start_dovecot()
    m.use_expired_cert()
    rig.rounds(2)
    by_rule = {i.rule: i for i in rig.incidents()}
    assert by_rule["imap-down"].state == "resolved"
    assert (by_rule["certificate-invalid"].state, by_rule["certificate-invalid"].priority) == (
        "open",
        "P2",
    )
