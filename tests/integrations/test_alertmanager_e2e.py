"""Prometheus -> Alertmanager -> watcher -> Request Tracker, every part real.

Prometheus scrapes a node (a process) the test stops and starts; its rule ``up == 0`` (for 2 s) fires
to Alertmanager, which posts to ``watcher run``'s ``/api/alertmanager`` with its bearer
token, grouped and repeated every few seconds; watcher tickets the alert in RT 5. The
test kills the watcher with SIGKILL between firing and resolve. Timings are printed
(``pytest -s``) and written to ``alertmanager-run.json`` beside the config.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integrations.site import unique_site
from tests.servers.alertmanager import Alertmanager, ScrapeTarget, alerting_prometheus
from tests.servers.base import LOOPBACK, free_port, make_workdir
from tests.servers.httpd import HTTPTestServer
from tests.servers.rt import RequestTracker
from tests.support.daemon import Daemon

pytestmark = pytest.mark.slow

TOKEN = "am-webhook-token-7f3a"
RULE = {
    "alert": "NodeDown",
    "expr": 'up{job="node"} == 0',
    "for": "2s",
    "labels": {"severity": "critical"},
    "annotations": {
        "summary": "node {{ $labels.instance }} is down",
        "description": "Prometheus cannot scrape {{ $labels.instance }} (job {{ $labels.job }}).",
        "runbook_url": "http://127.0.0.1/runbooks/node-down",
    },
}


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _cli(directory: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "watcher.cli", *args, "-c", "watcher.yml"],
        cwd=directory,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _incidents(daemon: Daemon) -> list[dict[str, Any]]:
    status, body = daemon.get("/api/incidents")
    assert status == 200, body
    return [i for i in json.loads(body) if i["kind"] == "alertmanager"]


def test_a_prometheus_alert_through_alertmanager_makes_one_rt_ticket_across_repeats_and_a_kill(
    tmp_path: Path, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    site = unique_site("prom")
    node = ScrapeTarget(make_workdir("node")).start()
    instance = node.address
    port = free_port()
    (tmp_path / "watcher.yml").write_text(
        f"""
site: {site}
state: state.db
listen: 127.0.0.1:{port}
rules: [default, alertmanager]
alertmanager:
  token: "${{AM_TOKEN}}"
targets:
  - name: node1
    host: {LOOPBACK}
    description: the node Prometheus scrapes
integrations:
  tickets:
    - request_tracker: {{url: "{rt.url}", user: {rt.user}, password: "${{RT_PASSWORD}}", queue: {rt.queue}}}
