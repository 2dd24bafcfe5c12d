"""The pop3 probe against a real Dovecot on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.base import ProbeContext, Result, run_probe
from probes.pop3 import Pop3Config, Pop3Probe
from tests.servers.mail import MailServer
from tests.support.rig import Rig
from watcher.delivery.httpclient import HttpClients

pytestmark = pytest.mark.slow

HTTP = HttpClients()


def pop3(m: MailServer, **options: Any) -> Result:
    options.setdefault("ca_file", str(m.ca_path))
    ctx = ProbeContext(
        site="acme", target="mail1", host="127.0.0.1", labels={}, timeout=10.0, http=HTTP
    )
    (result,) = run_probe(Pop3Probe(Pop3Config(**options)), ctx, "pop3")
    return result


def test_pop3s_with_a_login_counts_the_maildrop(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m.send(subject="one")
    m.send(subject="two")
    m.wait_for_messages(2)
    r = pop3(m, port=m.pop3s_port, tls=True, user=m.user.name, password=m.password)
    assert r.status == "ok", r.message
    assert r.metrics["messages"] == 2 and r.metrics["mailbox_bytes"] > 0
    assert {"connect_s", "tls_s", "login_s", "stat_s", "latency_s", "cert_days_left"} <= set(
        r.metrics
    )


def test_stls_upgrades_the_plain_port(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = pop3(m, port=m.pop3_port, starttls=True, user=m.user.name, password=m.password)
    assert r.status == "ok" and "STLS" in r.evidence and r.metrics["cert_days_left"] > 0


def test_a_wrong_password_is_an_error(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = pop3(m, port=m.pop3s_port, tls=True, user=m.user.name, password="wrong-Password-2")
    assert (r.status, r.reason) == ("error", "auth")
    assert "wrong-Password-2" not in r.message + r.evidence


def test_dovecot_stopped_is_a_failure(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m.stop_dovecot()
    assert pop3(m, port=m.pop3_port).reason == "refused"


def test_expired_and_self_signed_certificates_fail_with_their_own_reasons(
    fresh_mail_server: MailServer,
) -> None:
    m = fresh_mail_server
    m.use_expired_cert()
    r = pop3(m, port=m.pop3s_port, tls=True)
    assert (r.status, r.reason) == ("fail", "cert_expired") and r.metrics["cert_days_left"] < 0
    m._set_cert(m.pki.self_signed)
    r = pop3(m, port=m.pop3_port, starttls=True, user=m.user.name, password=m.password)
    assert (r.status, r.reason) == ("fail", "cert_untrusted") and "login_s" not in r.metrics


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
              - pop3: {{port: {m.pop3s_port}, tls: true, ca_file: "{m.ca_path}"}}
        """,
    )
    yield rig
    rig.close()


def test_pop3_down_for_five_minutes_is_p2(fresh_mail_server: MailServer, rig: Rig) -> None:
    fresh_mail_server.stop_dovecot()
    rig.rounds(5)
    assert [i.state for i in rig.incidents()] == ["pending"]
    rig.round()
    (incident,) = rig.incidents()
    assert (incident.state, incident.priority, incident.rule) == ("open", "P2", "pop3-down")
