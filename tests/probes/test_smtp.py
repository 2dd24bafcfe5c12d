"""The smtp probe against a real Postfix (with Dovecot for the mailbox) on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from probes.base import ProbeContext, Result, run_probe
from probes.smtp import TAG_HEADER, SmtpConfig, SmtpProbe
from tests.servers.base import descendants, wait_until
from tests.servers.mail import MailServer, SmtpSink
from tests.support.rig import Rig
from watcher.delivery.httpclient import HttpClients

pytestmark = pytest.mark.slow

HTTP = HttpClients()


def _ctx() -> ProbeContext:
    return ProbeContext(
        site="acme", target="mail1", host="127.0.0.1", labels={}, timeout=10.0, http=HTTP
    )


def smtp(m: MailServer, **options: Any) -> Result:
    options.setdefault("ca_file", str(m.ca_path))
    (result,) = run_probe(SmtpProbe(SmtpConfig(**options)), _ctx(), "smtp")
    return result


def _qmgr_pids(m: MailServer) -> set[int]:
    master = m._postfix.pid
    found = set()
    for pid in descendants(master) if master else []:
        with contextlib.suppress(OSError):
            if b"qmgr" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
    return found


def break_delivery(m: MailServer) -> None:
    """The fixture's break_delivery, then a wait until Postfix's queue manager really
    restarted with the new setting (on a loaded machine that takes longer than its 0.2 s)."""
    before = _qmgr_pids(m)
    m.break_delivery()
    wait_until(lambda: (now := _qmgr_pids(m)) and not (now & before), 15, "qmgr to restart")


def submission(m: MailServer, **options: Any) -> dict[str, Any]:
    return {
        "port": m.submission_port,
        "starttls": True,
        "user": m.user.name,
        "password": m.password,
        **options,
    }


# --------------------------------------------------------------------------- healthy


def test_a_healthy_server_is_ok_with_a_metric_per_step(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = smtp(
        m,
        port=m.smtp_port,
        starttls=True,
        banner="ESMTP",
        extensions=["STARTTLS", "SIZE", "PIPELINING"],
    )
    assert (r.status, r.reason) == ("ok", ""), r.message
    for step in ("banner_s", "ehlo_s", "tls_s", "latency_s"):
        assert r.metrics[step] >= 0
    assert 29 < r.metrics["cert_days_left"] <= 30  # the test CA issues 30-day certificates
    assert r.metrics["extensions"] >= 5 and r.metrics["size_limit_bytes"] > 0
    assert "ESMTP watcher-test" in r.evidence and "STARTTLS" in r.evidence


def test_smtps_with_a_login_is_ok(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = smtp(m, port=m.smtps_port, tls=True, user=m.user.name, password=m.password)
    assert r.status == "ok", r.message
    assert {"tls_s", "auth_s", "cert_days_left"} <= set(r.metrics)
    assert m.password not in r.evidence + r.message


def test_a_wrong_password_is_an_error_not_a_failure(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = smtp(m, **submission(m, password="not-the-Password-9"))
    assert (r.status, r.reason) == ("error", "auth")
    assert "535" in r.message and "not-the-Password-9" not in r.message + r.evidence


def test_a_missing_extension_fails(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = smtp(m, port=m.smtp_port, extensions=["SMTPUTF8"])  # smtputf8_enable = no
    assert (r.status, r.reason) == ("fail", "extensions") and "SMTPUTF8" in r.message


# --------------------------------------------------------------------------- certificates


def test_an_expired_certificate_fails_with_its_own_reason_and_days_left(
    fresh_mail_server: MailServer,
) -> None:
    m = fresh_mail_server
    m.use_expired_cert()
    r = smtp(m, port=m.smtp_port, starttls=True)
    assert (r.status, r.reason) == ("fail", "cert_expired"), r.message
    assert r.metrics["cert_days_left"] < 0  # read over a second handshake that sends nothing


def test_a_self_signed_certificate_is_not_trusted(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m._set_cert(m.pki.self_signed)  # the fixture has no public switch for this one
    r = smtp(m, port=m.smtps_port, tls=True, user=m.user.name, password=m.password)
    assert (r.status, r.reason) == ("fail", "cert_untrusted") and "self-signed" in r.message
    assert "auth_s" not in r.metrics  # no password over a connection that failed verification


def test_verification_is_off_only_when_written(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m.use_expired_cert()
    assert smtp(m, port=m.smtp_port, starttls=True, ca_file=None).reason == "cert_untrusted"
    r = smtp(m, port=m.smtp_port, starttls=True, tls_verify=False)
    assert r.status == "ok" and r.metrics["cert_days_left"] < 0


def test_a_certificate_close_to_expiry_fails_with_cert_min_days(
    fresh_mail_server: MailServer,
) -> None:
    m = fresh_mail_server
    r = smtp(m, port=m.smtp_port, starttls=True, cert_min_days=45)
    assert (r.status, r.reason) == ("fail", "cert_expiring")


# --------------------------------------------------------------------------- down


def test_postfix_stopped_is_a_failure_at_once(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m.stop_postfix()
    r = smtp(m, port=m.smtp_port, starttls=True)
    assert (r.status, r.reason) == ("fail", "refused")


# --------------------------------------------------------------------------- roundtrip


def test_a_roundtrip_finds_the_mail_and_deletes_it(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = smtp(
        m,
        **submission(
            m, roundtrip={"to": m.address, "deadline": "20s", "imap": {"port": m.imaps_port}}
        ),
    )
    assert r.status == "ok", r.message
    assert 0 < r.metrics["roundtrip_seconds"] < 20
    assert m.messages() == []  # deleted after it was found


def test_a_roundtrip_fails_when_smtp_accepts_but_nothing_is_delivered(
    fresh_mail_server: MailServer,
) -> None:
    m = fresh_mail_server
    break_delivery(m)  # Postfix answers 250 and keeps the mail in its queue
    r = smtp(
        m,
        **submission(
            m, roundtrip={"to": m.address, "deadline": "3s", "imap": {"port": m.imaps_port}}
        ),
    )
    assert (r.status, r.reason) == ("fail", "roundtrip"), r.message
    assert (
        "not delivered" in r.message
        and "send_s" in r.metrics
        and "roundtrip_seconds" not in r.metrics
    )
    assert m.queued() == 1
    # Once delivery works again the late probe mail lands, and the next round removes it.
    m.fix_delivery()
    m.wait_for_messages(1)
    again = smtp(
        m,
        **submission(
            m, roundtrip={"to": m.address, "deadline": "20s", "imap": {"port": m.imaps_port}}
        ),
    )
    assert again.status == "ok"
    assert m.messages() == []


def test_a_roundtrip_fails_when_the_mailbox_cannot_be_read(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    m.stop_dovecot()  # no IMAP: mail may sit in the Maildir, but nobody can read it
    r = smtp(
        m,
        port=m.smtp_port,
        roundtrip={
            "to": m.address,
            "deadline": "3s",
            "imap": {"port": m.imaps_port, "user": m.user.name, "password": m.password},
        },
    )
    assert (r.status, r.reason) == ("fail", "roundtrip"), r.message
    assert "refused" in r.message


def test_a_wrong_mailbox_password_is_an_error(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    r = smtp(
        m,
        **submission(
            m,
            roundtrip={
                "to": m.address,
                "deadline": "5s",
                "imap": {"port": m.imaps_port, "password": "nope-Nope-1"},
            },
        ),
    )
    assert (r.status, r.reason) == ("error", "auth")


def test_probe_mails_carry_a_tag_that_names_the_check(fresh_mail_server: MailServer) -> None:
    m = fresh_mail_server
    break_delivery(m)
    smtp(
        m,
        **submission(
            m, roundtrip={"to": m.address, "deadline": "1s", "imap": {"port": m.imaps_port}}
        ),
    )
    m.fix_delivery()
    (mail,) = m.wait_for_messages(1)
    assert mail[TAG_HEADER].startswith("acme/mail1/smtp/") and mail["Subject"].startswith(
        "watcher delivery check"
    )
    m.clear_mailbox()


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"port": 25, "user": "a", "password": "secret-1"}, "only sent over TLS"),
        ({"port": 25, "tls": True, "starttls": True}, "choose one"),
        ({"port": 25, "user": "a"}, "both user and password"),
        ({"port": 25, "roundtrip": {"to": "a@b"}}, "needs a mailbox login"),
        ({"port": 25, "banner": "(", "starttls": True}, "regular expression"),
        (
            {
                "port": 25,
                "timeout": "30s",
                "roundtrip": {"to": "a@b", "deadline": "60s"},
                "starttls": True,
                "user": "a",
                "password": "secret-1",
            },
            "longer than roundtrip.deadline",
        ),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        SmtpConfig(**options)


def test_a_roundtrip_gets_a_timeout_longer_than_its_deadline() -> None:
    cfg = SmtpConfig(
        port=587,
        starttls=True,
        user="a",
        password="secret-1",
        roundtrip={"to": "a@b", "deadline": "90s"},
    )
    assert cfg.timeout is not None and cfg.timeout.total_seconds() == 110
    assert SmtpConfig(port=25).effective_port == 25 and SmtpConfig(tls=True).effective_port == 465


# --------------------------------------------------------------------------- rules


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator:
    rigs: list[Rig] = []

    def make(text: str) -> Rig:
        rig = Rig(tmp_path, text)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def _mail_site(m: MailServer, sink: SmtpSink, probe: str) -> str:
    return f"""
    site: acme
    state: state.db
    listen: null
    defaults: {{interval: 60s}}
    smtp: {{host: 127.0.0.1, port: {sink.port}, from: watcher@acme.example}}
    contacts:
      hotline: [{{name: L2 on call, email: emergency@support.example}}]
    integrations:
      tickets: [{{email: {{to: [support@helpdesk.example]}}}}]
      paging: [{{email: {{to: hotline}}}}]
    targets:
      - name: mail1
        host: 127.0.0.1
        labels: {{role: mail}}
        probes:
          - {probe}
    """


def test_postfix_stopped_fails_within_one_interval_and_opens_one_p1_incident_with_a_page(
    fresh_mail_server: MailServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    m = fresh_mail_server
    rig = rig_factory(
        _mail_site(
            m, smtp_sink, f'smtp: {{port: {m.smtp_port}, starttls: true, ca_file: "{m.ca_path}"}}'
        )
    )
    (first,) = rig.round()
    assert first.status == "ok" and rig.incidents() == []

    m.stop_postfix()
    (down,) = rig.round()  # the first check after the stop already fails
    assert (down.status, down.reason) == ("fail", "refused")
    assert [i.state for i in rig.incidents()] == ["pending"]  # smtp-down holds for 2m
    rig.rounds(2)
    (incident,) = rig.incidents()
    assert (incident.state, incident.priority, incident.rule) == ("open", "P1", "smtp-down")
    mails = smtp_sink.wait_for_messages(2)
    assert (
        sum(
            1
            for x in mails
            if x.subject.strip().startswith("[Emergency] [P1][acme] mail1: SMTP not answering")
        )
        == 1
    )
    assert (
        sum(
            1 for x in mails if x.subject.strip().startswith("[P1][acme] mail1: SMTP not answering")
        )
        == 1
    )

    m.start_postfix()
    rig.rounds(2)
    assert rig.incidents()[0].state == "resolved"


def test_broken_delivery_is_p2_at_once_and_p1_after_fifteen_minutes(
    fresh_mail_server: MailServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    m = fresh_mail_server
    probe = (
        f'smtp: {{port: {m.submission_port}, starttls: true, ca_file: "{m.ca_path}", user: {m.user.name}, '
        f'password: "{m.password}", roundtrip: {{to: {m.address}, deadline: 2s, imap: {{port: {m.imaps_port}}}}}}}'
    )
    rig = rig_factory(_mail_site(m, smtp_sink, probe))
    break_delivery(m)
    rig.rounds(2)  # mail-delivery-failing: after 2 failed roundtrips
    (incident,) = rig.incidents()
    assert (incident.state, incident.priority, incident.rule) == (
        "open",
        "P2",
        "mail-delivery-failing",
    )
    rig.advance(minutes=14)
    rig.round()
    (incident,) = rig.incidents()
    assert (incident.priority, incident.rule) == ("P1", "mail-delivery-down")
    assert [x.state for x in rig.incidents()] == [
        "open"
    ]  # one incident, raised; smtp-down never fired


def test_expired_and_self_signed_certificates_fire_the_certificate_rule_not_smtp_down(
    fresh_mail_server: MailServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    m = fresh_mail_server
    rig = rig_factory(
        _mail_site(
            m, smtp_sink, f'smtp: {{port: {m.smtp_port}, starttls: true, ca_file: "{m.ca_path}"}}'
        )
    )
    m.use_expired_cert()
    rig.rounds(3)
    (incident,) = rig.incidents()
    assert (incident.state, incident.priority, incident.rule) == (
        "open",
        "P2",
        "certificate-invalid",
    )
    assert incident.group == "smtp certificate" and "has expired" in incident.summary
    m._set_cert(m.pki.self_signed)
    rig.round()
    (incident,) = rig.incidents()
    assert incident.state == "open" and "not trusted" in incident.message
    m.use_valid_cert()
    rig.rounds(2)
    assert [i.state for i in rig.incidents()] == ["resolved"]
    tickets = [
        x for x in smtp_sink.wait_for_messages(1) if "support@helpdesk.example" in x.rcpt_tos
    ]
    assert not any(
        x.subject.strip().startswith("[Emergency]") for x in smtp_sink.messages
    )  # a P2: no page
    assert tickets[0].subject.strip().startswith("[P2][acme] mail1: smtp TLS certificate not valid")
