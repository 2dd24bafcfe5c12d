"""``watcher run`` as a real process: the shipped config, signals, crashes, /metrics."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.servers.base import free_port
from tests.servers.httpd import HTTPTestServer
from tests.servers.mail import SmtpSink
from tests.servers.prometheus import promtool_check_metrics
from tests.support.daemon import Daemon
from tests.support.helpers import write_config

ROOT = Path(__file__).resolve().parents[3]


def _shipped_config(tmp_path: Path, port: int) -> Path:
    text = (ROOT / "watcher.yml").read_text().replace("9177", str(port))
    text = text.replace("interval: 30s", "interval: 1s")
    path = tmp_path / "watcher.yml"
    path.write_text(text)
    return path


def test_the_shipped_config_runs_probes_this_machine_and_serves_metrics(tmp_path: Path) -> None:
    port = free_port()
    daemon = Daemon(_shipped_config(tmp_path, port), port).start()
    try:

        def all_checked() -> list[dict] | None:
            status, body = daemon.get("/api/results")
            results = json.loads(body) if status == 200 else []
            return results if len(results) >= 4 else None

        results = daemon.wait_for(all_checked, 30, "every shipped check to run")
        assert {r["status"] for r in results} == {"ok"}, results
        status, metrics = daemon.get("/metrics")
        assert status == 200
        assert 'watcher_check_success{target="this-host",check="disk"} 1' in metrics
        ok, output = promtool_check_metrics(metrics)
        assert ok, output
        status, html = daemon.get("/")
        assert status == 200 and "this-host" in html and "<script" not in html
    finally:
        assert daemon.stop() == 0
    assert "stopped" in daemon.log()


def test_watcher_once_prints_json_and_exits_by_status(tmp_path: Path) -> None:
    config = _shipped_config(tmp_path, free_port())
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "once", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    results = json.loads(done.stdout)
    by_probe = {r["probe"]: r for r in results}
    assert by_probe["disk"]["status"] == "ok" and by_probe["disk"]["metrics"]["used_percent"] > 0
    assert by_probe["uptime"]["metrics"]["uptime_s"] > 0
    assert by_probe["watcher-port"]["status"] == "fail"  # no daemon listens in this test
    assert done.returncode == 1


def _incident_config(tmp_path: Path, port: int, http: HTTPTestServer, sink: SmtpSink) -> Path:
    return write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{port}
        api_token: "${{WATCHER_API_TOKEN}}"
        smtp: {{host: 127.0.0.1, port: {sink.port}}}
        contacts: {{hotline: [{{email: emergency@support.example}}]}}
        integrations:
          tickets: [{{email: {{to: [support@helpdesk.example]}}}}]
          paging: [{{email: {{to: hotline}}}}]
        defaults: {{interval: 300ms, timeout: 2s}}
        rules: [default, fast.yml]
        targets:
          - name: shop
            probes: [{{http: {{url: "{http.url_for("/")}"}}}}]
        """,
        extra={
            "fast.yml": "rules:\n  - {name: http-down, probe: http, when: failed, after: 2, priority: P1, summary: '{target}: down'}\n"
        },
    )


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_a_watcher_killed_before_delivery_delivers_exactly_once_after_restart(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    port = free_port()
    config = _incident_config(tmp_path, port, http_server, smtp_sink)
    env = {"WATCHER_API_TOKEN": "tok-4d1c0a1f2e"}
    smtp_sink.stop()  # the mail relay is down: the actions must wait in the outbox
    http_server.set_default(status=500)
    daemon = Daemon(config, port, env=env).start()
    db = tmp_path / "state.db"
    daemon.wait_for(
        lambda: _rows(db, "SELECT count(*) FROM outbox WHERE state='pending'")[0][0] == 2,
        30,
        "two queued actions",
    )
    daemon.kill()  # SIGKILL: no chance to clean up
    assert _rows(db, "SELECT action, state FROM outbox ORDER BY id") == [
        ("open", "pending"),
        ("page", "pending"),
    ]
    smtp_sink.start()
    http_server.set_default(status=200)
    daemon = Daemon(config, port, env=env).start()
    try:
        daemon.wait_for(
            lambda: _rows(db, "SELECT count(*) FROM outbox WHERE state='done'")[0][0] >= 2,
            60,
            "delivery",
        )
        daemon.wait_for(
            lambda: _rows(db, "SELECT state FROM incidents")[0][0] == "resolved", 30, "recovery"
        )
        daemon.wait_for(
            lambda: _rows(db, "SELECT count(*) FROM outbox WHERE state!='done'")[0][0] == 0,
            60,
            "resolve mails",
        )
    finally:
        daemon.stop()
    subjects = sorted(m.subject.split(" ")[0] for m in smtp_sink.messages)
    assert subjects == ["Re:", "[Emergency]", "[P1][acme]", "[Resolved]"], subjects
    assert _rows(db, "SELECT count(*) FROM incidents") == [(1,)]


def test_the_api_acknowledges_with_a_token_and_refuses_without_and_open_includes_acknowledged(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    port = free_port()
    token = "tok-7e2b9c41aa"
    http_server.set_default(status=500)
    daemon = Daemon(
        _incident_config(tmp_path, port, http_server, smtp_sink),
        port,
        env={"WATCHER_API_TOKEN": token},
    ).start()
    try:

        def opened() -> int | None:
            status, body = daemon.get("/api/incidents?state=open")
            items = json.loads(body)
            return items[0]["id"] if items else None

        incident_id = daemon.wait_for(opened, 30, "an open incident")
        assert daemon.post(f"/api/incidents/{incident_id}/ack")[0] == 401
        assert daemon.post(f"/api/incidents/{incident_id}/ack", token="wrong-token")[0] == 401
        status, body = daemon.post(f"/api/incidents/{incident_id}/ack", {"by": "asha"}, token=token)
        assert status == 200 and json.loads(body)["state"] == "acknowledged"
        status, body = daemon.get(f"/api/incidents/{incident_id}")
        timeline = [e["kind"] for e in json.loads(body)["timeline"]]
        assert "acknowledged" in timeline
        # open means not resolved: an acknowledged incident is still listed
        for state in ("open", "acknowledged"):
            listed = json.loads(daemon.get(f"/api/incidents?state={state}")[1])
            assert [i["id"] for i in listed] == [incident_id], state
        assert json.loads(daemon.get("/api/incidents?state=resolved")[1]) == []
        status, body = daemon.get("/api/incidents?state=closed")
        assert status == 400 and "acknowledged" in body
        assert token not in daemon.get("/metrics")[1] and token not in daemon.log()
    finally:
        daemon.stop()


def test_sighup_reloads_a_good_config_and_refuses_a_bad_one(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    port = free_port()
    base = f"site: acme\nstate: state.db\nlisten: 127.0.0.1:{port}\ndefaults: {{interval: 300ms}}\ntargets:\n"
    one = base + f"  - {{name: a, probes: [{{http: {{url: '{http_server.url_for('/a')}'}}}}]}}\n"
    config = write_config(tmp_path, one)
    daemon = Daemon(config, port).start()
    try:

        def targets() -> set[str]:
            return {r["target"] for r in json.loads(daemon.get("/api/results")[1])}

        daemon.wait_for(lambda: targets() == {"a"}, 30, "target a")
        config.write_text(base + "  - {name: a, probes: [{htpp: {}}]}\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda: "config reload refused" in daemon.log(), 30, "the refusal")
        assert re.search(r"watcher\.yml:\d+:\d+: .*unknown probe kind 'htpp'", daemon.log())
        assert daemon.get("/healthz")[0] == 200
        config.write_text(
            one + f"  - {{name: b, probes: [{{http: {{url: '{http_server.url_for('/b')}'}}}}]}}\n"
        )
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda: targets() == {"a", "b"}, 30, "target b after reload")
    finally:
        assert daemon.stop() == 0


def test_prometheus_scrapes_the_metrics_endpoint(tmp_path: Path, prometheus_factory) -> None:
    port = free_port()
    daemon = Daemon(_shipped_config(tmp_path, port), port).start()
    try:
        prometheus = prometheus_factory([f"127.0.0.1:{port}"], job="watcher")
        assert prometheus.wait_for_scrape("watcher", timeout=60) == ""

        def scraped() -> list:
            return prometheus.query('watcher_check_success{check="disk"}')

        daemon.wait_for(scraped, 30, "a probe metric in Prometheus")
    finally:
        daemon.stop()


def test_a_fresh_start_says_when_the_first_results_come(tmp_path: Path) -> None:
    port = free_port()
    # first runs are spread over one interval: at a day, none runs while this test looks
    config = write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{port}
        defaults: {{interval: 1d}}
        targets:
          - {{name: shop, probes: [{{tcp: {{host: 127.0.0.1, port: {free_port()}}}}}]}}
          - {{name: mail, probes: [{{tcp: {{host: 127.0.0.1, port: {free_port()}}}}}]}}
        """,
    )
    daemon = Daemon(config, port).start()
    try:
        status, page = daemon.get("/")
        assert status == 200 and "2 checks not run yet since the start: first results in" in page
        with urllib.request.urlopen(daemon.url("/api/results"), timeout=5) as response:
            assert json.loads(response.read()) == []
            assert "2 checks not run yet" in response.headers["Watcher-Waiting"]
    finally:
        daemon.stop()
