"""Three ``watcher run`` processes on one PostgreSQL share 100 targets while members are
killed (-9) and restarted, one is paused past its lease (SIGSTOP, SIGCONT), and the
database restarts: every failing target gets exactly one ticket, every recovered one
exactly one resolve, and no target goes unchecked much longer than the lease. Tickets are
counted at two receivers: a webhook and a searchable helpdesk (Request Tracker 5, searched
by the fingerprint custom field)."""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults.test_delivery import SECRET, Receiver
from tests.integrations.site import unique_site
from tests.servers.base import LOOPBACK, free_port
from tests.servers.postgres import PostgresServer
from tests.servers.rt import RequestTracker
from tests.support.helpers import write_config

TARGETS = 100
FAILING = 12
RECOVERING = 10
LEASE = 3.0
INTERVAL = 1.0
CHAOS_FOR = 60.0
# RT answers in hundreds of ms per call on a loaded 2-core machine: its outbox drains last.
RT_DRAIN = 90.0


class Listeners:
    """One TCP listener per target, accepting and closing in one thread; a target fails
    while its listener is closed. Records when each was checked."""

    def __init__(self, count: int) -> None:
        self.ports: list[int] = []
        self.checked: dict[int, list[float]] = defaultdict(list)
        self._sel = selectors.DefaultSelector()
        self._socks: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for _ in range(count):
            self.ports.append(self.open(0))
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def open(self, port: int) -> int:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOPBACK, port))
        s.listen(64)
        s.setblocking(False)
        port = s.getsockname()[1]
        with self._lock:
            self._socks[port] = s
            self._sel.register(s, selectors.EVENT_READ, port)
        return port

    def close(self, port: int) -> None:
        with self._lock:
            s = self._socks.pop(port)
            self._sel.unregister(s)
        s.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                events = self._sel.select(timeout=0) if self._socks else []
            for key, _ in events:
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.close()
                    self.checked[key.data].append(time.monotonic())
                except OSError:
                    pass
            if not events:
                time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for port in list(self._socks):
            self.close(port)


class Node:
    def __init__(
        self, name: str, config: Path, directory: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name, self.config, self.dir = name, config, directory
        self.env = env if env is not None else dict(os.environ)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.dir / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher.cli", "run", "-c", str(self.config),
                 "--node", self.name, "--listen", f"{LOOPBACK}:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.dir, env=self.env,
            )  # fmt: skip

    def wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://{LOOPBACK}:{self.port}/healthz", timeout=2
                ) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


def _stale_deliveries(directory: Path, node: Node | None, resumed: datetime | None) -> int:
    """Deliveries the paused member made after SIGCONT and before it rejoined: what it
    would have sent on the strength of what it believed before the pause."""
    assert node is not None and resumed is not None
    lines = (directory / f"{node.name}.log").read_text().splitlines()
    stale = 0
    for line in lines:
        try:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            continue
        if at < resumed:
            continue
        if "joined with epoch" in line or "watcher: watcher" in line:
            break  # rejoined (or restarted): from here on it acts under a new lease
        if " delivered" in line:
            stale += 1
    return stale


def _events(receiver: Receiver) -> Counter[tuple[str, str]]:
    with receiver._lock:
        bodies = [json.loads(b) for _, b in receiver.requests]
    return Counter((b["event"], b["incident"]["target"]) for b in bodies)


def _fingerprints(receiver: Receiver) -> dict[str, str]:
    """Target name to incident fingerprint, as the webhook saw them."""
    with receiver._lock:
        bodies = [json.loads(b) for _, b in receiver.requests]
    return {b["incident"]["target"]: b["incident"]["fingerprint"] for b in bodies}


def _rt_tickets(rt: RequestTracker, fingerprints: dict[str, str]) -> dict[str, list[str]]:
    """Target name to the states ("open" or "resolved") of the RT tickets carrying its
    fingerprint; "new" and "open" both count as open, a comment may turn one into the other."""
    found: dict[str, list[str]] = {}
    for target, fingerprint in fingerprints.items():
        items: list[dict[str, Any]] = rt.tickets(
            f"CF.{{{rt.cf_name}}} = '{fingerprint}'", fields="Status"
        )
        found[target] = sorted(
            "resolved" if item["Status"] == "resolved" else "open" for item in items
        )
    return found