"""
    )
    env = {"RT_PASSWORD": rt.password, "AM_TOKEN": TOKEN}
    daemon = Daemon(tmp_path / "watcher.yml", port, env=env).start()
    am = Alertmanager(
        make_workdir("am"),
        f"http://127.0.0.1:{port}/api/alertmanager",
        token=TOKEN,
        group_wait="1s",
        group_interval="2s",
        repeat_interval="3s",
    ).start()
    prometheus = alerting_prometheus(make_workdir("prom"), [instance], am, [RULE]).start()
    timings: dict[str, float] = {}
    try:
        prometheus.wait_for_scrape("node", timeout=30)
        node.stop()
        t0 = time.monotonic()

        incident = daemon.wait_for(
            lambda: next((i for i in _incidents(daemon) if i["state"] == "open"), None),
            90,
            "the alert's incident to open",
        )
        timings["node stopped -> incident open (s)"] = time.monotonic() - t0
        fingerprint = incident["fingerprint"]
        assert incident["target"] == "node1"  # instance 127.0.0.1:PORT is node1's host
        assert incident["priority"] == "P1"

        def tickets() -> list[dict[str, Any]]:
            return rt.tickets(
                f"CF.{{{rt.cf_name}}} = '{fingerprint}'", fields="Subject,Status,Priority"
            )

        (ticket,) = daemon.wait_for(tickets, 60, "the RT ticket")
        timings["node stopped -> RT ticket (s)"] = time.monotonic() - t0
        assert ticket["Subject"] == f"[P1][{site}] node1: node {instance} is down"
        assert int(ticket["Priority"]) == 100
        body = "\n".join(rt.comments(int(ticket["id"]), types=("Create",)))
        assert "Runbook: http://127.0.0.1/runbooks/node-down" in body
        assert "Source: http://" in body and "/graph?g0.expr=" in body  # the generatorURL

        explained = _cli(tmp_path, env, "explain", "node1")
        assert "alertmanager NodeDown node critical: FAIL node" in explained
        assert "rule alert-critical [P1]" in explained and "HOLDS" in explained
        tested = _cli(tmp_path, env, "test-integration", "alertmanager")
        assert "a sample Alertmanager post is accepted (dry run" in tested
        assert "WatcherReceiverTest on watcher-test: P1 by alert-critical" in tested

        def duplicates() -> float:
            return _metric(
                daemon.get("/metrics")[1],
                "watcher_alertmanager_alerts_total",
                outcome="duplicate",
                status="firing",
            )

        daemon.wait_for(lambda: duplicates() >= 2, 60, "two of Alertmanager's repeats")
        assert len(tickets()) == 1
        repeats_before_kill = duplicates()

        daemon.kill()  # SIGKILL between firing and resolve
        timings["killed at (s after stop)"] = time.monotonic() - t0
        time.sleep(2)  # Alertmanager's next repeat finds nobody listening and retries
        daemon.start()
        daemon.wait_for(lambda: duplicates() >= 1, 60, "a repeat after the restart")
        assert [i["fingerprint"] for i in _incidents(daemon)] == [fingerprint]
        assert len(tickets()) == 1

        node.start()
        t1 = time.monotonic()
        daemon.wait_for(lambda: _incidents(daemon)[0]["state"] == "resolved", 90, "the resolve")
        timings["node back -> incident resolved (s)"] = time.monotonic() - t1
        daemon.wait_for(lambda: tickets()[0]["Status"] == "resolved", 60, "the ticket resolved")
        timings["node back -> RT ticket resolved (s)"] = time.monotonic() - t1

        all_site_tickets = rt.tickets(f"Subject LIKE '[{site}]'", fields="Subject,Status")
        assert len(all_site_tickets) == 1
        assert [i["fingerprint"] for i in _incidents(daemon)] == [fingerprint]
        metrics = daemon.get("/metrics")[1]
        run = {
            "site": site,
            "rt_ticket": ticket["id"],
            "rt_tickets_for_site": len(all_site_tickets),
            "incidents": len(_incidents(daemon)),
            "repeats_deduplicated_before_kill": repeats_before_kill,
            "posts_received_after_restart": _metric(
                metrics, "watcher_alertmanager_posts_received_total"
            ),
            "timings": {k: round(v, 1) for k, v in timings.items()},
        }
        (tmp_path / "alertmanager-run.json").write_text(json.dumps(run, indent=2))
        print("\nPrometheus -> Alertmanager -> watcher -> RT:", json.dumps(run, indent=2))
        assert re.search(r"resolved", "\n".join(rt.comments(int(ticket["id"]))), re.I)
    finally:
        daemon.stop()
        prometheus.stop()
        am.stop()
        node.stop()


def test_alertmanager_webhook_posts_carry_the_bearer_token(tmp_path: Path) -> None:
    """What the real Alertmanager sends: version 4, the token, the documented fields."""
    hook = HTTPTestServer()
    hook.set_response("/hook", body="{}")
    hook.start()
    am = Alertmanager(make_workdir("am"), f"{hook.url}/hook", token=TOKEN).start()
    try:
        alert = [{"labels": {"alertname": "Probe", "instance": "db1:9100", "severity": "info"}}]
        request = urllib.request.Request(
            f"{am.url}/api/v2/alerts",
            data=json.dumps(alert).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()
        deadline = time.monotonic() + 30
        while not hook.requests_for("/hook") and time.monotonic() < deadline:
            time.sleep(0.1)
        (sent, *_) = hook.requests_for("/hook")
        assert sent.headers.get("Authorization") == f"Bearer {TOKEN}"
        payload = json.loads(sent.body)
        assert payload["version"] == "4" and payload["status"] == "firing"
        assert {"groupLabels", "truncatedAlerts", "groupKey"} <= set(payload)
        (got,) = payload["alerts"]
        assert got["labels"]["alertname"] == "Probe" and got["fingerprint"]
        assert got["endsAt"] == "0001-01-01T00:00:00Z"
    finally:
        am.stop()
        hook.stop()
