"""A site-like load on one watcher: many targets, many distinct SSH servers far away, some
targets timing out or refusing, incidents opening and resolving through a real webhook.

The daemon is ``watcher.app.daemon.App`` on a generated watcher.yml (everything ``watcher run``
runs: scheduler, probe pool, engine, SQLite state on disk, outbox, web server), in a
process of its own (``bench/scale_daemon.py``, which imports only watcher, so CPU and
memory are the daemon's). Default intervals and timeouts (60 s, 10 s), default workers.

- ``--web-share`` of the targets (default 80 %) are web targets: ``http``, ``https`` (a
  fresh, verified TLS handshake per check) and ``tcp`` against one local nginx;
- the rest are servers: ``load`` and ``memory`` over SSH, and ``tcp``. They reach
  ``--ssh-servers`` distinct SSH endpoints (0: one per server), each its own address
  127.1.x.y, so the pool keeps one connection per endpoint; behind each endpoint a proxy
  delays every byte so that a round trip takes 50-300 ms longer (``bench/netsim.py``:
  this VM has no netem), in front of ``--sshd`` real OpenSSH servers;
- 1 % of the targets time out (their SYNs are dropped: every check waits its full
  timeout) and 1 % refuse connections;
- the rules are the shipped pack; tickets go to a webhook receiver in this process, which
  notes when each ``ticket.open`` and ``ticket.resolve`` arrives.

After one interval of warm-up the bench measures for ``--duration`` seconds: checks per
second against the schedule's, schedule lag (every check: from its due time to a worker
starting it), the daemon's CPU in cores, its peak RSS and threads. At the start of the
measured window ``--flips`` healthy web targets start answering 500: the time from that
moment to the webhook's ``ticket.open`` is failure-to-ticket at the default interval
(the first failing check comes up to one interval later, then the rule's hold); each is
healed once its ticket arrives and the time to ``ticket.resolve`` is noted. The bench waits
for those at most two intervals + the hold + 30 s after the failure. Last, ``bench/ssh_idle.py`` opens as
many connections with watcher's SSH pool to the same endpoints and measures the CPU they
take while idle.

    sudo .venv/bin/python bench/site_bench.py --targets 2000 --ssh-servers 200 --duration 120
    sudo .venv/bin/python bench/site_bench.py --targets 10000 --duration 120   # the full site

Exit status 0 if the targets of the issue are all met (on 2 cores: p99 lag < 2 s, peak RSS
< 300 MB, under one core, idle SSH < 5 % of a core), 1 if not. Traffic stays on 127.0.0.0/8;
every load is bounded by the flags.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchlib import (
    loadavg,
    machine,
    proc_cpu,
    proc_status,
    say,
    start_nginx,
    table,
    tree_cpu,
)

from tests.servers.base import cleanup_all, free_port, make_workdir
from tests.servers.certs import make_test_pki
from tests.servers.sshd import Sshd, ensure_test_user, make_client_keys

HERE = Path(__file__).resolve().parent
HOLD_S = 120  # http-down's `for: 2m` in the shipped rules


# --------------------------------------------------------------------------- webhook


@dataclass
class Hook:
    """The webhook receiver: every event with the monotonic time it arrived."""

    events: list[tuple[float, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def first(self, event: str, target: str, after: float = 0.0) -> float | None:
        with self.lock:
            times = [
                t for t, e, name in self.events if e == event and name == target and t >= after
            ]
        return min(times, default=None)

    def count(self, event: str) -> int:
        with self.lock:
            return sum(1 for _, e, _ in self.events if e == event)


def start_hook(hook: Hook) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            incident = body.get("incident", {})
            with hook.lock:
                hook.events.append(
                    (time.monotonic(), body.get("event", ""), incident.get("target", ""))
                )
            answer = json.dumps({"id": f"T{incident.get('incident_id', 0)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


# ------------------------------------------------------------------------------ site


@dataclass
class Site:
    config: Path
    netsim_spec: Path
    idle_spec: Path
    servers: list[int]  # pids of nginx and sshds: their CPU is not the daemon's
    web: int = 0
    ssh_targets: int = 0
    endpoints: int = 0
    timeouts: int = 0
    refusals: int = 0
    flips: list[tuple[str, str]] = field(default_factory=list)  # (target, url path)


def endpoint_host(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def build_site(workdir: Path, args: argparse.Namespace, hook_port: int) -> tuple[Site, Any]:
    pki = make_test_pki(workdir / "pki")
    nginx = start_nginx(workdir / "nginx", pki.valid.cert_path, pki.valid.key_path)
    web = round(args.targets * args.web_share)
    ssh_targets = args.targets - web
    endpoints = min(args.ssh_servers or ssh_targets, ssh_targets)
    keys = make_client_keys(workdir / "keys")
    user = ensure_test_user()
    sshds = [
        Sshd(
            make_workdir(f"site-sshd{n}"),
            user=user,
            client_keys=keys,
            extra_config=["LogLevel ERROR", "MaxStartups 500", "MaxSessions 50"],
        ).start()
        for n in range(min(args.sshd, max(endpoints, 1)) if ssh_targets else 0)
    ]
    port = free_port(endpoint_host(0))
    blackhole, refused = free_port(), free_port()
    proxies = []
    known = []
    for i in range(endpoints):
        sshd = sshds[i % len(sshds)]
        delay = 50 + (i * 37) % 251  # 50-300 ms spread evenly, the same on every run
        proxies.append(
            {
                "host": endpoint_host(i),
                "port": port,
                "to": ["127.0.0.1", sshd.port],
                "delay_ms": delay,
            }
        )
        known.append(f"[{endpoint_host(i)}]:{port} {sshd.host_public_key_line}")
    netsim_spec = workdir / "netsim.json"
    blackholes = [{"host": "127.0.0.1", "port": blackhole}]
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text("\n".join(known) + "\n")
    idle_spec = workdir / "idle.json"
    idle_spec.write_text(
        json.dumps(
            {
                "user": user.name,
                "key_file": str(keys.ed25519),
                "known_hosts": str(known_hosts),
                "endpoints": [[p["host"], p["port"]] for p in proxies],
            }
        )
    )

    def fate(i: int) -> str:
        """1 % time out, 1 % refuse (at the rates asked), spread over both kinds."""
        slot = (i * 7919) % 10_000 / 10_000  # a fixed scatter, the same on every run
        if slot < args.timeouts:
            return "timeout"
        if slot < args.timeouts + args.refusals:
            return "refused"
        return "ok"

    lines = [
        "site: site-bench",
        f"state: {workdir / 'state' / 'watcher.db'}",
        f"listen: 127.0.0.1:{free_port()}",
        "log_level: warning",
        f"workers: {args.workers}" if args.workers else "",
        f"defaults: {{interval: {args.interval}s}}" if args.interval != 60 else "",
        "rules: [default]",
        f'integrations: {{tickets: [{{webhook: {{url: "http://127.0.0.1:{hook_port}/hook"}}}}]}}',
        "ssh:",
        f"  user: {user.name}",
        f"  key_file: {keys.ed25519}",
        f"  known_hosts: {known_hosts}",
        "targets:",
    ]
    site = Site(
        workdir / "watcher.yml", netsim_spec, idle_spec, [nginx.pid, *(s.pid or 0 for s in sshds)]
    )
    site.web, site.ssh_targets, site.endpoints = web, ssh_targets, endpoints
    for i in range(web):
        f = fate(i)
        plain, tls, tcp = nginx.plain, nginx.tls, nginx.plain
        if f != "ok":
            plain = tls = tcp = blackhole if f == "timeout" else refused
        site.timeouts += f == "timeout"
        site.refusals += f == "refused"
        name, path = f"web-{i:05d}", f"/t/{i:05d}"
        if f == "ok" and len(site.flips) < args.flips and i % 50 == 25:
            site.flips.append((name, path))
        lines += [
            f"  - name: {name}",
            "    host: 127.0.0.1",
            "    probes:",
            f'      - http: {{url: "http://127.0.0.1:{plain}{path}"}}',
            f'      - http: {{name: https, url: "https://127.0.0.1:{tls}{path}", ca_file: "{pki.ca.cert_path}"}}',
            f"      - tcp: {{port: {tcp}}}",
        ]
    for j in range(ssh_targets):
        f = fate(web + j)
        site.timeouts += f == "timeout"
        site.refusals += f == "refused"
        host, ssh_port, tcp = endpoint_host(j % endpoints), port, nginx.plain
        if f != "ok":
            # A silent or refusing server of its own (the pool keys connections by host):
            # 127.2.x.y drops SYNs, nothing listens on 127.3.x.y.
            n = site.timeouts + site.refusals
            silent = f == "timeout"
            host = f"127.{2 if silent else 3}.{n // 250}.{n % 250 + 1}"
            ssh_port = blackhole if silent else refused
            if silent:
                blackholes.append({"host": host, "port": blackhole})
            tcp = ssh_port
        lines += [
            f"  - name: srv-{j:05d}",
            f"    host: {host}",
            "    transport: ssh",
            f"    ssh: {{port: {ssh_port}}}",
            "    probes:",
            "      - load: {}",
            "      - memory: {}",
            f"      - tcp: {{host: {host if f != 'ok' else '127.0.0.1'}, port: {tcp}}}",
        ]
    netsim_spec.write_text(json.dumps({"proxies": proxies, "blackholes": blackholes}))
    site.config.write_text("\n".join(line for line in lines if line) + "\n")
    return site, nginx


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument(
        "--ssh-servers",
        type=int,
        default=200,
        help="distinct SSH endpoints (0: one per server target)",
    )
    parser.add_argument(
        "--sshd", type=int, default=8, help="real sshd processes behind the endpoints"
    )
    parser.add_argument(
        "--duration", type=float, default=120, help="seconds measured after one interval"
    )
    parser.add_argument(
        "--interval", type=int, default=60, help="check interval (default: watcher's, 60 s)"
    )
    parser.add_argument("--web-share", type=float, default=0.8)
    parser.add_argument("--timeouts", type=float, default=0.01, help="share of targets timing out")
    parser.add_argument("--refusals", type=float, default=0.01, help="share of targets refusing")
    parser.add_argument(
        "--flips", type=int, default=5, help="healthy web targets failed at the start of the window"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="workers: in watcher.yml (0: the default)"
    )
    parser.add_argument("--idle-window", type=float, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    try:
        return run(args)
    finally:
        errors = cleanup_all()
        if errors:
            print("cleanup problems:", errors, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    workdir = make_workdir("site-bench")
    hook = Hook()
    hook_server, hook_port = start_hook(hook)
    site, nginx = build_site(workdir, args, hook_port)
    netsim = subprocess.Popen(
        [sys.executable, str(HERE / "netsim.py"), str(site.netsim_spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    daemon: subprocess.Popen[str] | None = None
    try:
        assert netsim.stdout is not None
        if netsim.stdout.readline().strip() != "READY":
            raise SystemExit("netsim did not start")
        say(
            f"site: {site.web} web targets, {site.ssh_targets} servers over {site.endpoints} SSH endpoints"
            f" ({args.sshd} sshd, 50-300 ms), {site.timeouts} timing out, {site.refusals} refusing;"
            f" load average {loadavg()}"
        )
        start_load = loadavg()
        out, log_file = workdir / "figures.json", workdir / "watcher.log"
        # From the failure: up to one interval to the first failing check, the hold, the
        # delivery; then up to one interval to the healed check and its resolve.
        wait_after_flip = 2 * args.interval + HOLD_S + 30
        linger = wait_after_flip
        daemon = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "scale_daemon.py"),
                str(site.config),
                f"--warmup={args.interval}",
                f"--measure={args.duration}",
                f"--linger={linger}",
                f"--out={out}",
                f"--log={log_file}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert daemon.stdout is not None and daemon.stdin is not None
        threads: list[int] = []
        sampler_stop = threading.Event()

        def sample() -> None:
            while not sampler_stop.wait(1.0):
                n = proc_status(daemon.pid).get("Threads")
                if n:
                    threads.append(n)

        threading.Thread(target=sample, daemon=True).start()
        if daemon.stdout.readline().strip() != "MEASURING":
            raise SystemExit(f"the daemon stopped early (exit {daemon.wait()}); see {log_file}")
        flip_at = time.monotonic()
        for _, path in site.flips:
            nginx.fail(path)
        others0, wall0 = tree_cpu(site.servers) + proc_cpu(netsim.pid), time.monotonic()
        say(f"measuring {args.duration:g} s; {len(site.flips)} targets failed now")
        if daemon.stdout.readline().strip() != "MEASURED":
            raise SystemExit(f"the daemon stopped early (exit {daemon.wait()}); see {log_file}")
        others = (tree_cpu(site.servers) + proc_cpu(netsim.pid) - others0) / (
            time.monotonic() - wall0
        )
        end_load = loadavg()
        # Heal each flipped target once its ticket is open; wait for its resolve.
        healed: dict[str, float] = {}
        deadline = flip_at + wait_after_flip
        say(f"waiting up to {deadline - time.monotonic():.0f} s for the failed targets' tickets")
        while time.monotonic() < deadline:
            for name, path in site.flips:
                if name not in healed and hook.first("ticket.open", name, flip_at):
                    nginx.fail(path, failing=False)
                    healed[name] = time.monotonic()
            if len(healed) == len(site.flips) and all(
                hook.first("ticket.resolve", n, healed[n]) for n in healed
            ):
                break
            time.sleep(0.5)
        sampler_stop.set()
        daemon.stdin.write("stop\n")
        daemon.stdin.flush()
        if daemon.wait(timeout=120) != 0:
            raise SystemExit(f"the daemon failed (exit {daemon.returncode}); see {log_file}")
        say("idle SSH connections")
        idle = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    str(HERE / "ssh_idle.py"),
                    str(site.idle_spec),
                    f"--window={args.idle_window}",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout
        )
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if netsim.poll() is None:
            netsim.terminate()
            netsim.wait(timeout=10)
        hook_server.shutdown()
    f = json.loads(out.read_text())
    tickets = []
    for name, _ in site.flips:
        opened = hook.first("ticket.open", name, flip_at)
        resolved = (
            hook.first("ticket.resolve", name, healed.get(name, flip_at))
            if name in healed
            else None
        )
        tickets.append(
            (
                name,
                opened - flip_at if opened else None,
                resolved - healed[name] if resolved and name in healed else None,
            )
        )
    figures = {
        **f,
        "args": vars(args) | {"json": str(args.json)},
        "threads_max": max(threads, default=0),
        "threads_median": statistics.median(threads) if threads else 0,
        "others_cores": others,
        "idle": idle,
        "tickets": tickets,
        "webhook_events": {
            e: hook.count(e)
            for e in ("ticket.open", "ticket.resolve", "ticket.comment", "ticket.priority")
        },
        "load_start": start_load,
        "load_end": end_load,
    }
    ok = report(figures, site, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0 if ok else 1


def report(f: dict[str, Any], site: Site, args: argparse.Namespace) -> bool:
    mb = 2**20
    wall = f["measured_s"]
    cores = (f["user_s"] + f["sys_s"]) / wall
    rate, wanted = f["runs"] / wall, f["checks"] / args.interval
    idle = f["idle"]
    opened = [t for _, t, _ in f["tickets"] if t is not None]
    resolved = [t for _, _, t in f["tickets"] if t is not None]

    def span(values: list[float]) -> str:
        if not values:
            return "none arrived"
        return f"median {statistics.median(values):.0f} s, max {max(values):.0f} s ({len(values)} of {len(f['tickets'])})"

    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    rows = [
        (
            "checks per second: results kept / started",
            # A check whose result came after the watchdog reported it is not counted as run.
            f"{rate:,.1f} / {f['lag_samples'] / wall:,.1f} of {wanted:,.1f} wanted",
            "all",
            met(rate >= 0.98 * wanted),
        ),
        (
            "schedule lag p50 / p99 / max",
            f"{f['lag_p50_s']:.3f} s / {f['lag_p99_s']:.3f} s / {f['lag_max_s']:.1f} s ({f['lag_samples']:,} checks)",
            "p99 < 2 s",
            met(f["lag_p99_s"] < 2),
        ),
        (
            "daemon CPU (user+sys)",
            f"{cores:.2f} cores ({1000 * cores / rate if rate else 0:.2f} ms per check)",
            "< 1 core",
            met(cores < 1),
        ),
        (
            "daemon peak RSS",
            f"{f['rss_peak'] / mb:.0f} MB (median {f['rss_median'] / mb:.0f} MB)",
            "< 300 MB",
            met(f["rss_peak"] < 300 * mb),
        ),
        (
            f"idle CPU, {idle['connections']} SSH connections open (watcher's pool, no checks)",
            f"{100 * idle['idle_cpu_share']:.1f} % of a core, {idle['threads']} threads"
            + (f", {idle['failed']} failed to open" if idle["failed"] else ""),
            "< 5 %",
            met(idle["idle_cpu_share"] < 0.05),
        ),
        ("daemon threads, median / max", f"{f['threads_median']:.0f} / {f['threads_max']}", "", ""),
        (
            f"failure to ticket at a {args.interval} s interval (rule hold {HOLD_S} s)",
            span(opened),
            "",
            "",
        ),
        ("healed to ticket resolved", span(resolved), "", ""),
        (
            "checks skipped (still running) / past hard timeout",
            f"{f['skipped']:.0f} / {f['hard_timeouts']:.0f}",
            "",
            "",
        ),
        (
            "results by check and status",
            ", ".join(f"{k} {n:,}" for k, n in f["statuses"].items()),
            "",
            "",
        ),
        (
            "webhook events received",
            ", ".join(f"{k} {n}" for k, n in f["webhook_events"].items()),
            "",
            "",
        ),
        (
            "open incidents at the end of the window",
            ", ".join(f"{p} {n}" for p, n in f["incidents_open"].items()),
            "",
            "",
        ),
        (
            "nginx, sshd and the delay proxy (not the daemon)",
            f"{f['others_cores']:.2f} cores",
            "",
            "",
        ),
        ("config load", f"{f['config_load_s']:.1f} s", "", ""),
    ]
    print(
        f"\nSite: {args.targets:,} targets ({site.web:,} web: http, https, tcp; {site.ssh_targets:,} servers:"
        f" load and memory over SSH, tcp), {f['checks']:,} checks every {args.interval} s;"
        f" {site.endpoints:,} SSH endpoints 50-300 ms away in front of {args.sshd} sshd;"
        f" {site.timeouts} targets timing out, {site.refusals} refusing; measured {wall:.0f} s after"
        f" {args.interval} s of warm-up.\n{machine()}; load average {f['load_start']} at the start,"
        f" {f['load_end']} at the end of the window\n"
    )
    print(table(["figure", "value", "target (2 cores)", ""], rows))
    print("\nfailure to ticket, per failed target (s from the failure):")
    for name, opened_s, resolved_s in f["tickets"]:
        o = f"{opened_s:.0f} s" if opened_s is not None else "no ticket"
        r = (
            f"{resolved_s:.0f} s after healing"
            if resolved_s is not None
            else "not resolved in time"
        )
        print(f"- {name}: ticket {o}; resolved {r}")
    return (
        f["lag_p99_s"] < 2
        and f["rss_peak"] < 300 * mb
        and cores < 1
        and idle["idle_cpu_share"] < 0.05
        and rate >= 0.98 * wanted
    )


if __name__ == "__main__":
    raise SystemExit(main())
