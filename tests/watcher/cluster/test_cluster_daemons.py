"""Two ``watcher run`` members on one PostgreSQL: ``watcher cluster`` lists both and
their shares, each /metrics has the cluster's gauges and only its own checks, and the
dead man's switch is called once per interval by the cluster, not once per member; an
acknowledgement reaches the member that decides for the incident, whichever got it;
maintenance windows, parents, check-ins and repages work across members."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.faults.test_cluster_chaos import Listeners, Node
from tests.servers.base import LOOPBACK, free_port
from tests.servers.postgres import PostgresServer
from tests.support.helpers import write_config
from watcher.cluster.partition import owner

TARGETS = 10
TOKEN = "cluster-test-token-51"


class Pings:
    """Counts POSTs: the other site's ``/checkin`` stand-in."""

    def __init__(self) -> None:
        self.count = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.count += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/checkin/site-a"


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


def _get(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def _incident(port: int, incident_id: int) -> dict:
    found = _get(port, f"/api/incidents/{incident_id}")
    assert isinstance(found, dict)
    return found


def _wait_for_incident(port: int, target: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = _get(port, "/api/incidents?state=open")
        assert isinstance(found, list)
        mine = [i for i in found if i["target"] == target]
        if mine:
            return mine[0]
        time.sleep(0.3)
    raise AssertionError(f"no open incident for {target}")


def _post(port: int, path: str) -> None:
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{port}{path}", data=b'{"by": "ops"}', method="POST"
    )
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _cluster(config: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "cluster", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_members_list_their_shares_export_cluster_gauges_and_ping_once_per_interval(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    listeners = Listeners(TARGETS)
    pings = Pings()
    targets = "\n".join(
        f"  - {{name: t{n}, probes: [{{tcp: {{host: {LOOPBACK}, port: {port}}}}}]}}"
        for n, port in enumerate(listeners.ports)
    )
    config = write_config(
        tmp_path,
        textwrap.dedent(f"""
            site: acme
            state: {postgres.new_url()}
            listen: {LOOPBACK}:{free_port()}
            api_token: {TOKEN}
            cluster: {{lease: 2s}}
            dead_mans_switch: {{url: "{pings.url}", interval: 2s}}
            defaults: {{interval: 1s, timeout: 1s}}
            rules: [default, fast.yml]
            targets:
            """)
        + targets,
        extra={
            "fast.yml": "rules:\n  - {name: down, probe: tcp, when: failed,"
            " priority: P2, summary: '{target}: port closed'}\n"
        },
    )
    nodes = [Node(name, config, tmp_path) for name in ("a", "b")]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            assert node.wait_healthy(60), (tmp_path / f"{node.name}.log").read_text()[-3000:]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = _cluster(config)
            if sum(n["live"] for n in status["nodes"]) == 2:
                break
            time.sleep(0.5)
        assert status["database"] == "reachable" and status["leader"] == "a"
        assert sum(n["targets"] for n in status["nodes"]) == TARGETS
        assert postgres.password not in json.dumps(status)
        time.sleep(3)  # both have followed the join
        held = [_metric(n.port, "watcher_cluster_targets_held") for n in nodes]
        assert sum(held) == TARGETS
        assert [_metric(n.port, "watcher_cluster_leader") for n in nodes] == [1, 0]
        assert all(_metric(n.port, "watcher_cluster_members") == 2 for n in nodes)
        before, started = pings.count, time.monotonic()
        time.sleep(8)
        intervals = (time.monotonic() - started) / 2
        assert 1 <= pings.count - before <= intervals + 1

        # An acknowledgement sent to the member that does not run the target is applied
        # by the one that does.
        listeners.close(listeners.ports[3])
        incident = _wait_for_incident(nodes[0].port, "t3")
        runs_it = owner("t3", ["a", "b"])
        other = next(n for n in nodes if n.name != runs_it)
        _post(other.port, f"/api/incidents/{incident['id']}/ack")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and incident["state"] != "acknowledged":
            time.sleep(0.3)
            incident = _incident(other.port, incident["id"])
        assert incident["state"] == "acknowledged"

        # Each member shows the whole site: every target's latest result, and the console's
        # problems include the incident whichever member runs its target.
        everyone = {f"t{n}" for n in range(TARGETS)}
        for node in nodes:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                results = _get(node.port, "/api/results")
                assert isinstance(results, list)
                if {r["target"] for r in results} == everyone:
                    break
                time.sleep(0.5)
            assert {r["target"] for r in results} == everyone, node.name
            url = f"http://{LOOPBACK}:{node.port}/console"
            deadline = time.monotonic() + 15  # a member re-reads the others' at each renewal
            while time.monotonic() < deadline:
                with urllib.request.urlopen(url, timeout=10) as response:
                    page = response.read().decode()
                if "t3: port closed" in page:
                    break
                time.sleep(0.5)
            assert "t3: port closed" in page, node.name
    finally:
        for node in nodes:
            if node.proc:
                node.proc.terminate()
                node.proc.wait(15)
        listeners.stop()
        pings.server.shutdown()


def test_watcher_cluster_on_a_sqlite_state_says_there_is_no_cluster(tmp_path: Path) -> None:
    config = write_config(tmp_path, "site: acme\nstate: watcher.db\n")
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "cluster", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "no cluster" in done.stdout, done.stdout + done.stderr


def _post_json(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{port}{path}", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        found = json.loads(response.read())
    assert isinstance(found, dict)
    return found


def _wait_held(port: int, target: str, why: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        incident = _wait_for_incident(port, target)
        if incident.get("suppressed") == why or time.monotonic() > deadline:
            return incident
        time.sleep(0.3)


def _split(names: list[str]) -> tuple[str, str, str]:
    """A parent and a child run by different members, and a third target."""
    for parent in names:
        for child in names:
            if owner(parent, ["a", "b"]) != owner(child, ["a", "b"]):
                rest = next(n for n in names if n not in (parent, child))
                return parent, child, rest
    raise AssertionError("every name hashes to one member")


def test_a_window_set_on_one_member_and_a_parent_run_by_another_hold_the_incident(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    listeners = Listeners(3)
    parent, child, quiet = _split([f"t{n}" for n in range(8)])
    ports = dict(zip((parent, child, quiet), listeners.ports, strict=True))
    targets = "\n".join(
        f"  - {{name: {name}, probes: [{{tcp: {{host: {LOOPBACK}, port: {port}}}}}]"
        + (f", depends_on: [{parent}]" if name == child else "")
        + "}"
        for name, port in ports.items()
    )
    config = write_config(
        tmp_path,
        textwrap.dedent(f"""
            site: acme
            state: {postgres.new_url()}
            listen: {LOOPBACK}:{free_port()}
            api_token: {TOKEN}
            cluster: {{lease: 2s}}
            defaults: {{interval: 1s, timeout: 1s}}
            rules: [default, fast.yml]
            targets:
            """)
        + targets,
        extra={
            "fast.yml": "rules:\n  - {name: down, probe: tcp, when: failed,"
            " priority: P2, summary: '{target}: port closed'}\n"
        },
    )
    nodes = {name: Node(name, config, tmp_path) for name in ("a", "b")}
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            assert node.wait_healthy(60), (tmp_path / f"{node.name}.log").read_text()[-3000:]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(n["live"] for n in _cluster(config)["nodes"]) == 2:
                break
            time.sleep(0.5)
        time.sleep(3)  # both have followed the join

        # A window posted to the member that does not run the target holds its incident
        # on the member that does.
        runs_quiet = nodes[owner(quiet, ["a", "b"]) or "a"]
        other = next(n for n in nodes.values() if n is not runs_quiet)
        _post_json(
            other.port,
            "/api/maintenance",
            {"name": "swap", "targets": [quiet], "duration": "1h", "by": "ops"},
        )
        listeners.close(ports[quiet])
        incident = _wait_held(runs_quiet.port, quiet, "maintenance")
        assert incident.get("suppressed") == "maintenance", incident

        # A child whose parent another member runs is held by its parent.
        listeners.close(ports[parent])
        _wait_for_incident(nodes[owner(parent, ["a", "b"]) or "a"].port, parent)
        listeners.close(ports[child])
        incident = _wait_held(nodes[owner(child, ["a", "b"]) or "a"].port, child, "parent")
        assert incident.get("suppressed") == "parent", incident
    finally:
        for node in nodes.values():
            if node.proc:
                node.proc.terminate()
                node.proc.wait(15)
        listeners.stop()


def _open_for(port: int, target: str) -> list[dict]:
    found = _get(port, "/api/incidents?state=open")
    assert isinstance(found, list)
    return [i for i in found if i["target"] == target]


def test_a_check_in_posted_to_either_member_keeps_the_heartbeat_up_on_the_one_that_decides(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    config = write_config(
        tmp_path,
        textwrap.dedent(f"""
            site: acme
            state: {postgres.new_url()}
            listen: {LOOPBACK}:{free_port()}
            api_token: {TOKEN}
            cluster: {{lease: 2s}}
            defaults: {{interval: 1s, timeout: 1s}}
            checkins:
              - {{name: sync, period: 2s, grace: 2s}}
            """),
    )
    nodes = {name: Node(name, config, tmp_path) for name in ("a", "b")}
    decides = nodes[owner("sync", ["a", "b"]) or "a"]
    other = next(n for n in nodes.values() if n is not decides)
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            assert node.wait_healthy(60), (tmp_path / f"{node.name}.log").read_text()[-3000:]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(n["live"] for n in _cluster(config)["nodes"]) == 2:
                break
            time.sleep(0.5)
        time.sleep(3)  # both have followed the join

        # Check-ins sent only to the member that does not decide keep the job up for
        # several periods plus grace.
        _post(other.port, "/checkin/sync")
        started = time.monotonic()
        while time.monotonic() - started < 10:
            _post(other.port, "/checkin/sync")
            time.sleep(0.5)
            assert not _open_for(decides.port, "sync"), tmp_path / f"{decides.name}.log"
        # Once they stop, the heartbeat goes late: the member does judge it.
        incident = _wait_for_incident(decides.port, "sync")
        assert incident["target"] == "sync"
    finally:
        for node in nodes.values():
            if node.proc:
                node.proc.terminate()
                node.proc.wait(15)


def test_an_unacknowledged_p1_is_paged_again_once_per_interval_by_the_cluster(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    listeners = Listeners(4)
    pages = Pings()
    targets = "\n".join(
        f"  - {{name: t{n}, probes: [{{tcp: {{host: {LOOPBACK}, port: {port}}}}}]}}"
        for n, port in enumerate(listeners.ports)
    )
    config = write_config(
        tmp_path,
        textwrap.dedent(f"""
            site: acme
            state: {postgres.new_url()}
            listen: {LOOPBACK}:{free_port()}
            api_token: {TOKEN}
            cluster: {{lease: 2s}}
            defaults: {{interval: 1s, timeout: 1s}}
            rules: [default, fast.yml]
            integrations:
              paging: [{{webhook: {{url: "{pages.url}", name: pager}}}}]
            targets:
            """)
        + targets,
        extra={
            "fast.yml": "priorities:\n  P1: {name: Urgent, response: 2h, resolve: 4h,"
            " ticket: false, page: true, repage_every: 2s}\n"
            "rules:\n  - {name: down, probe: tcp, when: failed,"
            " priority: P1, summary: '{target}: port closed'}\n"
        },
    )
    nodes = [Node(name, config, tmp_path) for name in ("a", "b")]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            assert node.wait_healthy(60), (tmp_path / f"{node.name}.log").read_text()[-3000:]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(n["live"] for n in _cluster(config)["nodes"]) == 2:
                break
            time.sleep(0.5)
        time.sleep(3)  # both have followed the join
        listeners.close(listeners.ports[1])
        _wait_for_incident(nodes[0].port, "t1")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and pages.count == 0:
            time.sleep(0.2)
        before, started = pages.count, time.monotonic()
        assert before >= 1, (tmp_path / "a.log").read_text()[-3000:]
        time.sleep(10)
        intervals = (time.monotonic() - started) / 2
        assert 1 <= pages.count - before <= intervals + 1, pages.count - before
    finally:
        for node in nodes:
            if node.proc:
                node.proc.terminate()
                node.proc.wait(15)
        listeners.stop()
        pages.server.shutdown()
