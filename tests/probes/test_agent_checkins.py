"""The agent_checkins probe against a real HTTP(S) server serving an MDM-style device list
over several pages; fleet and per-device incidents through the real engine and outbox,
with tickets counted at a real webhook receiver."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from probes.agent_checkins import AgentCheckinsConfig, AgentCheckinsProbe, parse_checkin_time
from probes.base import ProbeContext, Result, run_probe
from tests.servers.certs import TestPKI
from tests.servers.httpd import HTTPTestServer, Response
from tests.support.helpers import result as make_result
from tests.support.rig import Rig
from watcher.delivery.httpclient import HttpClients

HTTP = HttpClients()
NOW = datetime.now(UTC)


class MdmServer(HTTPTestServer):
    """Answers by the full path with its query (``/devices?page=2``), as an MDM API does."""

    def response_for(self, path: str) -> Response:
        with self._lock:
            return self._routes.get(path, self._routes.get(path.split("?", 1)[0], self.default))


@pytest.fixture
def mdm() -> Iterator[MdmServer]:
    server = MdmServer().start()
    yield server
    server.stop()


def device(n: int, *, age: timedelta | None, style: str = "iso") -> dict[str, Any]:
    seen: Any = None
    if age is not None:
        moment = NOW - age
        seen = {
            "iso": moment.isoformat().replace("+00:00", "Z"),
            "epoch": moment.timestamp(),
            "epoch_ms": int(moment.timestamp() * 1000),
            "naive": moment.replace(tzinfo=None).isoformat(),
        }[style]
    return {"udid": f"dev-{n:03d}", "info": {"name": f"Phone {n}"}, "last_seen": seen}


def fleet(total: int, stale: int, *, never: int = 0) -> list[dict[str, Any]]:
    """``total`` devices: the first ``stale`` not seen for days (the lowest numbers
    stalest), of which ``never`` never checked in; the rest seen minutes ago."""
    devices = []
    for n in range(total):
        if n < never:
            devices.append(device(n, age=None))
        elif n < stale:
            devices.append(device(n, age=timedelta(days=30 - n)))
        else:
            devices.append(device(n, age=timedelta(minutes=5)))
    return devices


def serve_linked(server: MdmServer, devices: list[dict[str, Any]], per_page: int = 10) -> None:
    """Pages at /api/devices, /api/devices/p2, ... each naming the next in ``links.next``."""
    pages = [devices[i : i + per_page] for i in range(0, len(devices), per_page)] or [[]]
    for index, page in enumerate(pages):
        path = "/api/devices" if index == 0 else f"/api/devices/p{index + 1}"
        following = f"/api/devices/p{index + 2}" if index + 1 < len(pages) else None
        body = {"data": {"devices": page}, "links": {"next": following}}
        server.set_response(
            path, body=json.dumps(body), headers={"Content-Type": "application/json"}
        )


BASE = {
    "list_path": "data.devices",
    "fields": {"id": "udid", "name": "info.name", "last_checkin": "last_seen"},
    "pagination": {"next_path": "links.next"},
}


def check(server: HTTPTestServer, **options: Any) -> list[Result]:
    settings = {**BASE, "url": server.url_for("/api/devices"), **options}
    ctx = ProbeContext(site="acme", target="mdm", host=None, labels={}, timeout=10.0, http=HTTP)
    return run_probe(AgentCheckinsProbe(AgentCheckinsConfig(**settings)), ctx, "agent_checkins")


# --------------------------------------------------------------------------- reading the list


def test_a_healthy_fleet_over_three_pages_is_ok_with_metrics(mdm: MdmServer) -> None:
    serve_linked(mdm, fleet(25, 0))
    (r,) = check(mdm, headers={"Authorization": "Bearer mdm-Token-123"})
    assert r.status == "ok", r.message
    assert r.metrics == {
        **r.metrics,
        "devices_total": 25,
        "stale_devices": 0,
        "stale_ratio": 0.0,
        "never_checked_in": 0,
        "pages": 3,
    }
    assert r.labels == {"scope": "fleet"}
    assert [q.path for q in mdm.requests] == ["/api/devices", "/api/devices/p2", "/api/devices/p3"]
    assert all(q.headers["Authorization"] == "Bearer mdm-Token-123" for q in mdm.requests)
    assert "mdm-Token-123" not in r.evidence + r.message


def test_stale_and_never_seen_devices_are_counted_stalest_first(mdm: MdmServer) -> None:
    devices = fleet(10, 4, never=1)
    devices.append(device(10, age=timedelta(hours=30), style="epoch"))
    devices.append(device(11, age=timedelta(hours=50), style="epoch_ms"))
    devices.append(device(12, age=timedelta(hours=1), style="naive"))
    devices.append({"udid": "dev-bad", "info": {"name": "Odd"}, "last_seen": "last tuesday"})
    serve_linked(mdm, devices, per_page=4)
    (r,) = check(mdm, stale_after="24h", evidence_devices=3)
    assert r.metrics["devices_total"] == 14
    assert r.metrics["never_checked_in"] == 2  # dev-000 and the unreadable date
    assert r.metrics["stale_devices"] == 7  # 4 + epoch 30h + epoch_ms 50h + unreadable
    assert r.metrics["stale_ratio"] == pytest.approx(7 / 14)
    lines = r.evidence.splitlines()
    assert lines[1].split()[0] in ("dev-000", "dev-bad") and "never" in lines[1]
    assert "... and 4 more" in r.evidence and "last tuesday" in r.evidence


def test_never_checked_in_can_be_left_out_of_stale(mdm: MdmServer) -> None:
    serve_linked(mdm, fleet(10, 3, never=2))
    (r,) = check(mdm, never_checked_in_is_stale=False)
    assert (r.metrics["stale_devices"], r.metrics["never_checked_in"]) == (1, 2)


def test_page_number_pagination_stops_at_a_short_page(mdm: MdmServer) -> None:
    devices = fleet(12, 3)
    for page in (1, 2, 3):
        chunk = devices[(page - 1) * 5 : page * 5]
        mdm.set_response(f"/v2/devices?page={page}&per_page=5", body=json.dumps(chunk))
    (r,) = run_probe(
        AgentCheckinsProbe(
            AgentCheckinsConfig(
                url=mdm.url_for("/v2/devices"),
                fields={"id": "udid", "name": "info.name", "last_checkin": "last_seen"},
                pagination={"page_param": "page", "page_size_param": "per_page", "page_size": 5},
            )
        ),
        ProbeContext(site="acme", target="mdm", host=None, labels={}, timeout=10.0, http=HTTP),
        "agent_checkins",
    )
    assert (
        r.status,
        r.metrics["devices_total"],
        r.metrics["pages"],
        r.metrics["stale_devices"],
    ) == ("ok", 12, 3, 3)


def test_link_header_pagination_and_basic_auth(mdm: MdmServer) -> None:
    devices = fleet(6, 2)
    mdm.set_response(
        "/d",
        body=json.dumps(devices[:3]),
        headers={"Link": f'<{mdm.url_for("/d?cursor=abc")}>; rel="next"'},
    )
    mdm.set_response("/d?cursor=abc", body=json.dumps(devices[3:]))
    (r,) = check(
        mdm,
        url=mdm.url_for("/d"),
        list_path="",
        pagination={"link_header": True},
        basic_auth={"user": "watcher", "password": "mdm-Basic-pw-9"},
    )
    assert (r.metrics["devices_total"], r.metrics["stale_devices"], r.metrics["pages"]) == (6, 2, 2)
    assert all(q.headers["Authorization"].startswith("Basic ") for q in mdm.requests)


def test_a_pagination_loop_is_an_error_not_a_hang(mdm: MdmServer) -> None:
    mdm.set_response(
        "/api/devices",
        body=json.dumps({"data": {"devices": []}, "links": {"next": "/api/devices"}}),
    )
    (r,) = check(mdm)
    assert (r.status, r.reason) == ("error", "pagination")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, '{"error": "token expired"}', ("error", "auth")),
        (403, "forbidden", ("error", "auth")),
        (502, "bad gateway", ("fail", "status")),
        (200, "<html>login</html>", ("error", "format")),
        (200, '{"items": []}', ("error", "format")),
    ],
)
def test_answers_the_probe_cannot_use(
    mdm: MdmServer, status: int, body: str, expected: tuple[str, str]
) -> None:
    mdm.set_response("/api/devices", status=status, body=body)
    (r,) = check(mdm)
    assert (r.status, r.reason) == expected, r.message
    assert r.labels == {"scope": "fleet"}


def test_the_device_manager_down_is_a_failure(mdm: MdmServer) -> None:
    url = mdm.url_for("/api/devices")
    mdm.stop()
    (r,) = check(mdm, url=url)
    assert (r.status, r.reason) == ("fail", "refused")


def test_https_verified_against_a_ca_and_a_self_signed_certificate_refused(
    http_server_factory: Callable[..., HTTPTestServer], test_pki: TestPKI
) -> None:
    good = http_server_factory(tls=test_pki.valid)
    serve_linked(good, fleet(3, 1))  # type: ignore[arg-type]
    (r,) = check(good, ca_file=str(test_pki.ca.cert_path))
    assert (r.status, r.metrics["stale_devices"]) == ("ok", 1)
    bad = http_server_factory(tls=test_pki.self_signed)
    (r,) = check(bad, ca_file=str(test_pki.ca.cert_path))
    assert (r.status, r.reason) == ("fail", "cert_untrusted")


def test_checkin_times_in_every_shape() -> None:
    moment = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    assert parse_checkin_time("2026-11-20T08:30:00Z") == moment
    assert parse_checkin_time("2026-11-20T14:00:00+05:30") == moment
    assert parse_checkin_time("2026-11-20T08:30:00") == moment
    assert parse_checkin_time(moment.timestamp()) == moment
    assert parse_checkin_time(str(int(moment.timestamp() * 1000))) == moment
    assert (
        parse_checkin_time(None) is None
        and parse_checkin_time("") is None
        and parse_checkin_time(0) is None
    )
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_checkin_time("yesterday")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"pagination": {"next_path": "a", "page_param": "p"}}, "choose one"),
        ({"pagination": {"page_param": "p", "page_size": 5}}, "go together"),
        ({"url": "ftp://x"}, "http:// or https://"),
        ({"stale_after": "soon"}, "not a duration"),
        ({"max_devices": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        AgentCheckinsConfig(**{"url": "https://mdm.example/api", **options})


# --------------------------------------------------------------------------- per device


def test_per_device_results_are_capped_stalest_first_and_sticky(mdm: MdmServer) -> None:
    devices = fleet(20, 8)
    serve_linked(mdm, devices)
    probe = AgentCheckinsProbe(
        AgentCheckinsConfig(**BASE, url=mdm.url_for("/api/devices"), per_device=True, max_devices=3)
    )
    ctx = ProbeContext(site="acme", target="mdm", host=None, labels={}, timeout=10.0, http=HTTP)
    fleet_result, *per_device = run_probe(probe, ctx, "agent_checkins")
    assert fleet_result.metrics["stale_devices"] == 8 and fleet_result.labels == {"scope": "fleet"}
    assert [(r.labels["device"], r.status, r.reason) for r in per_device] == [
        ("dev-000", "fail", "stale"),
        ("dev-001", "fail", "stale"),
        ("dev-002", "fail", "stale"),
    ]
    # dev-001 checks in: it gets ok results, its place goes to the next stalest.
    devices[1] = device(1, age=timedelta(minutes=1))
    serve_linked(mdm, devices)
    _, *per_device = run_probe(probe, ctx, "agent_checkins")
    assert {(r.labels["device"], r.status) for r in per_device} == {
        ("dev-000", "fail"),
        ("dev-002", "fail"),
        ("dev-003", "fail"),
        ("dev-001", "ok"),
    }
    # dev-000 leaves the list (retired): ok, so its incident resolves.
    serve_linked(mdm, devices[1:])
    _, *per_device = run_probe(probe, ctx, "agent_checkins")
    statuses = {r.labels["device"]: (r.status, r.message) for r in per_device}
    assert (
        statuses["dev-000"][0] == "ok" and "no longer in the device list" in statuses["dev-000"][1]
    )


def test_a_restarted_watcher_still_clears_devices_it_reported_before(mdm: MdmServer) -> None:
    serve_linked(mdm, fleet(5, 1))
    earlier = make_result(
        "mdm", "agent_checkins", status="fail", labels={"scope": "device", "device": "dev-004"}
    )
    probe = AgentCheckinsProbe(
        AgentCheckinsConfig(**BASE, url=mdm.url_for("/api/devices"), per_device=True)
    )
    ctx = ProbeContext(
        site="acme",
        target="mdm",
        host=None,
        labels={},
        timeout=10.0,
        http=HTTP,
        services={
            "previous_results": lambda target, probe_id: (
                [earlier] if (target, probe_id) == ("mdm", "agent_checkins") else []
            )
        },
    )
    _, *per_device = run_probe(probe, ctx, "agent_checkins")
    assert {(r.labels["device"], r.status) for r in per_device} == {
        ("dev-000", "fail"),
        ("dev-004", "ok"),
    }


# --------------------------------------------------------------------------- incidents and tickets


@pytest.fixture
def receiver(http_server_factory: Callable[..., HTTPTestServer]) -> HTTPTestServer:
    """A webhook receiver standing in for the helpdesk: every delivery is a real POST."""
    server = http_server_factory()
    server.set_default(status=200, body='{"id": "T"}', headers={"Content-Type": "application/json"})
    return server


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Callable[[str], Rig]]:
    rigs: list[Rig] = []

    def make(text: str) -> Rig:
        rig = Rig(tmp_path, text)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def _site(mdm: MdmServer, receiver: HTTPTestServer, extra: str = "") -> str:
    return f"""
    site: acme
    state: state.db
    listen: null
    integrations:
      tickets: [{{webhook: {{url: "{receiver.url_for("/hook")}"}}}}]
    targets:
      - name: mdm
        probes:
          - agent_checkins:
              url: "{mdm.url_for("/api/devices")}"
              list_path: data.devices
              fields: {{id: udid, name: info.name, last_checkin: last_seen}}
              pagination: {{next_path: links.next}}
              stale_after: 24h
              {extra}
    """


def deliveries(receiver: HTTPTestServer, event: str) -> list[dict[str, Any]]:
    out = []
    for request in receiver.requests_for("/hook"):
        payload = json.loads(request.body)
        if payload["event"] == event:
            out.append(payload["incident"])
    return out


def test_a_stale_ratio_over_the_threshold_is_exactly_one_fleet_incident_and_ticket(
    mdm: MdmServer, receiver: HTTPTestServer, rig_factory: Callable[[str], Rig]
) -> None:
    serve_linked(mdm, fleet(30, 3))  # 10%: below the shipped 20%
    rig = rig_factory(_site(mdm, receiver))
    rig.rounds(2)
    assert rig.incidents() == []
    serve_linked(mdm, fleet(30, 15))  # 50%: over both fleet thresholds
    rig.rounds(5)
    (incident,) = rig.incidents()
    assert (incident.state, incident.priority, incident.rule) == (
        "open",
        "P2",
        "agent-checkins-stale-many",
    )
    assert "15 of 30 devices not checking in" in incident.summary
    assert len(deliveries(receiver, "ticket.open")) == 1
    serve_linked(mdm, fleet(30, 0))
    rig.rounds(2)
    assert [i.state for i in rig.incidents()] == ["resolved"]
    assert len(deliveries(receiver, "ticket.resolve")) == 1


def test_per_device_mode_opens_the_capped_number_of_tickets_and_clears_them(
    mdm: MdmServer, receiver: HTTPTestServer, rig_factory: Callable[[str], Rig]
) -> None:
    devices = fleet(40, 6)  # 15%: no fleet incident, only devices
    serve_linked(mdm, devices)
    rig = rig_factory(_site(mdm, receiver, "per_device: true\n              max_devices: 4"))
    rig.rounds(3)
    opened = deliveries(receiver, "ticket.open")
    assert len(opened) == 4
    assert sorted(i["target"] for i in opened) == ["mdm"] * 4
    assert sorted(i["summary"].split("(")[1].split(")")[0] for i in opened) == [
        "dev-000",
        "dev-001",
        "dev-002",
        "dev-003",
    ]
    assert len({i["fingerprint"] for i in opened}) == 4  # each device its own fingerprint
    assert len([i for i in rig.incidents() if i.state == "open"]) == 4

    # Two reported devices check in again: their tickets resolve, the next two stalest open.
    devices[0] = device(0, age=timedelta(minutes=2))
    devices[3] = device(3, age=timedelta(minutes=2))
    serve_linked(mdm, devices)
    rig.rounds(3)
    assert len(deliveries(receiver, "ticket.resolve")) == 2
    opened = deliveries(receiver, "ticket.open")
    assert len(opened) == 6 and {i["summary"].split("(")[1].split(")")[0] for i in opened[4:]} == {
        "dev-004",
        "dev-005",
    }
    assert len([i for i in rig.incidents() if i.state == "open"]) == 4  # never more than the cap


def test_credentials_in_the_url_never_reach_the_message_or_evidence(mdm: MdmServer) -> None:
    mdm.set_response("/api/devices", status=502, body="bad gateway")
    url = mdm.url_for("/api/devices?api_key=Mdm-Key-0c4f2").replace(
        "://", "://watcher:Mdm-Pw-91d3@"
    )
    (r,) = check(mdm, url=url)
    assert (r.status, r.reason) == ("fail", "status")
    assert "0c4f2" not in r.message + r.evidence and "91d3" not in r.message + r.evidence
    mdm.stop()
    (r,) = check(mdm, url=url)
    assert r.status == "fail"
    assert "0c4f2" not in r.message + r.evidence and "91d3" not in r.message + r.evidence


def _elsewhere(server: HTTPTestServer, path: str) -> str:
    """A URL on ``server`` under another host name (the same loopback address)."""
    return server.url_for(path).replace("127.0.0.1", "localhost")


def test_a_redirect_to_another_host_does_not_take_the_api_key_along(
    mdm: MdmServer, http_server_factory: Callable[..., HTTPTestServer]
) -> None:
    other = http_server_factory()
    mdm.set_response(
        "/api/devices", status=302, headers={"Location": _elsewhere(other, "/api/devices")}
    )
    (r,) = check(mdm, headers={"X-Api-Key": "Mdm-Hdr-8e21"})
    assert (r.status, r.reason) == ("error", "redirect"), r.message
    assert other.requests == []


def test_a_next_link_to_another_host_does_not_take_the_api_key_along(
    mdm: MdmServer, http_server_factory: Callable[..., HTTPTestServer]
) -> None:
    other = http_server_factory()
    page = {"data": {"devices": fleet(3, 0)}, "links": {"next": _elsewhere(other, "/steal")}}
    mdm.set_response(
        "/api/devices", body=json.dumps(page), headers={"Content-Type": "application/json"}
    )
    (r,) = check(mdm, headers={"X-Api-Key": "Mdm-Hdr-8e21"})
    assert (r.status, r.reason) == ("error", "pagination"), r.message
    assert other.requests == []


def test_a_page_that_trickles_in_ends_at_the_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
                )
                for _ in range(400):  # a byte every 50 ms for up to 20 s
                    if stop.wait(0.05):
                        break
                    conn.sendall(b" ")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/devices"
        ctx = ProbeContext(site="acme", target="mdm", host=None, labels={}, timeout=1.0, http=HTTP)
        (r,) = run_probe(AgentCheckinsProbe(AgentCheckinsConfig(url=url)), ctx, "agent_checkins")
        assert (r.status, r.reason) == ("fail", "timeout"), r.message
    finally:
        stop.set()
        listener.close()
        thread.join(5)
