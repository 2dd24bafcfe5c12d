#!/usr/bin/env python3
"""Renders the sample ticket in docs/helpdesk.md (``--check``: fail if it is stale).

The sample is not written by hand: a disk on a mail server fills up, the real disk, load
and memory probes read recorded ``df``, ``/proc/loadavg`` and ``/proc/meminfo`` output, and
the real engine (rules, tracker, renderer, outbox) turns the results into the ticket a
helpdesk receives. What lands between the markers in docs/helpdesk.md is the queued
``open`` action's subject and body, and the text of the ``resolve`` that follows the
cleanup, exactly as an integration would send them.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probes import probe_class  # noqa: E402
from probes.base import CommandResult, ProbeContext, Result, run_probe  # noqa: E402
from watcher.app.pipeline import Engine  # noqa: E402
from watcher.config.load import load_config  # noqa: E402
from watcher.delivery.httpclient import HttpClients  # noqa: E402
from watcher.store import Store  # noqa: E402

DOC = ROOT / "docs" / "helpdesk.md"
START = "<!-- sample-ticket:start (scripts/build_ticket_sample.py writes this part) -->"
END = "<!-- sample-ticket:end -->"

# No traffic leaves the process: the probes read recorded output, and the webhook is
# only ever queued, never delivered.
CONFIG = """\
site: acme-pune
state: sample.db
listen: 127.0.0.1:9177
ssh: {user: monitor}
targets:
  - name: mail1
    host: mail1.acme.example
    description: Postfix and Dovecot for the Pune office
    labels: {role: mail, env: prod}
    runbook: https://wiki.acme.example/runbooks/mail1-disk
    probes:
      - disk: {paths: [/, /var], interval: 5m}
      - load: {interval: 5m}
      - memory: {interval: 5m}
integrations:
  tickets: [{webhook: {name: helpdesk, url: "http://127.0.0.1:9/tickets"}}]
"""

GB = 1024**3
SIZE = {"/": 20 * GB, "/var": 60 * GB}
DEVICE = {"/": "/dev/sda1", "/var": "/dev/sdb1"}


class RecordedHost:
    """Answers the probes' commands with what a real mail server printed, /var filling."""

    description = "ssh monitor@mail1.acme.example"

    def __init__(self) -> None:
        self.used = {"/": 0.412, "/var": 0.931}

    def run(self, command: Sequence[str] | str, timeout: float) -> CommandResult:
        argv = list(command) if not isinstance(command, str) else command.split()
        if argv[:3] == ["df", "-P", "-B1"]:
            return self._df(argv, inodes=False)
        if argv[:3] == ["df", "-P", "-i"]:
            return self._df(argv, inodes=True)
        if argv[0] == "sh":
            return CommandResult(0, "0.62 0.71 0.69 2/311 48113\n4\n", "", 0.01)
        if argv[:2] == ["cat", "/proc/meminfo"]:
            return CommandResult(0, MEMINFO, "", 0.01)
        return CommandResult(127, "", f"sh: 1: {argv[0]}: not found\n", 0.01)

    def _df(self, argv: list[str], *, inodes: bool) -> CommandResult:
        paths = argv[argv.index("--") + 1 :]
        head = (
            "Filesystem      Inodes   IUsed   IFree IUse% Mounted on"
            if inodes
            else "Filesystem     1-blocks        Used   Available Capacity Mounted on"
        )
        lines = [head]
        for path in paths:
            if inodes:
                total, used = 3932160, int(3932160 * (0.12 if path == "/var" else 0.09))
                lines.append(
                    f"{DEVICE[path]:<12} {total:>8} {used:>7} {total - used:>7} {round(100 * used / total):>4}% {path}"
                )
            else:
                size = SIZE[path]
                used = int(size * self.used[path])
                free = size - used
                lines.append(
                    f"{DEVICE[path]:<12} {size:>12} {used:>11} {free:>11} {round(100 * used / size):>7}% {path}"
                )
        return CommandResult(0, "\n".join(lines) + "\n", "", 0.02)


MEMINFO = """\
MemTotal:       16314560 kB
MemFree:         1183344 kB
MemAvailable:    9120448 kB
Buffers:          402112 kB
Cached:          7204860 kB
SwapCached:            0 kB
SwapTotal:       4194300 kB
SwapFree:        4194300 kB
"""


def scenario() -> tuple[str, str]:
    """The ticket as opened, and the resolve comment after the cleanup."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "watcher.yml").write_text(CONFIG)
        config = load_config(Path(directory) / "watcher.yml", environ={})
        store = Store(config.state_path)
        now = [datetime(2026, 11, 23, 4, 0, tzinfo=UTC)]  # Monday 09:30 IST
        engine = Engine(config, store, clock=lambda: now[0])
        host = RecordedHost()
        target = config.targets["mail1"]
        specs = target.probe_specs()
        http = HttpClients()

        def round_of_checks() -> None:
            results: list[Result] = []
            for spec in specs:
                ctx = ProbeContext(
                    site=config.site,
                    target=target.name,
                    host=target.host,
                    labels=target.labels,
                    timeout=10.0,
                    http=http,
                    runner=host,
                )
                probe = probe_class(spec.kind)(spec.config)
                results += run_probe(probe, ctx, spec.id, clock=lambda: now[0])
            engine.process(results)
            now[0] += timedelta(minutes=5)

        # /var fills over twenty minutes: P3 at 85%, raised to P2 (a ticket) at 95%.
        for used in (0.931, 0.938, 0.947, 0.956, 0.962):
            host.used["/var"] = used
            round_of_checks()
        # An engineer clears old logs; two good results resolve the incident.
        for used in (0.714, 0.713):
            host.used["/var"] = used
            round_of_checks()
        rows = store.outbox()
        store.close()
    opened = next(r for r in rows if r.action == "open").payload
    resolved = next(r for r in rows if r.action == "resolve").payload
    ticket = f"Subject: {opened['subject']}\n\n{opened['body']}"
    return ticket, resolved["text"]


def section() -> str:
    ticket, resolve = scenario()
    return (
        f"{START}\n"
        "```text\n"
        f"{ticket}\n"
        "```\n\n"
        "When /var is back under the line for two checks in a row "
        "(`defaults.resolve_after`), the ticket gets this comment and is resolved:\n\n"
        "```text\n"
        f"{resolve}\n"
        "```\n"
        f"{END}"
    )


def main() -> int:
    text = DOC.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        print(f"{DOC.name} has no sample-ticket markers", file=sys.stderr)
        return 1
    updated = pattern.sub(lambda _: section(), text)
    if "--check" in sys.argv:
        if updated != text:
            print(
                "docs/helpdesk.md's sample ticket is stale: run scripts/build_ticket_sample.py",
                file=sys.stderr,
            )
            return 1
        return 0
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
