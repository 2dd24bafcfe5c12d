"""The ops console against a running watcher: real targets on loopback, a real webhook
receiver for tickets and pages, and Debian's Chromium for what a person sees."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from markupsafe import escape

from tests.servers.base import require_binary, wait_until
from tests.servers.httpd import HTTPTestServer
from tests.support.chromium import open_page
from tests.support.console_rig import Client, Console, start_console
from tests.support.hostile import DOM_QUESTIONS, HOSTILE, LONG
from watcher.core.secret import Secret
from watcher.web import console as console_module
from watcher.web.console import CONSOLE_CSP
from watcher.web.session import Sessions, Throttled

DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"


def page_with(client: Client, path: str, *needles: str) -> str:
    """The page at ``path`` once it shows every one of ``needles``."""

    def ready() -> str | None:
        body = client.get(path).body
        return body if all(n in body for n in needles) else None

    return wait_until(ready, 30, f"{path} to show {needles}")  # type: ignore[no-any-return]


@pytest.fixture
def console(tmp_path: Path, http_server: HTTPTestServer) -> Iterator[Console]:
    receiver = HTTPTestServer().start()
    rig = start_console(tmp_path, http_server, receiver)
    try:
        yield rig
    finally:
        rig.app.shutdown()
        receiver.stop()


def test_the_overview_puts_problems_first_with_deadlines_and_every_check_with_its_bars(
    console: Console,
) -> None:
    incident_id = console.open_incident("billing")
    client = console.client()
    page = page_with(client, "/console", "intranet")
    assert client.get("/console").headers["content-security-policy"] == CONSOLE_CSP
    problems, checks = page.split('id="checks-h"')
    assert f'href="/console/incidents/{incident_id}"' in problems
    assert "respond by" in problems and "in 1h" in problems  # a P1: respond within 2 h
    assert checks.index("billing") < checks.index("intranet")  # failing checks first
    assert checks.count('class="bar"') == 2 * 3  # 24 h and 30 d bars for each check
    assert "Asia/Kolkata" in page and "IST" in page
    assert "Log in" in page and "Acknowledge" not in page  # read-only without a login
    filtered = client.get("/console?status=ok").body.split('id="checks-h"')[1]
    assert "intranet" in filtered and "billing" not in filtered
    by_label = client.get("/console?label=role%3Ddb").body.split('id="checks-h"')[1]
    assert "billing" in by_label and "intranet" not in by_label
    by_priority = client.get("/console?priority=P1").body.split('id="checks-h"')[1]
    assert "billing" in by_priority and "intranet" not in by_priority
    found = client.get("/console?q=BILL").body.split('id="checks-h"')[1]
    assert "billing" in found and "intranet" not in found and "Checks matching: 1;" in found
    assert client.get("/console?status=down").status == 400
    live = json.loads(client.get("/console/live.json?status=fail").body)
    assert {p["id"] for p in live["problems"]} >= {incident_id}
    assert all(c["status"] == "fail" for c in live["checks"].values())


def test_the_incident_and_target_pages_show_deadlines_deliveries_and_checks(
    console: Console,
) -> None:
    incident_id = console.open_incident()
    wait_until(lambda: console.events("/page") or None, 30, "the page to be delivered")
    client = console.client()
    page = page_with(client, f"/console/incidents/{incident_id}", "delivery done")
    for heading in ("Evidence", "Timeline", "Tickets and pages sent", "Recent results"):
        assert f"<h2>{heading}</h2>" in page
    assert "Respond by" in page and "Resolve by" in page and "Senior Product Manager" in page
    incident = console.app.store.incident(incident_id)
    assert incident is not None
    target = client.get(f"/console/targets/{incident.target}")
    assert target.status == 200 and "Open incidents" in target.body and "last 30 d" in target.body
    assert client.get("/console/targets/nobody").status == 404
    assert client.get("/console/incidents/999999").status == 404


def test_acknowledging_from_the_console_reaches_the_state_and_the_pager(
    console: Console,
) -> None:
    incident_id = console.open_incident()
    wait_until(lambda: "page.trigger" in console.events("/page") or None, 30, "the first page")
    client = console.client()
    assert client.login().status == 303
    csrf = client.csrf(f"/console/incidents/{incident_id}")
    answer = client.post(f"/console/incidents/{incident_id}/ack", {"csrf": csrf})
    assert (
        answer.status == 303 and answer.headers["location"] == f"/console/incidents/{incident_id}"
    )
    incident = console.app.store.incident(incident_id)
    assert incident is not None and incident.state == "acknowledged"
    assert incident.acknowledged_by == "console (127.0.0.1)"
    wait_until(
        lambda: "page.acknowledge" in console.events("/page") or None, 30, "the pager to hear"
    )
    wait_until(
        lambda: (
            any(
                b"Acknowledged by console (127.0.0.1) via console" in r.body
                for r in console.receiver.requests
                if r.path == "/ticket" and json.loads(r.body)["event"] == "ticket.comment"
            )
            or None
        ),
        30,
        "the ticket to be told",
    )
    answer = client.post(
        f"/console/incidents/{incident_id}/resolve", {"csrf": csrf, "note": "fixed by hand"}
    )
    assert answer.status == 303
    assert console.app.store.incident(incident_id).state == "resolved"  # type: ignore[union-attr]


def test_a_maintenance_window_and_a_silence_made_from_the_console_are_stored(
    console: Console,
) -> None:
    incident_id = console.open_incident("billing")
    client = console.client()
    client.login()
    csrf = client.csrf()
    answer = client.post(
        "/console/maintenance",
        {
            "csrf": csrf,
            "name": "db patching",
            "label": "role=db",
            "duration": "2h",
            "reason": "patch",
        },
    )
    assert answer.status == 303
    answer = client.post("/console/targets/intranet/silence", {"csrf": csrf, "duration": "30m"})
    assert answer.status == 303 and answer.headers["location"] == "/console/targets/intranet"
    windows = json.loads(client.get("/api/maintenance").body)
    assert {w["name"] for w in windows} == {"db patching", "silence intranet"}
    assert all(w["created_by"] == "console (127.0.0.1)" for w in windows)
    bad = client.post("/console/maintenance", {"csrf": csrf, "name": "x", "targets": "nobody"})
    assert bad.status == 400 and "nobody" in bad.body
    page = page_with(client, "/console", "Maintenance now")
    assert "db patching" in page and 'class="tag maint"' in page

    def held() -> bool | None:
        incident = console.app.store.incident(incident_id)
        return (incident is not None and incident.suppressed == "maintenance") or None

    wait_until(held, 30, "billing's incident to be held by the window")


def test_a_site_wide_outage_is_shown_as_one(tmp_path: Path, http_server: HTTPTestServer) -> None:
    receiver = HTTPTestServer().start()
    outage = (
        "outages:\n          - {name: storefront, targets: [shop, billing], min_failing: 2,"
        " window: 5m, wait: 0s, priority: P1, summary: 'storefront down: {failing} of {total}'}"
    )
    rig = start_console(tmp_path, http_server, receiver, extra=outage)
    try:
        page = page_with(rig.client(), "/console", "site-wide outage")
        problems = page.split('id="checks-h"')[0]
        assert "storefront down" in problems and "2 of 2 targets" in problems
    finally:
        rig.app.shutdown()
        receiver.stop()


def test_hostile_labels_and_probe_output_reach_the_console_only_as_text(
    console: Console,
) -> None:
    incident_id = console.open_incident()
    client = console.client()
    page = page_with(client, "/console/targets/shop", "status fail")
    assert str(escape(HOSTILE + LONG)) in page  # the label, whole
    assert "<script>alert" not in page and "<img" not in page
    for path in ("/console", f"/console/incidents/{incident_id}"):
        body = client.get(path).body
        assert "<script>alert" not in body and "<img" not in body
        assert body.count("<script") == 1  # the console's own, from its own origin
    shop = [i for i in console.app.engine.incidents() if i.target == "shop"]
    if shop:
        body = client.get(f"/console/incidents/{shop[0].id}").body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_a_session_expires_and_failed_logins_are_throttled() -> None:
    now = [0.0]
    sessions = Sessions(Secret("right-token"), clock=lambda: now[0])
    session = sessions.login("right-token", "127.0.0.8")
    assert session is not None and sessions.get(session.id) is session
    assert sessions.csrf_ok(session, session.csrf) and not sessions.csrf_ok(session, "")
    now[0] += 13 * 3600
    assert sessions.get(session.id) is None
    for _ in range(5):
        assert sessions.login("wrong", "127.0.0.9") is None
    with pytest.raises(Throttled):
        sessions.login("right-token", "127.0.0.9")  # even the right token waits
    assert sessions.login("right-token", "127.0.0.8") is not None  # another client does not
    now[0] += 301
    assert sessions.login("right-token", "127.0.0.9") is not None


CONSOLE_DOM = {
    **DOM_QUESTIONS,
    "own_scripts": "[...document.scripts].map(s => s.src)",
    "width": "document.documentElement.scrollWidth",
    "focusable": "document.querySelectorAll('a[href], button, input, select').length",
}


@pytest.mark.slow
def test_chromium_loads_the_console_at_desktop_and_phone_width_with_nothing_from_outside(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chromium = require_binary("chromium")
    monkeypatch.setattr(console_module, "POLL_S", 1)
    incident_id = console.open_incident()
    wait_until(
        lambda: len(console.app.engine.latest()) == 3 or None, 30, "every check's first result"
    )
    client = console.client()
    client.login()
    name, _, value = client.cookie.partition("=")
    cookie = [
        {"name": name, "value": value, "url": console.base, "httpOnly": True, "sameSite": "Strict"}
    ]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    pages = {
        "overview": "/console",
        "incident": f"/console/incidents/{incident_id}",
        "target": "/console/targets/shop",
    }
    for label, path in pages.items():
        for device, width in (("desktop", 1280), ("phone", 390)):
            report = open_page(
                chromium, console.base + path, expressions=CONSOLE_DOM, width=width, cookies=cookie
            )
            assert report.problems == [], (label, device, report.problems)
            outside = [u for u in report.requests if not u.startswith(console.base + "/")]
            assert outside == [], (label, device)
            assert report.values["own_scripts"] == [console.base + "/console/static/console.js"]
            assert report.values["images"] == 0 and report.values["handlers"] == 0
            assert report.values["focusable"] > 3
            if device == "phone":  # nothing wider than the phone but the scrolling tables
                assert report.values["width"] <= width + 1, (label, report.values["width"])
            assert report.png[:4] == b"\x89PNG" and report.pdf[:4] == b"%PDF"
            (shots / f"console-{label}-{device}.png").write_bytes(report.png)
    if os.environ.get("WATCHER_DOCS_IMG"):  # refreshes the screenshots docs/console.md shows
        for png in shots.glob("*.png"):
            shutil.copy(png, DOCS_IMG / png.name)


@pytest.mark.slow
def test_chromium_sees_an_acknowledgement_without_reloading(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    chromium = require_binary("chromium")
    monkeypatch.setattr(console_module, "POLL_S", 1)
    incident_id = console.open_incident()
    polled = threading.Event()
    live = console_module.Console.live

    def watched(self: console_module.Console, request: object) -> object:
        polled.set()
        return live(self, request)  # type: ignore[arg-type]

    monkeypatch.setattr(console_module.Console, "live", watched)
    # Routes were bound at start: the running server calls the bound method it has.
    for route in console.app.web.routes:  # type: ignore[union-attr]
        if route.pattern.pattern == "^/console/live.json$":
            route.handler = lambda request, c=route.handler.__self__: watched(c, request)  # type: ignore[attr-defined]

    def acknowledge() -> None:
        if polled.wait(60):
            console.app.engine.acknowledge(incident_id, by="someone else", source="api")

    worker = threading.Thread(target=acknowledge, daemon=True)
    worker.start()
    wait_for_ack = (
        "new Promise(done => { const start = Date.now(); const t = setInterval(() => {"
        " const rows = document.getElementById('problems');"
        " const text = rows ? rows.textContent : '';"
        " if (text.includes('someone else') || Date.now() - start > 40000) {"
        " clearInterval(t); done(text); } }, 200); })"
    )
    report = open_page(chromium, console.base + "/console", expressions={"rows": wait_for_ack})
    worker.join(5)
    assert "someone else" in report.values["rows"]
    assert report.problems == []
