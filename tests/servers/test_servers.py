"""Smoke tests: each real server starts, answers over loopback, and stops cleanly."""

from __future__ import annotations

import imaplib
import json
import poplib
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.parse

import paramiko
import pytest
import requests

from .base import ManagedProcess, free_port, pid_alive, port_open, require_binary, wait_for_port
from .certs import TestPKI
from .disk import SmallFs
from .httpd import HTTPTestServer
from .mail import MailServer, SmtpSink
from .prometheus import BlackboxExporter, promtool_check_metrics
from .rt import RequestTracker
from .sshd import BastionPair, Sshd

# Loopback only: never let an http_proxy from the environment see these requests.
http = requests.Session()
http.trust_env = False

# --------------------------------------------------------------------------- base


def test_managed_process_stops_its_tree(tmp_path):
    proc = ManagedProcess(["sh", "-c", "sleep 60 & sleep 60"], tmp_path / "log").start()
    time.sleep(0.1)
    pid = proc.pid
    assert pid and proc.running()
    from .base import descendants

    children = descendants(pid)
    assert children
    proc.stop()
    assert not proc.running()
    assert not any(pid_alive(p) for p in children)


def test_a_missing_server_binary_fails_the_test_in_ci_and_locally(monkeypatch):
    for ci in ("true", "false"):
        monkeypatch.setenv("CI", ci)
        with pytest.raises(pytest.fail.Exception, match="run make test"):
            require_binary("/nonexistent/watcher-test-binary")


# --------------------------------------------------------------------------- HTTP


def test_http_server_controls_and_records(http_server: HTTPTestServer):
    http_server.set_response("/health", status=503, body="down", headers={"X-Test": "1"})
    r = http.get(http_server.url_for("/health?x=1"), timeout=5)
    assert (r.status_code, r.text, r.headers["X-Test"]) == (503, "down", "1")
    http.post(http_server.url_for("/hook"), data=b"payload", timeout=5)
    assert [(q.method, q.path, q.body) for q in http_server.requests] == [
        ("GET", "/health?x=1", b""),
        ("POST", "/hook", b"payload"),
    ]
    http_server.set_response("/slow", delay=0.5)
    with pytest.raises(requests.exceptions.Timeout):
        http.get(http_server.url_for("/slow"), timeout=0.2)
    port = http_server.port
    http_server.stop()
    assert not port_open("127.0.0.1", port)
    http_server.start()
    assert http_server.port == port and http.get(http_server.url, timeout=5).status_code == 200


def test_https_server_certificates(
    test_pki: TestPKI, https_server: HTTPTestServer, http_server_factory
):
    ca = str(test_pki.ca.cert_path)
    assert http.get(https_server.url, verify=ca, timeout=5).status_code == 200
    for cert, reason in ((test_pki.expired, "expired"), (test_pki.self_signed, "self-signed")):
        server = http_server_factory(tls=cert)
        with pytest.raises(requests.exceptions.SSLError, match=reason):
            http.get(server.url, verify=ca, timeout=5)


# --------------------------------------------------------------------------- SSH


