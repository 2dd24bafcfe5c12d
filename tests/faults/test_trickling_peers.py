"""Peers that trickle their answer one byte at a time never stretch a check past its
timeout: every probe that talks to a peer ends on time, and the peer sees its connection
closed. Also ``watcher once --json`` as a real process against such a peer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.agent_checkins import AgentCheckinsConfig, AgentCheckinsProbe
from probes.base import Probe, ProbeContext, Result, run_probe
from probes.command import CommandConfig, CommandProbe
from probes.http import HttpConfig, HttpProbe
from probes.imap import ImapConfig, ImapProbe
from probes.pop3 import Pop3Config, Pop3Probe
from probes.smtp import SmtpConfig, SmtpProbe
from probes.tcp import TcpConfig, TcpProbe
from tests.servers.base import pid_alive, wait_until
from tests.servers.sshd import Sshd
from tests.servers.trickle import TricklingPeer
from tests.support.helpers import write_config
from tests.support.ssh_helpers import new_pool, settings_for_sshd
from watcher.delivery.httpclient import HttpClients

HTTP = HttpClients()
TIMEOUT = 2.0
# Generous: the machine running the tests may be loaded; the point is "ends", not "fast".
MARGIN = 3.0

Peer = Callable[..., TricklingPeer]


@pytest.fixture
def peer() -> Iterator[Callable[..., TricklingPeer]]:
    started: list[TricklingPeer] = []

    def make(**kwargs: Any) -> TricklingPeer:
        started.append(TricklingPeer(**kwargs))
        return started[-1]

    yield make
    for p in started:
        p.stop()


def timed_check(probe: Probe, runner: Any = None) -> tuple[list[Result], float]:
    ctx = ProbeContext(
        site="acme",
        target="t",
        host="127.0.0.1",
        labels={},
        timeout=TIMEOUT,
        http=HTTP,
        runner=runner,
    )
    started = time.monotonic()
    results = run_probe(probe, ctx, probe.kind)
    return results, time.monotonic() - started


def assert_cut_on_time(results: list[Result], took: float, peer: TricklingPeer) -> None:
    assert took < TIMEOUT + MARGIN, f"the check took {took:.1f}s: {results}"
    assert results and all(r.status in ("fail", "error") for r in results), results
    assert results[0].reason == "timeout", results[0]
    assert peer.wait_all_closed(5), "the peer never saw its connection closed"


def test_an_http_server_trickling_its_headers_is_cut_at_the_timeout(peer: Peer) -> None:
    p = peer(head=b"HTTP/1.1 200 OK\r\n", drip=b"X-Slow: yes\r\n")
    results, took = timed_check(HttpProbe(HttpConfig(url=p.url())))
    assert_cut_on_time(results, took, p)


def test_an_http_server_trickling_its_body_is_cut_at_the_timeout(peer: Peer) -> None:
    p = peer(head=b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", drip=b"a")
    results, took = timed_check(HttpProbe(HttpConfig(url=p.url())))
    assert_cut_on_time(results, took, p)


def test_an_https_server_that_stalls_the_handshake_is_cut_at_the_timeout(peer: Peer) -> None:
    p = peer(drip=b"")
    results, took = timed_check(HttpProbe(HttpConfig(url=p.url(scheme="https"))))
    assert_cut_on_time(results, took, p)


def test_an_smtp_server_trickling_an_endless_banner_is_cut_at_the_timeout(peer: Peer) -> None:
    p = peer(drip=b"220-endless banner\r\n")
    results, took = timed_check(SmtpProbe(SmtpConfig(host=p.host, port=p.port)))
    assert_cut_on_time(results, took, p)


def test_an_imap_server_trickling_its_greeting_is_cut_at_the_timeout(peer: Peer) -> None:
    p = peer(head=b"* OK ", drip=b"z")
    results, took = timed_check(ImapProbe(ImapConfig(host=p.host, port=p.port)))
    assert_cut_on_time(results, took, p)


def test_a_pop3_server_trickling_its_greeting_is_cut_at_the_timeout(peer: Peer) -> None:
    p = peer(head=b"+OK ", drip=b"z")
    results, took = timed_check(Pop3Probe(Pop3Config(host=p.host, port=p.port)))
    assert_cut_on_time(results, took, p)


def test_a_tcp_service_trickling_a_banner_that_never_matches_is_cut_at_the_timeout(
    peer: Peer,
) -> None:
    p = peer(drip=b".")
    results, took = timed_check(
        TcpProbe(TcpConfig(host=p.host, port=p.port, send="HELLO\\r\\n", expect="READY"))
    )
    assert_cut_on_time(results, took, p)


def test_a_device_manager_trickling_its_page_headers_is_cut_at_the_timeout(peer: Peer) -> None:
    p = peer(head=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", drip=b"X-Slow: 1\r\n")
    results, took = timed_check(AgentCheckinsProbe(AgentCheckinsConfig(url=p.url("/devices"))))
    assert_cut_on_time(results, took, p)


def test_a_device_manager_trickling_its_page_body_is_cut_at_the_timeout(peer: Peer) -> None:
    p = peer(
        head=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[",
        drip=b" ",
    )
    results, took = timed_check(AgentCheckinsProbe(AgentCheckinsConfig(url=p.url("/devices"))))
    assert_cut_on_time(results, took, p)


def test_an_ssh_command_printing_a_byte_a_second_forever_is_cut_at_the_timeout(
    sshd: Sshd, tmp_path: Path
) -> None:
    pid_file = f"/tmp/watcher-trickle-{time.monotonic_ns()}.pid"
    command = f"echo $$ > {pid_file}; while :; do printf x; sleep 1; done"
    with new_pool() as pool:
        runner = pool.runner(settings_for_sshd(sshd))
        results, took = timed_check(CommandProbe(CommandConfig(run=command)), runner)
        assert took < TIMEOUT + MARGIN, f"the check took {took:.1f}s: {results}"
        [result] = results
        assert (result.status, result.reason) == ("error", "timeout"), result
        # The command itself ends: sshd was told its channel is gone.
        pid = int(Path(pid_file).read_text())
        wait_until(lambda: not pid_alive(pid), 10, "the remote command to end")
        # ... and the shared connection still serves the next check.
        [after], _ = timed_check(CommandProbe(CommandConfig(run="echo fine")), runner)
        assert after.status == "ok", after
    Path(pid_file).unlink(missing_ok=True)


def test_watcher_once_against_a_trickling_peer_prints_its_json_and_exits_on_time(
    peer: Peer,
    tmp_path: Path,
) -> None:
    p = peer(head=b"HTTP/1.1 200 OK\r\n", drip=b"X-Slow: yes\r\n")
    config = write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        defaults: {{timeout: {TIMEOUT:g}s}}
        targets:
          - name: shop
            probes: [{{http: {{url: "{p.url()}"}}}}]
        """,
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "once", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    took = time.monotonic() - started
    # Start-up of a Python process on a loaded machine takes its share of the margin.
    assert took < TIMEOUT + MARGIN + 5, f"watcher once took {took:.1f}s\n{done.stderr[-2000:]}"
    [result] = json.loads(done.stdout)
    assert (result["status"], result["reason"]) == ("fail", "timeout"), result
    assert done.returncode == 1
    assert p.wait_all_closed(5)
