"""Failure to ticket at the default interval, without and with rechecks.

Two real ``watcher run`` daemons run side by side with the default interval (60 s) and the
shipped rules (``http-down``: failed ``for: 2m``, P1, a ticket): "before" with
``retry_interval: 60s`` (equal to the interval: no rechecks), "after" with the default
``retry_interval`` (or ``--retry``). Each checks ``--runs`` web targets on a loopback HTTP
server and opens tickets through the ``webhook`` integration on a loopback receiver. Once
every target was checked ok, each target starts answering 503 at its own random moment
within one interval (a random phase of its schedule; target i fails at the same moment
in both daemons), and the bench waits for its ``ticket.open`` POST. Per run it reports
the wait until the first failing check (``detect``), from there to the ticket
(``confirm``), the total, and how many failing checks the hold saw (``looks``).

``--hold 30s`` replaces the shipped rule's hold (same rule, same name), to show where a
hold shorter than the interval lands.

    .venv/bin/python bench/failure_to_ticket.py [--runs 3] [--retry 10s] [--hold 30s]

Loopback only; bounded: at most one interval plus the hold plus two minutes.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers.base import cleanup_all, free_port, make_workdir  # noqa: E402
from tests.servers.httpd import HTTPTestServer  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from watcher.core.durations import parse_duration  # noqa: E402

INTERVAL = 60.0  # the shipped default, left unset in the configs


@dataclass
class Run:
    mode: str
    target: str
    failed_at: float
    first_fail_at: float = 0.0
    ticket_at: float = 0.0
    looks: int = 0

    @property
    def detect(self) -> float:
        return self.first_fail_at - self.failed_at

    @property
    def confirm(self) -> float:
        return self.ticket_at - self.first_fail_at

    @property
    def total(self) -> float:
        return self.ticket_at - self.failed_at


def config_text(
    mode: str, port: int, web: HTTPTestServer, hook: HTTPTestServer, runs: int, retry: str
) -> str:
    targets = "\n".join(
        f'  - {{name: web-{i}, host: 127.0.0.1, probes: [{{http: {{url: "{web.url_for(f"/{mode}/{i}")}"}}}}]}}'
        for i in range(runs)
    )
    return f"""site: bench-{mode}
state: state.db
listen: 127.0.0.1:{port}
defaults: {{retry_interval: {retry}}}
rules: [default, bench-rules.yml]
integrations:
  tickets:
    - webhook: {{url: "{hook.url_for(f"/{mode}")}"}}
targets:
{targets}
"""


def rules_text(hold: str | None) -> str:
    if hold is None:
        return "rules: []\n"  # the shipped http-down as it is
    # Same name as the shipped rule, so it replaces it: only the hold differs.
    return f"""rules:
  - name: http-down
    probe: http
    when: "failed and reason not in ('slow', 'cert_expiring')"
    for: {hold}
    priority: P1
    summary: "{{target}}: web service down ({{message}})"
"""


def ticket_times(hook: HTTPTestServer, mode: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for request in hook.requests_for(f"/{mode}"):
        payload = json.loads(request.body)
        if payload.get("event") == "ticket.open":
            out.setdefault(payload["incident"]["target"], request.time)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="targets failed per daemon")
    parser.add_argument("--retry", default="10s", help='"after": retry_interval (default 10s)')
    parser.add_argument("--hold", default=None, help="replace http-down's for: (default 2m)")
    args = parser.parse_args()
    hold_s = parse_duration(args.hold or "2m").total_seconds()
    modes = {"before": f"{INTERVAL:.0f}s", "after": args.retry}

    web = HTTPTestServer().start()
    hook = HTTPTestServer().start()
    daemons: dict[str, Daemon] = {}
    try:
        for mode, retry in modes.items():
            workdir = make_workdir(f"ftt-{mode}")
            (workdir / "bench-rules.yml").write_text(rules_text(args.hold))
            port = free_port()
            (workdir / "watcher.yml").write_text(
                config_text(mode, port, web, hook, args.runs, retry)
            )
            daemons[mode] = Daemon(workdir / "watcher.yml", port).start()

        paths = [f"/{mode}/{i}" for mode in modes for i in range(args.runs)]
        deadline = time.monotonic() + INTERVAL + 30
        while not all(web.requests_for(p) for p in paths):  # every target checked ok once
            if time.monotonic() > deadline:
                raise SystemExit("not every target was checked within one interval")
            time.sleep(0.2)

        start = time.time()
        moments = sorted((start + random.uniform(0, INTERVAL), i) for i in range(args.runs))
        runs = {(mode, i): Run(mode, f"web-{i}", at) for at, i in moments for mode in modes}
        for at, i in moments:
            time.sleep(max(0.0, at - time.time()))
            for mode in modes:
                web.set_response(f"/{mode}/{i}", 503, "down for the bench\n")
                runs[(mode, i)].failed_at = time.time()

        deadline = time.monotonic() + INTERVAL + hold_s + 120
        done: dict[str, dict[str, float]] = {}
        while time.monotonic() < deadline:
            done = {mode: ticket_times(hook, mode) for mode in modes}
            if all(f"web-{i}" in done[mode] for mode in modes for i in range(args.runs)):
                break
            time.sleep(0.2)
        for (mode, i), run in runs.items():
            run.ticket_at = done[mode].get(run.target, float("nan"))
            failing = [
                r.time
                for r in web.requests_for(f"/{mode}/{i}")
                if run.failed_at <= r.time <= run.ticket_at
            ]
            run.first_fail_at = failing[0] if failing else float("nan")
            run.looks = len(failing)
    finally:
        for daemon in daemons.values():
            daemon.stop()
        web.stop()
        hook.stop()
        cleanup_all()

    print(f"interval 60 s (default), http-down for: {args.hold or '2m'}, {args.runs} runs per mode")
    print(f"{'mode':<7} {'target':<7} {'detect':>7} {'confirm':>8} {'total':>7} {'looks':>5}")
    for run in sorted(runs.values(), key=lambda r: (r.mode != "before", r.target)):
        print(
            f"{run.mode:<7} {run.target:<7} {run.detect:7.1f} {run.confirm:8.1f} {run.total:7.1f} {run.looks:5d}"
        )
    for mode, retry in modes.items():
        totals = [r.total for r in runs.values() if r.mode == mode]
        print(
            f"{mode} (retry_interval {retry}): failure to ticket mean {statistics.mean(totals):.1f} s,"
            f" min {min(totals):.1f} s, max {max(totals):.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
