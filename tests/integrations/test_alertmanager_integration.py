"""The ``alertmanager`` integration against a real Alertmanager 0.25 (Debian), read back
with ``amtool alert query`` and ``/api/v2/alerts``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.alertmanager import AlertmanagerIntegration
from integrations.base import IntegrationEnv, PermanentError, TicketContent, TransientError
from tests.integrations.site import Site, site_config, unique_site
from tests.servers.alertmanager import Alertmanager
from tests.servers.base import free_port, make_workdir
from tests.servers.httpd import HTTPTestServer
from watcher.delivery.httpclient import HttpClients

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def alertmanager() -> Iterator[Alertmanager]:
    # Its own receiver is a sink nobody reads: these tests look at Alertmanager's alerts.
    hook = HTTPTestServer()
    hook.start()
    am = Alertmanager(make_workdir("am-out"), f"{hook.url}/hook").start()
    yield am
    am.stop()
    hook.stop()


def _site(tmp_path: Path, am: Alertmanager, **options: str) -> Site:
    settings = json.dumps({"url": am.url, **options})
    return Site(
        tmp_path, site_config(unique_site("amout"), f"  tickets:\n    - alertmanager: {settings}")
    )


def _wait(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def test_amtool_sees_the_incident_then_not_after_recovery(
    tmp_path: Path, alertmanager: Alertmanager
) -> None:
    site = _site(tmp_path, alertmanager)
    try:
        name = site.config.site
        site.smtp_refused()
        assert site.deliver()
        incident = site.incident()
        shown = alertmanager.amtool_query(f"site={name}")
        assert (
            "WatcherIncident" in shown and "SMTP port not answering (connection refused)" in shown
        )
        (alert,) = alertmanager.alerts(f'site="{name}"')
        assert alert["labels"] == {
            "alertname": "WatcherIncident",
            "site": name,
            "target": "mail1",
            "check": "tcp",
            "priority": "P2",
            "severity": "error",
            "watcher_fingerprint": incident.fingerprint,
        }
        assert alert["annotations"]["runbook_url"] == "https://wiki.acme.example/runbooks/smtp-down"

        site.smtp_ok()
        site.smtp_ok()
        assert site.incident().state == "resolved"
        assert site.deliver()
        assert _wait(lambda: "WatcherIncident" not in alertmanager.amtool_query(f"site={name}"))
        assert alertmanager.alerts(f'site="{name}"') == []
    finally:
        site.close()


def test_a_live_alert_is_posted_again_before_its_ends_at_lapses(
    alertmanager: Alertmanager,
) -> None:
    name = unique_site("amlive")
    config = AlertmanagerIntegration.Config(url=alertmanager.url, ends_after="3s")  # type: ignore[arg-type]
    env = IntegrationEnv.of(_model(name), HttpClients())
    integration = AlertmanagerIntegration(config, env, "tickets")
    try:
        integration.open(_content(name))
        first = alertmanager.alerts(f'site="{name}"')[0]["endsAt"]
        time.sleep(4.5)  # past the first endsAt: only the re-posts keep it active
        (alert,) = alertmanager.alerts(f'site="{name}"')
        assert alert["status"]["state"] == "active"
        assert alert["endsAt"] > first
    finally:
        integration.close()


def test_after_a_restart_the_live_alerts_are_read_back_and_kept_posted(
    alertmanager: Alertmanager,
) -> None:
    name = unique_site("amback")
    config = AlertmanagerIntegration.Config(url=alertmanager.url, ends_after="3s")  # type: ignore[arg-type]
    first = AlertmanagerIntegration(
        config, IntegrationEnv.of(_model(name), HttpClients()), "tickets"
    )
    first.open(_content(name))
    first.close()  # the watcher stops; the alert would lapse in 3 s
    again = AlertmanagerIntegration(
        config, IntegrationEnv.of(_model(name), HttpClients()), "tickets"
    )
    try:
        time.sleep(4.5)
        (alert,) = alertmanager.alerts(f'site="{name}"')
        assert alert["status"]["state"] == "active"
    finally:
        again.close()


def test_a_priority_change_resolves_the_alert_of_the_old_priority(
    alertmanager: Alertmanager,
) -> None:
    name = unique_site("amprio")
    config = AlertmanagerIntegration.Config(url=alertmanager.url)  # type: ignore[arg-type]
    integration = AlertmanagerIntegration(
        config, IntegrationEnv.of(_model(name), HttpClients()), "tickets"
    )
    try:
        ref = integration.open(_content(name, priority="P2"))
        integration.set_priority(ref, _content(name, priority="P1"))
        assert _wait(
            lambda: (
                [a["labels"]["priority"] for a in alertmanager.alerts(f'site="{name}"')] == ["P1"]
            )
        )
    finally:
        integration.close()


def test_an_unreachable_alertmanager_is_transient_and_a_refusal_permanent() -> None:
    name = unique_site("amdown")
    env = IntegrationEnv.of(_model(name), HttpClients())
    down = AlertmanagerIntegration(
        AlertmanagerIntegration.Config(url=f"http://127.0.0.1:{free_port()}"),
        env,
        "tickets",  # type: ignore[arg-type]
    )
    refusing = HTTPTestServer()
    refusing.set_response("/api/v2/alerts", status=400, body='"labels must not be empty"')
    refusing.start()
    bad = AlertmanagerIntegration(
        AlertmanagerIntegration.Config(url=refusing.url),
        env,
        "tickets",  # type: ignore[arg-type]
    )
    try:
        with pytest.raises(TransientError):
            down.open(_content(name))
        with pytest.raises(PermanentError, match="HTTP 400"):
            bad.open(_content(name))
    finally:
        down.close()
        bad.close()
        refusing.stop()


def test_watcher_test_integration_posts_and_resolves_a_test_alert(
    tmp_path: Path, alertmanager: Alertmanager
) -> None:
    name = unique_site("amtest")
    (tmp_path / "watcher.yml").write_text(
        f"site: {name}\nstate: state.db\nlisten: null\ntargets: []\n"
        f'integrations:\n  tickets:\n    - alertmanager: {{url: "{alertmanager.url}"}}\n'
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "watcher.cli",
            "test-integration",
            "alertmanager",
            "-c",
            "watcher.yml",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "test ticket created" in proc.stdout and "test ticket resolved" in proc.stdout
    # resolved (endsAt = now): Alertmanager no longer lists it
    assert _wait(lambda: alertmanager.alerts(f'site="{name}"') == [])


def _model(site: str):  # type: ignore[no-untyped-def]
    from watcher.config.models import WatcherConfig

    return WatcherConfig(site=site)


def _content(site: str, *, priority: str = "P2") -> TicketContent:
    return TicketContent(
        incident_id=1,
        fingerprint=f"w{abs(hash(site)) % 10**12:012d}",
        site=site,
        target="db1",
        host=None,
        priority=priority,
        priority_name="High",
        summary="db1: replication lag 40s",
        subject=f"[{priority}][{site}] db1: replication lag 40s",
        body="...",
        state="open",
        check="command replication",
    )