def test_sshd_keys_password_known_hosts(sshd: Sshd, tmp_path):
    for kind in ("ed25519", "ecdsa", "rsa", "ed25519_encrypted"):
        client = sshd.client(key=kind)
        _, out, _ = client.exec_command("id -un")
        assert out.read().decode().strip() == sshd.user
        client.close()
    sshd.client(password=True).close()
    assert sshd.known_hosts_line().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAA")
    # The fingerprint matches what OpenSSH itself computes.
    kh = sshd.write_known_hosts(tmp_path / "known_hosts")
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(kh)], capture_output=True, text=True, check=True
    ).stdout
    assert sshd.host_key_fingerprint in out
    # And the real OpenSSH client accepts the server with that known_hosts file.
    res = subprocess.run(
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={kh}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "LogLevel=ERROR",
            "-i",
            str(sshd.client_keys.ed25519),
            "-p",
            str(sshd.port),
            f"{sshd.user}@127.0.0.1",
            "echo ok",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert res.stdout.strip() == "ok", res.stderr


def test_sshd_kill_restart_and_rekey(sshd: Sshd):
    client = sshd.client()
    port, old_fp, old_key = sshd.port, sshd.host_key_fingerprint, sshd.host_key
    sshd.kill()
    assert not port_open("127.0.0.1", port)
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        client.exec_command("true", timeout=5)[1].read()
    sshd.start()
    assert sshd.port == port and sshd.host_key_fingerprint == old_fp
    sshd.client().close()

    new_fp = sshd.regenerate_host_key()
    assert new_fp != old_fp and sshd.running() and sshd.port == port
    pinned = paramiko.SSHClient()
    pinned.get_host_keys().add(f"[127.0.0.1]:{port}", old_key.get_name(), old_key)
    pinned.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        pinned.connect(
            "127.0.0.1",
            port,
            username=sshd.user,
            password=sshd.password,
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
    pinned.close()
    sshd.client().close()  # the new key verifies
    sshd.stop()
    assert not port_open("127.0.0.1", port)


def test_sshd_extra_config_overrides(sshd_factory):
    server = sshd_factory(extra_config=["PasswordAuthentication no"])
    with pytest.raises(paramiko.AuthenticationException):
        server.client(password=True)
    server.client().close()  # keys still work


def test_bastion_pair(bastion_pair: BastionPair):
    bastion, inner, inner_host, inner_port = bastion_pair
    outer, client = bastion_pair.inner_client()
    _, out, _ = client.exec_command("echo inner")
    assert out.read() == b"inner\n"
    client.close()
    outer.close()
    if bastion_pair.isolated:
        with pytest.raises(OSError):
            socket.create_connection((inner_host, inner_port), timeout=2).close()
    assert bastion.running() and inner.running()


def test_small_fs_fill(small_fs: SmallFs):
    assert small_fs.used_percent() == 0
    assert small_fs.fill_to(91) == 91
    df = subprocess.run(
        ["df", "--output=pcent", str(small_fs.path)], capture_output=True, text=True
    ).stdout
    assert df.split()[-1] == "91%"
    assert small_fs.fill_to(20) == 20


# --------------------------------------------------------------------------- mail


def test_smtp_sink_records_and_restarts(smtp_sink: SmtpSink):
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as smtp:
        smtp.sendmail(
            "a@example.test", ["b@example.test"], b"Subject: hi\r\nX-Id: 7\r\n\r\nbody\r\n"
        )
    (msg,) = smtp_sink.wait_for_messages(1)
    assert (msg.mail_from, msg.rcpt_tos, msg.subject, msg.body.strip(), msg.headers["X-Id"]) == (
        "a@example.test",
        ["b@example.test"],
        "hi",
        "body",
        "7",
    )
    port = smtp_sink.port
    smtp_sink.stop()
    with pytest.raises(OSError):
        smtplib.SMTP(smtp_sink.host, port, timeout=2)
    smtp_sink.start()
    assert smtp_sink.port == port
    smtplib.SMTP(smtp_sink.host, port, timeout=5).quit()


def test_smtp_sink_starttls_auth(smtp_sink_factory, test_pki: TestPKI):
    sink = smtp_sink_factory(starttls=True, require_starttls=True, auth=("pager", "secret"))
    ctx = ssl.create_default_context(cafile=str(test_pki.ca.cert_path))
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.starttls(context=ctx)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("pager", "wrong")
        smtp.login("pager", "secret")
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: s\r\n\r\nx\r\n")
    (msg,) = sink.wait_for_messages(1)
    assert msg.tls and msg.auth_login == "pager"


@pytest.mark.slow
def test_mail_server_roundtrip(fresh_mail_server: MailServer):
    m = fresh_mail_server
    m.send(subject="smoke")
    assert [x["Subject"] for x in m.wait_for_messages(1)] == ["smoke"]
    ctx = m.ssl_context()
    with smtplib.SMTP(m.host, m.submission_port, timeout=10) as smtp:
        smtp.starttls(context=ctx)
        smtp.login(m.user.name, m.password)
        smtp.sendmail("watcher@localhost", [m.address], b"Subject: submission\r\n\r\nx\r\n")
    with imaplib.IMAP4_SSL(m.host, m.imaps_port, ssl_context=ctx, timeout=10) as imap:
        assert imap.login(m.user.name, m.password)[0] == "OK"
    pop = poplib.POP3_SSL(m.host, m.pop3s_port, context=ctx, timeout=10)
    pop.user(m.user.name)
    pop.pass_(m.password)
    pop.quit()
    assert len(m.wait_for_messages(2)) == 2
    # Relaying anywhere else is refused: nothing leaves the machine.
    with (
        smtplib.SMTP(m.host, m.smtp_port, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        smtp.sendmail("watcher@localhost", ["someone@example.com"], b"Subject: x\r\n\r\nx\r\n")


@pytest.mark.slow
def test_mail_server_failure_modes(fresh_mail_server: MailServer):
    m = fresh_mail_server
    m.break_delivery()
    m.send(subject="held")
    time.sleep(0.5)
    assert m.queued() == 1 and m.messages() == []
    m.fix_delivery()
    assert [x["Subject"] for x in m.wait_for_messages(1)] == ["held"]

    m.use_expired_cert()
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        m.send(subject="x")
    m.use_valid_cert()

    m.stop_postfix()
    assert not port_open(m.host, m.smtp_port)
    m.stop_dovecot()
    assert not port_open(m.host, m.imap_port)
    m.reset()
    assert m.postfix_running() and m.dovecot_running() and m.messages() == []


# --------------------------------------------------------------------------- Request Tracker


@pytest.mark.slow
def test_request_tracker_rest2(request_tracker: RequestTracker):
    rt = request_tracker
    fp = f"smoke-{time.time_ns()}"
    s = rt.session()
    r = s.post(
        f"{rt.rest_url}/ticket",
        data=json.dumps(
            {
                "Queue": rt.queue,
                "Subject": "disk full",
                "Content": "details",
                "CustomFields": {rt.cf_name: fp},
            }
        ),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    tid = int(r.json()["id"])
    query = urllib.parse.urlencode({"query": f"CF.{{{rt.cf_name}}}='{fp}'"})
    found = s.get(f"{rt.rest_url}/tickets?{query}", timeout=30).json()["items"]
    assert [int(t["id"]) for t in found] == [tid]
    assert rt.cf_value(tid) == fp
    rt.comment(tid, "still failing")
    assert rt.comments(tid) == ["still failing"]
    rt.set_status(tid, "resolved")
    assert rt.ticket(tid)["Status"] == "resolved"
    rt.set_status(tid, "open")
    rt.take(tid)
    ticket = rt.ticket(tid)
    assert ticket["Status"] == "open" and ticket["Owner"]["id"] == rt.engineer
    assert (
        http.get(f"{rt.rest_url}/ticket/{tid}", auth=(rt.user, "wrong"), timeout=30).status_code
        == 401
    )
    assert rt.session(token=True).get(f"{rt.rest_url}/ticket/{tid}", timeout=30).status_code == 200
    rt.stop()
    assert not port_open(rt.host, rt.port)
    rt.start()
    assert rt.ticket(tid)["Subject"] == "disk full"


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes(http_server: HTTPTestServer, prometheus_factory):
    http_server.set_response(
        "/metrics",
        body="# HELP watcher_up Up.\n# TYPE watcher_up gauge\nwatcher_up 1\n",
        headers={"Content-Type": "text/plain; version=0.0.4"},
    )
    prom = prometheus_factory([f"127.0.0.1:{http_server.port}"])
    assert prom.wait_for_scrape(timeout=20) == ""
    (sample,) = prom.query("watcher_up")
    assert sample["value"][1] == "1"
    pid = prom.pid
    prom.stop()
    assert pid and not pid_alive(pid)


def test_promtool_check_metrics():
    assert promtool_check_metrics("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n") == (
        True,
        "",
    )
    ok, out = promtool_check_metrics("a_total 1\n")
    assert not ok and "no help text" in out


def test_blackbox_exporter(
    blackbox_exporter: BlackboxExporter, test_pki: TestPKI, http_server_factory
):
    good = http_server_factory(tls=test_pki.valid)
    expired = http_server_factory(tls=test_pki.expired)
    assert blackbox_exporter.probe_success(good.url, "tls")
    assert not blackbox_exporter.probe_success(expired.url, "tls")


def test_wait_for_port_reports_log_tail(tmp_path):
    from .base import ServerStartError

    proc = ManagedProcess(["sh", "-c", "echo boom-marker; exit 3"], tmp_path / "log").start()
    with pytest.raises(ServerStartError, match="boom-marker"):
        wait_for_port("127.0.0.1", free_port(), timeout=5, process=proc)
