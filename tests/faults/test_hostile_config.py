"""Hostile config files against real `watcher validate`, `watcher run` and a SIGHUP reload.

Each shape once crashed, hung or ate memory: control characters (even in a comment), NUL
bytes, undecodable bytes, a date that does not exist, ``!!int abc``, infinite and huge
durations, nesting hundreds deep, a YAML alias bomb, a zero interval. Now each is refused
with file:line:column, and a daemon sent one by SIGHUP keeps its config, answers /healthz
throughout, stays small and still stops on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers.base import free_port
from tests.support.daemon import Daemon


def alias_bomb(levels: int = 12, width: int = 12) -> str:
    lines = [f"x0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"x{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


# name: (file bytes, expected line:column, text the message must carry)
SHAPES: dict[str, tuple[bytes, str, str]] = {
    "control character in a comment": (
        b"site: acme\n# owner: ops\x01team\ntargets: []\n",
        "2:13",
        "control character U+0001 is not allowed",
    ),
    "NUL byte in a value": (
        b"site: acme\nlisten: 127.0.0.1:9177\x00\n",
        "2:23",
        "control character U+0000",
    ),
    "escape character": (b"site: a\x1bcme\n", "1:8", "U+001B"),
    "invalid UTF-8": (
        b"site: acme\ntargets:\n  - name: caf\xe9\n",
        "3:14",
        "byte 0xe9 is not UTF-8",
    ),
    "a date that does not exist": (
        b"site: acme\nbusiness_hours: {holidays: [2026-02-30]}\n",
        "2:29",
        "'2026-02-30' cannot be read as timestamp",
    ),
    "a tag that cannot read its value": (
        b"site: acme\nworkers: !!int abc\n",
        "2:10",
        "'abc' cannot be read as int",
    ),
    "an infinite duration": (
        b"site: acme\ndefaults: {interval: .inf}\n",
        "2:22",
        "'.inf' is not a finite number",
    ),
    "infinity as text": (
        b"site: acme\ntargets:\n  - name: web\n    probes:\n"
        b'      - http: {url: "http://127.0.0.1/", cert_min_days: "inf"}\n',
        "5:",
        "Input should be a finite number",
    ),
    "a huge duration": (
        b"site: acme\ndefaults: {timeout: 99999999999999999999d}\n",
        "2:21",
        "durations go from 0s to 36500d",
    ),
    "mappings nested 500 deep": (
        b"site: acme\nlabels: " + b"{a: " * 500 + b"1" + b"}" * 500 + b"\n",
        "2:",
        "nested more than 64 levels deep",
    ),
    "an alias bomb in an error message": (
        (alias_bomb() + "site: *l11\n").encode(),
        "",
        "expand to over",
    ),
}


def validate(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_hostile_config_is_refused_with_file_line_and_column(tmp_path: Path, shape: str) -> None:
    content, where, text = SHAPES[shape]
    path = tmp_path / "watcher.yml"
    path.write_bytes(content)
    done = validate(path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{path}:{where}" in done.stderr, done.stderr
    assert text in done.stderr, done.stderr
    # every problem is located
    for line in done.stderr.splitlines():
        if line and not line.startswith("    hint:") and not re.match(r"\d+ problems? ", line):
            assert re.match(re.escape(str(path)) + r":\d+:\d+: ", line), line


def _without_test_minimum() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WATCHER_MIN_INTERVAL", None)  # the tests' lowered minimum; a real site has none
    return env


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("defaults: {interval: 0s}\ntargets: []\n", 2),
        ("targets:\n  - name: web\n    interval: 0.5s\n    probes: []\n", 4),
        ("targets:\n  - name: web\n    probes:\n      - tcp: {port: 1, interval: 10ms}\n", 5),
    ],
    ids=["defaults", "target", "probe"],
)
def test_an_interval_under_a_second_is_refused_with_a_hint(
    tmp_path: Path, where: str, line: int
) -> None:
    path = tmp_path / "watcher.yml"
    path.write_text("site: acme\n" + where)
    done = validate(path, _without_test_minimum())
    assert done.returncode == 2, done.stderr
    assert f"{path}:{line}:" in done.stderr
    assert "would run the check over and over; the shortest is 1s" in done.stderr
    assert "write e.g. interval: 30s" in done.stderr


def test_watcher_run_does_not_start_on_a_zero_interval(tmp_path: Path) -> None:
    path = tmp_path / "watcher.yml"
    path.write_text(
        "site: acme\nstate: s.db\nlisten: null\ndefaults: {interval: 0s}\n"
        "targets:\n  - name: web\n    probes:\n      - tcp: {host: 127.0.0.1, port: 1}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_without_test_minimum(),
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "the shortest is 1s" in done.stderr
    assert not (tmp_path / "s.db").exists()


# ----------------------------------------------------------------------- SIGHUP reload


def _rss(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def _healthz(port: int) -> float:
    """Seconds /healthz took to answer 200 (raises if it does not answer in 5 s)."""
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200
    return time.monotonic() - started


def _refused(daemon: Daemon) -> int:
    _, text = daemon.get("/metrics")
    match = re.search(r'watcher_config_reloads_total\{outcome="refused"\} (\d+)', text)
    return int(float(match.group(1))) if match else 0


HOSTILE_RELOADS = {
    "alias bomb": (alias_bomb() + "site: acme\ntargets: *l11\n").encode(),
    "alias bomb in an error message": (alias_bomb() + "site: *l11\n").encode(),
    "nesting 100,000 deep": b"site: acme\nlabels: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "control characters": b"site: acme\n# \x01\x02\x03\x00\n",
    "invalid UTF-8": b"site: acme\n\xff\xfe\n",
    "a date that does not exist": b"site: acme\nbusiness_hours: {holidays: [2026-02-30]}\n",
    "an infinite interval": b"site: acme\ndefaults: {interval: .inf}\n",
}


def test_a_hostile_reload_keeps_the_daemon_answering_and_its_config(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "watcher.yml"
    good = (
        f"site: acme\nstate: state.db\nlisten: 127.0.0.1:{port}\n"
        "defaults: {interval: 1s, timeout: 2s}\n"
        f"targets:\n  - name: self\n    probes:\n      - tcp: {{host: 127.0.0.1, port: {port}}}\n"
    )
    config.write_text(good)
    daemon = Daemon(config, port).start()
    try:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        daemon.wait_for(lambda: "self" in daemon.get("/api/results")[1], 30, "a first result")
        before = _rss(pid)
        slowest = 0.0
        for count, (name, content) in enumerate(HOSTILE_RELOADS.items(), start=1):
            config.write_bytes(content)
            daemon.signal(signal.SIGHUP)
            # /healthz answers while the reload is parsed and after it is refused
            deadline = time.monotonic() + 30
            while _refused(daemon) < count:
                slowest = max(slowest, _healthz(port))
                assert time.monotonic() < deadline, f"{name}: reload never refused\n{daemon.log()}"
                time.sleep(0.05)
            slowest = max(slowest, _healthz(port))
        after = _rss(pid)
        growth = after["VmHWM"] - before["VmHWM"]
        print(
            f"\nhostile reloads: {len(HOSTILE_RELOADS)} refused; slowest /healthz "
            f"{slowest * 1000:.0f} ms; peak RSS {before['VmHWM'] / 2**20:.0f} -> "
            f"{after['VmHWM'] / 2**20:.0f} MB"
        )
        assert growth < 100 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MB"
        log = daemon.log()
        assert log.count("config reload refused, keeping the running config") == len(
            HOSTILE_RELOADS
        ), log
        assert "Traceback" not in log, log
        # still the old config: its check keeps running
        results = daemon.get("/api/results")[1]
        assert '"target": "self"' in results or '"target":"self"' in results, results
    finally:
        code = daemon.stop(timeout=30)
    assert code == 0, daemon.log()
