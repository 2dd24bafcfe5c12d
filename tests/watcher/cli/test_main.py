"""The command line: incidents, explain and test-integration against real servers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.servers.base import free_port
from tests.servers.httpd import HTTPTestServer
from tests.servers.mail import SmtpSink
from tests.support.daemon import Daemon
from tests.support.rig import Rig


def watcher(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _config(sink: SmtpSink, http: HTTPTestServer, listen: str = "null") -> str:
    return f"""
    site: acme
    state: state.db
    listen: {listen}
    smtp: {{host: 127.0.0.1, port: {sink.port}}}
    contacts: {{hotline: [{{email: emergency@support.example}}]}}
    integrations:
      tickets: [{{email: {{to: [support@helpdesk.example]}}}}]
      paging: [{{email: {{to: hotline}}}}]
    defaults: {{interval: 300ms}}
    targets:
      - name: shop
        probes: [{{http: {{url: "{http.url_for("/")}"}}}}]
    """


def test_incidents_list_show_ack_and_resolve_without_a_daemon(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    rig = Rig(tmp_path, _config(smtp_sink, http_server))
    http_server.set_default(status=500)
    rig.rounds(3)
    rig.close()
    config = str(tmp_path / "watcher.yml")
    listed = json.loads(watcher("incidents", "list", "--json", "-c", config).stdout)
    assert [(i["id"], i["state"], i["priority"]) for i in listed] == [(1, "open", "P1")]
    assert listed[0]["response_due"] and listed[0]["delivery"] == "done"
    table = watcher("incidents", "-c", config).stdout
    assert "shop: web service down" in table and "RESPOND BY" in table
    shown = json.loads(watcher("incidents", "show", "1", "--json", "-c", config).stdout)
    assert [e["kind"] for e in shown["timeline"]] == ["opened", "paged"]
    assert {d["action"] for d in shown["deliveries"]} == {"open", "page"}

    done = watcher("incidents", "ack", "1", "--by", "asha", "-c", config)
    assert done.returncode == 0 and "acknowledged" in done.stdout
    # the page is acknowledged: the mail pager sends nothing for that, the ticket gets a comment
    assert any(
        m.subject.startswith("Re: [P1][acme]") and "Acknowledged by asha" in m.body
        for m in smtp_sink.messages
    )
    done = watcher("incidents", "resolve", "1", "--note", "restarted nginx", "-c", config)
    assert "resolved" in done.stdout
    shown = json.loads(watcher("incidents", "show", "1", "--json", "-c", config).stdout)
    assert shown["state"] == "resolved" and shown["acknowledged_by"] == "asha"


def test_ack_goes_through_the_running_daemon(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    port = free_port()
    text = (
        textwrap.dedent(_config(smtp_sink, http_server, f"127.0.0.1:{port}"))
        + "rules: [default, fast.yml]\n"
    )
    (tmp_path / "watcher.yml").write_text(text)
    (tmp_path / "fast.yml").write_text(
        "rules:\n  - {name: http-down, probe: http, when: failed, after: 2, priority: P1}\n"
    )
    http_server.set_default(status=500)
    daemon = Daemon(tmp_path / "watcher.yml", port).start()
    config = str(tmp_path / "watcher.yml")
    try:
        daemon.wait_for(
            lambda: json.loads(daemon.get("/api/incidents?state=open")[1]), 30, "an open incident"
        )
        done = watcher("incidents", "ack", "1", "--by", "ravi", "-c", config)
        assert done.returncode == 0 and "acknowledged" in done.stdout, done.stderr
        state = json.loads(daemon.get("/api/incidents/1")[1])
        assert state["state"] == "acknowledged" and state["acknowledged_by"] == "ravi"
    finally:
        daemon.stop()


def test_explain_shows_rules_values_and_verdicts(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    (tmp_path / "watcher.yml").write_text(
        f"site: acme\nstate: state.db\nlisten: null\ntargets:\n  - name: shop\n    probes: [{{http: {{url: '{http_server.url_for('/')}', max_latency: 5s}}}}]\n"
    )
    http_server.set_default(status=503)
    out = watcher("explain", "shop", "-c", str(tmp_path / "watcher.yml")).stdout
    assert "http: FAIL HTTP 503" in out
    assert (
        "rule http-down [P1] when \"failed and reason not in ('slow', 'cert_expiring')\": HOLDS"
        in out
    )
    assert "must hold for 0:02:00" in out
    assert "rule http-slow [P3]" in out and "does not hold" in out


def test_test_integration_sends_a_marked_test_and_reports(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    (tmp_path / "watcher.yml").write_text(textwrap.dedent(_config(smtp_sink, http_server)))
    done = watcher("test-integration", "email", "-c", str(tmp_path / "watcher.yml"))
    assert done.returncode == 0, done.stderr
    assert (
        "tickets/email: test ticket created" in done.stdout
        and "paging/email: test page sent" in done.stdout
    )
    subjects = [m.subject for m in smtp_sink.wait_for_messages(3)]
    assert "[TEST][acme] watcher: integration test, please ignore" in subjects
    assert any(s.startswith("[Emergency] [TEST][acme]") for s in subjects)
    smtp_sink.stop()
    failed = watcher("test-integration", "tickets/email", "-c", str(tmp_path / "watcher.yml"))
    assert failed.returncode == 1 and "FAILED (temporary)" in failed.stderr


def test_incidents_table_shows_each_incidents_ticket_reference(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    rig = Rig(tmp_path, _config(smtp_sink, http_server))
    http_server.set_default(status=500)
    rig.rounds(3)
    rig.close()
    config = str(tmp_path / "watcher.yml")
    listed = json.loads(watcher("incidents", "--json", "-c", config).stdout)
    refs = [t["external_id"] for t in listed[0]["tickets"]]
    assert refs and all(refs)
    table = watcher("incidents", "-c", config).stdout
    assert "TICKET" in table.splitlines()[0]
    assert refs[0] in table.splitlines()[1]


def test_incidents_says_so_when_nothing_is_open(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    rig = Rig(tmp_path, _config(smtp_sink, http_server))
    rig.rounds(1)
    rig.close()
    config = str(tmp_path / "watcher.yml")
    done = watcher("incidents", "-c", config)
    assert done.returncode == 0 and done.stdout.strip() == "no open incidents"
    assert watcher("incidents", "--all", "-c", config).stdout.strip() == "no incidents"
    assert json.loads(watcher("incidents", "--json", "-c", config).stdout) == []


def test_read_only_commands_run_with_unset_secrets_and_warn_once(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    rig = Rig(tmp_path, _config(smtp_sink, http_server))
    http_server.set_default(status=500)
    rig.rounds(3)
    rig.close()
    path = tmp_path / "watcher.yml"
    path.write_text(
        path.read_text().replace(
            f"port: {smtp_sink.port}}}", f'port: {smtp_sink.port}, password: "${{SMTP_PW_UNSET}}"}}'
        )
    )
    config = str(path)
    assert "SMTP_PW_UNSET" in path.read_text()
    listed = watcher("incidents", "-c", config)
    assert listed.returncode == 0, listed.stderr
    assert "shop: web service down" in listed.stdout
    assert listed.stderr.count("SMTP_PW_UNSET not set") == 1
    assert watcher("incidents", "show", "1", "-c", config).returncode == 0
    assert watcher("explain", "shop", "-c", config).returncode == 0
    assert watcher("maintenance", "-c", config).returncode == 0
    assert watcher("audit", "--format", "md", "-c", config).returncode == 0
    # what delivers or probes still needs every secret; validate lists it as a problem
    for command in (
        ("incidents", "ack", "1"),
        ("once",),
        ("explain", "shop", "--run"),
        ("validate",),
    ):
        done = watcher(*command, "-c", config)
        assert done.returncode == 2 and "SMTP_PW_UNSET is not set" in done.stderr, command
