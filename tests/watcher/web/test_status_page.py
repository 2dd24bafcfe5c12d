"""The status page shows what targets, probes and maintenance windows say as text only:
every field that reaches it, fed markup, quotes, ampersands and long unicode."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from markupsafe import escape

from tests.servers.base import free_port, require_binary, wait_until
from tests.servers.httpd import HTTPTestServer
from tests.support.chromium import open_page
from tests.support.helpers import config_from, result, write_config
from tests.support.hostile import DOM_QUESTIONS, HOSTILE, LONG, Poisoner
from watcher.app.daemon import App
from watcher.engine.incident import Incident
from watcher.engine.maintenance import MaintenanceConfig, Window
from watcher.web.status_page import STATUS_CSP, render_status_page

NOW = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
SHOWN = {
    "site",
    "Incident.priority",
    "Incident.state",
    "Incident.target",
    "Incident.summary",
    "Incident.message",
    "Incident.suppressed_why",
    "Result.target",
    "Result.probe",
    "Result.labels[path]",
    "Result.status",
    "Result.message",
    "window name",
    "window target",
    "window label name",
    "window label value",
    "window reason",
}


def _incident(number: int, **fields: object) -> Incident:
    return Incident(
        fingerprint=f"f{number}",
        site="acme",
        target="shop",
        group="http",
        probe="http",
        kind="http",
        id=number,
        state="open",
        priority="P1",
        summary="shop down",
        message="HTTP 502",
        response_due=NOW,
        resolve_due=NOW + timedelta(hours=4),
        **fields,  # type: ignore[arg-type]
    )


def _hostile_page(tmp_path: Path) -> tuple[str, Poisoner]:
    calendar = config_from(
        tmp_path,
        "site: acme\nstate: state.db\nlisten: null\ntargets: [{name: shop, probes: [{tcp: {port: 1}}]}]\n",
        environ={},
    ).calendar
    poison = Poisoner()
    summarised = poison.poison(_incident(1))
    # with no summary the page shows the message instead
    bare = dataclasses.replace(poison.poison(_incident(2, suppressed="maintenance")), summary="")
    results = poison.poison([result("shop", "disk", labels={"path": "/var"}, at=NOW)])
    window = MaintenanceConfig(
        name=poison.text("window name", long=False),
        targets=[poison.text("window target")],
        labels={poison.text("window label name", long=False): poison.text("window label value")},
        reason=poison.text("window reason"),
        start=NOW,
        duration="2h",  # type: ignore[arg-type]
    )
    page = render_status_page(
        site=poison.text("site"),
        calendar=calendar,
        targets=1,
        incidents=[summarised, bare],
        maintenance=[(Window(window, "UTC"), NOW + timedelta(hours=2))],
        shown=results,
        matched=2,
        everything=results,
    )
    return page, poison


def test_every_field_on_the_status_page_is_shown_escaped_and_whole(tmp_path: Path) -> None:
    page, poison = _hostile_page(tmp_path)
    assert "<script" not in page and "<img" not in page
    assert poison.shown(page) >= SHOWN  # and each of them only in its escaped form
    assert "Showing 1 of 2" in page


@pytest.mark.slow
def test_chromium_finds_no_element_injected_into_the_status_page(tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    page, _ = _hostile_page(tmp_path)
    path = tmp_path / "status.html"
    path.write_text(page, encoding="utf-8")  # no policy header from a file: markup would run
    report = open_page(chromium, path, expressions=DOM_QUESTIONS)
    assert report.values["scripts"] == 0
    assert report.values["images"] == 0
    assert report.values["handlers"] == 0
    # as text: the heading, four cells of each incident, the window's line, four result
    # cells; as attribute values, whole: two rows' classes and notes, the status's class
    assert (report.values["as_text"], report.values["in_attributes"]) == (14, 5)
    assert report.problems == []


def test_the_served_page_escapes_probe_messages_and_posted_windows_under_a_strict_policy(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    http_server.set_default(status=200, body="<b>hello</b>")
    port = free_port()
    contains = json.dumps(HOSTILE, ensure_ascii=False)
    config = write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{port}
        api_token: "a-token-for-the-status-page-test"
        defaults: {{interval: 200ms}}
        targets:
          - name: shop
            probes:
              - http: {{url: "{http_server.url_for("/")}", contains: {contains}}}
        """,
    )
    app = App(config)
    app.start()
    base = f"http://127.0.0.1:{port}"
    try:
        name, reason = f"release {HOSTILE}", f"rollout {HOSTILE}{LONG}"
        posted = urllib.request.Request(
            base + "/api/maintenance",
            data=json.dumps(
                {"name": name, "targets": ["shop"], "duration": "1h", "reason": reason}
            ).encode(),
            headers={
                "Authorization": "Bearer a-token-for-the-status-page-test",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(posted, timeout=10) as answer:
            assert answer.status == 201

        def page() -> tuple[dict[str, str], str] | None:
            with urllib.request.urlopen(base + "/", timeout=10) as answer:
                text = answer.read().decode()
                headers = dict(answer.headers)
            return (headers, text) if "Maintenance now" in text and "fail" in text else None

        headers, text = wait_until(page, 30, "the window and a failed check on the page")  # type: ignore[misc]
    finally:
        app.shutdown()
    assert headers["Content-Security-Policy"] == STATUS_CSP
    assert "script-src" not in STATUS_CSP and "default-src 'none'" in STATUS_CSP
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert f"<li>{escape(name)}: shop until " in text
    assert f"({escape(reason)})</li>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text.split("Latest results")[1]


def test_the_status_page_shows_every_time_in_the_sites_zone_named_once(tmp_path: Path) -> None:
    calendar = config_from(
        tmp_path,
        "site: acme\nstate: state.db\nlisten: null\ntargets: [{name: shop, probes: [{tcp: {port: 1}}]}]\n",
        environ={},
    ).calendar  # business hours default to Asia/Kolkata
    results = [result("shop", probe, at=NOW) for probe in ("http", "tcp", "disk")]
    page = render_status_page(
        site="acme",
        calendar=calendar,
        targets=1,
        incidents=[_incident(1)],
        maintenance=[],
        shown=results,
        matched=3,
        everything=results,
        now=NOW,
    )
    assert "UTC" not in page and page.count("IST") == 1 and "Times are Asia/Kolkata (IST)" in page
    # 02:30 UTC is 08:00 in Kolkata: the incident's respond-by, each result and the footer
    assert page.count("2026-11-23 08:00") == 1 + 3 + 1
    assert "3 checks on 1 target, 0 not ok" in page


def test_a_fresh_status_page_says_when_the_first_results_come(tmp_path: Path) -> None:
    calendar = config_from(
        tmp_path,
        "site: acme\nstate: state.db\nlisten: null\ntargets: [{name: shop, probes: [{tcp: {port: 1}}]}]\n",
        environ={},
    ).calendar
    page = render_status_page(
        site="acme",
        calendar=calendar,
        targets=1,
        incidents=[],
        maintenance=[],
        shown=[],
        matched=0,
        everything=[],
        now=NOW,
        first_runs=[0.0, 12.3, 27.9],
    )
    assert "0 checks on 1 target" in page
    assert "3 checks not run yet since the start: first results in 0 s, all within 28 s." in page
