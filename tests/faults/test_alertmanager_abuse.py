"""``POST /api/alertmanager`` under bad posts, against a real ``watcher run``: every one
gets a 4xx that says why, never a 500, and nothing of a refused post is applied."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.base import free_port
from tests.support.daemon import Daemon

TOKEN = "hook-token-9c1e55"
PAYLOADS = Path(__file__).parent.parent / "probes" / "payloads"


def documented(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("am-abuse")
    port = free_port()
    (directory / "watcher.yml").write_text(
        f"""
site: abuse
state: state.db
listen: 127.0.0.1:{port}
rules: [default, alertmanager]
alertmanager: {{token: "${{AM_TOKEN}}", max_alerts: 50}}
targets: []
"""
    )
    d = Daemon(directory / "watcher.yml", port, env={"AM_TOKEN": TOKEN}).start()
    yield d
    d.stop()


def send(
    daemon: Daemon, body: bytes, *, token: str | None = TOKEN, scheme: str = "Bearer"
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(daemon.url("/api/alertmanager"), data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"{scheme} {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"error": raw.decode(errors="replace")}


def incidents(daemon: Daemon) -> list[dict[str, Any]]:
    return json.loads(daemon.get("/api/incidents")[1])


def alert(name: str = "DiskFull", **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, "instance": "db9:9100", **labels},
        "annotations": {"summary": f"{name} on db9"},
        "startsAt": "2026-12-04T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }


def wrap(*alerts: Any, **top: Any) -> bytes:
    return json.dumps({"version": "4", "status": "firing", "alerts": list(alerts), **top}).encode()


BAD_POSTS = {
    "not JSON": b"{this is not json",
    "not UTF-8": b"\xff\xfe\x00{",
    "a JSON list": b"[]",
    "wrong version": json.dumps({**documented("alertmanager-v4.json"), "version": "5"}).encode(),
    "no version": wrap(alert(), version=None),
    "alerts not a list": wrap(alerts={"x": 1}),
    "an alert that is null": wrap(None),
    "missing labels": wrap({k: v for k, v in alert().items() if k != "labels"}),
    "labels a list": wrap({**alert(), "labels": ["alertname"]}),
    "no alertname": wrap({**alert(), "labels": {"instance": "db9"}}),
    "a label that is a number": wrap({**alert(), "labels": {"alertname": "X", "n": 1}}),
    "annotations a string": wrap({**alert(), "annotations": "x"}),
    "startsAt a number": wrap({**alert(), "startsAt": 5}),
    "startsAt not a time": wrap({**alert(), "startsAt": "soon"}),
    "an alert status of ok": wrap({**alert(), "status": "ok"}),
    "a huge label value": wrap(alert(big="x" * 5000)),
}


@pytest.mark.parametrize("case", sorted(BAD_POSTS))
def test_a_malformed_post_gets_a_4xx_with_a_reason(daemon: Daemon, case: str) -> None:
    status, answer = send(daemon, BAD_POSTS[case])
    assert 400 <= status < 500, (case, status, answer)
    assert answer.get("error"), answer
    assert incidents(daemon) == []


def test_a_post_with_one_bad_alert_among_good_ones_applies_none_of_them(daemon: Daemon) -> None:
    status, answer = send(daemon, wrap(alert("A"), alert("B"), {**alert("C"), "startsAt": "x"}))
    assert status == 400 and "alerts[2].startsAt" in answer["error"]
    assert incidents(daemon) == []


def send_headers_first(daemon: Daemon, body: bytes) -> tuple[int, str]:
    """Sends the headers, reads the answer, and only then would send the body: a server
    that refuses a body unread answers before it, and closes."""
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        connection.putrequest("POST", "/api/alertmanager")
        connection.putheader("Authorization", f"Bearer {TOKEN}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_ten_thousand_alerts_in_one_post_are_refused_whole(daemon: Daemon) -> None:
    huge = wrap(*[alert(f"A{i}") for i in range(10_000)])
    status, text = send_headers_first(daemon, huge)
    assert status == 413 and "too large" in text
    # a post small enough for the body limit but over max_alerts: refused by count
    small = [{"status": "firing", "labels": {"alertname": "a"}, "startsAt": "2026-12-04T10:00:00Z"}]
    status, answer = send(daemon, wrap(*(small * 60)))
    assert status == 413 and "60 alerts in one post, at most 50" in answer["error"]
    assert "max_alerts" in answer["error"]
    assert incidents(daemon) == []


@pytest.mark.parametrize(
    ("token", "scheme"), [(None, "Bearer"), ("wrong", "Bearer"), (TOKEN, "Basic"), ("", "Bearer")]
)
def test_a_missing_or_wrong_token_is_refused(
    daemon: Daemon, token: str | None, scheme: str
) -> None:
    status, answer = send(daemon, wrap(alert()), token=token, scheme=scheme)
    assert status in (401, 429) and answer["error"]
    assert incidents(daemon) == []


def test_the_token_never_shows_in_the_log_or_metrics(daemon: Daemon) -> None:
    send(daemon, wrap(alert()), token="guess-" + TOKEN)
    assert TOKEN not in daemon.log()
    assert TOKEN not in daemon.get("/metrics")[1]


def test_no_bad_post_ever_caused_a_500_or_a_traceback(daemon: Daemon) -> None:
    for body in BAD_POSTS.values():
        assert send(daemon, body)[0] < 500
    assert "Traceback" not in daemon.log()
    assert "internal error" not in daemon.log()
    metrics = daemon.get("/metrics")[1]
    assert 'watcher_alertmanager_posts_rejected_total{reason="json"}' in metrics
    refused = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("watcher_alertmanager_posts_rejected_total{")
    ]
    assert sum(refused) >= len(BAD_POSTS)


def test_the_documented_grafana_post_is_taken_after_all_the_refusals(daemon: Daemon) -> None:
    status, answer = send(daemon, json.dumps(documented("grafana.json")).encode())
    assert status == 200 and answer["source"] == "grafana" and answer["applied"] == 2
    found = daemon.wait_for(lambda: len(incidents(daemon)) == 2 and incidents(daemon), 30, "two")
    assert {i["target"] for i in found} == {"alerts"}  # no instance or job label
    assert {i["summary"] for i in found} == {
        "alerts: This alert was triggered for zone us-1",
        "alerts: This alert was triggered for zone eu-1",
    }
    status, answer = send(daemon, json.dumps(documented("grafana.json")).encode())
    assert answer["duplicates"] == 2 and len(incidents(daemon)) == 2