def test_three_members_survive_kills_a_pause_and_a_database_restart_with_exact_tickets(
    tmp_path: Path, own_postgres: PostgresServer, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    rng = random.Random(7)
    url = own_postgres.new_url()
    listeners = Listeners(TARGETS)
    targets = "\n".join(
        f"  - {{name: t{n:03d}, probes: [{{tcp: {{host: {LOOPBACK}, port: {port}}}}}]}}"
        for n, port in enumerate(listeners.ports)
    )
    with Receiver() as receiver:
        config = write_config(
            tmp_path,
            textwrap.dedent(f"""
            site: {unique_site("chaos")}
            state: {url}
            listen: {LOOPBACK}:{free_port()}
            cluster: {{lease: {LEASE}s}}
            integrations:
              tickets:
                - webhook: {{url: "{receiver.url}", secret: "{SECRET}"}}
                - request_tracker: {{url: "{rt.url}", user: {rt.user},
                    password: "${{RT_PASSWORD}}", queue: {rt.queue}, poll_every: 1m}}
            defaults: {{interval: {INTERVAL}s, timeout: 1s, jitter: false}}
            rules: [default, fast.yml]
            targets:
            """)
            + targets,
            extra={
                "fast.yml": "rules:\n  - {name: down, probe: tcp, when: failed,"
                " priority: P2, summary: '{target}: port closed'}\n"
            },
        )
        env = {**os.environ, "RT_PASSWORD": rt.password}
        nodes = [Node(name, config, tmp_path, env) for name in ("n1", "n2", "n3")]
        for node in nodes:
            node.start()
        for node in nodes:
            assert node.wait_healthy(60), (tmp_path / f"{node.name}.log").read_text()[-3000:]
        failing = rng.sample(range(TARGETS), FAILING)
        fail_at = {t: 8.0 + 2.0 * i for i, t in enumerate(failing)}
        recover_at = {t: fail_at[t] + 14.0 for t in failing[:RECOVERING]}
        plan = sorted(
            [(at, "fail", t) for t, at in fail_at.items()]
            + [(at, "recover", t) for t, at in recover_at.items()]
            + [(at, "kill", None) for at in (12.0, 17.0, 26.0, 33.0, 41.0, 47.0, 53.0)]
            + [(20.0, "pause", None), (36.0, "database", None)]
        )
        healthy_ports = {listeners.ports[n] for n in range(TARGETS) if n not in fail_at}
        start = time.monotonic()
        paused: list[tuple[float, Node]] = []
        was_paused: Node | None = None
        resumed_at: datetime | None = None
        try:
            for at, what, target in plan:
                while time.monotonic() - start < at:
                    for until, node in list(paused):
                        if time.monotonic() >= until:
                            node.signal(signal.SIGCONT)
                            resumed_at = datetime.now()  # the logs' local time
                            paused.remove((until, node))
                    time.sleep(0.05)
                if what == "fail":
                    listeners.close(listeners.ports[target])
                elif what == "recover":
                    listeners.open(listeners.ports[target])
                elif what == "kill":
                    node = rng.choice([n for n in nodes if all(n is not p for _, p in paused)])
                    node.kill()
                    node.start()
                elif what == "pause":
                    node = rng.choice(nodes)
                    node.signal(signal.SIGSTOP)
                    paused.append((time.monotonic() + LEASE + 3.0, node))
                    was_paused = node
                elif what == "database":
                    own_postgres.restart()
            for _, node in paused:
                node.signal(signal.SIGCONT)
            chaos_end = time.monotonic()
            expected = {("ticket.open", f"t{t:03d}") for t in failing}
            expected |= {("ticket.resolve", f"t{t:03d}") for t in recover_at}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not expected <= set(_events(receiver)):
                time.sleep(0.5)
            names = {f"t{t:03d}" for t in failing}
            want_rt = {
                n: ["resolved"] if n in {f"t{t:03d}" for t in recover_at} else ["open"]
                for n in names
            }
            fingerprints = {n: f for n, f in _fingerprints(receiver).items() if n in names}
            # Poll RT until its outbox has drained rather than sleeping a guessed time.
            drain_from = time.monotonic()
            deadline = drain_from + RT_DRAIN
            while time.monotonic() < deadline and _rt_tickets(rt, fingerprints) != want_rt:
                time.sleep(1.0)
            rt_waited = time.monotonic() - drain_from
            time.sleep(2 * LEASE)  # anything doubled would come now
            events = _events(receiver)
            fingerprints = {n: f for n, f in _fingerprints(receiver).items() if n in names}
            rt_found = _rt_tickets(rt, fingerprints)
        finally:
            for node in nodes:
                if node.proc and node.proc.poll() is None:
                    node.signal(signal.SIGCONT)
                    node.proc.terminate()
            for node in nodes:
                if node.proc:
                    try:
                        node.proc.wait(15)
                    except subprocess.TimeoutExpired:
                        node.kill()
            listeners.stop()
    opens = {t: n for (e, t), n in events.items() if e == "ticket.open"}
    resolves = {t: n for (e, t), n in events.items() if e == "ticket.resolve"}
    gaps = []
    for port in healthy_ports:
        times = [x for x in listeners.checked[port] if start + 5 < x < chaos_end]
        gaps.extend(b - a for a, b in zip(times, times[1:], strict=False))
    report = (
        f"opens {sum(opens.values())} for {len(opens)} targets (want {FAILING}),"
        f" resolves {sum(resolves.values())} for {len(resolves)} (want {RECOVERING}),"
        f" largest gap {max(gaps):.2f}s over {len(gaps)} intervals"
    )
    rt_opened = {t: len(s) for t, s in rt_found.items()}
    rt_resolved = {t: s.count("resolved") for t, s in rt_found.items()}
    report += (
        f", RT tickets {sum(rt_opened.values())} for {len(rt_opened)} targets"
        f" ({sum(rt_resolved.values())} resolved, want {RECOVERING};"
        f" settled {rt_waited:.1f}s after the webhook)"
    )
    stale = _stale_deliveries(tmp_path, was_paused, resumed_at)
    report += f", {stale} stale deliveries after the pause"
    print(report)
    (tmp_path / "report.txt").write_text(report + "\n")
    assert stale == 0, report
    assert opens == {f"t{t:03d}": 1 for t in failing}, report
    assert resolves == {f"t{t:03d}": 1 for t in recover_at}, report
    assert set(fingerprints) == names, report  # every failing target's fingerprint known
    assert rt_found == want_rt, f"{report}; RT statuses per target: {rt_found}"
    # A killed or paused member's targets wait for its lease and their next interval
    # (lease + interval + 1 s measured at most 4.8 s here); 2 s more for a loaded machine.
    assert max(gaps) < LEASE + INTERVAL + 1.0 + 2.0, report
