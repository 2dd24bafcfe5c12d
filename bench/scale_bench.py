"""A simulated site of 10,000 targets with 3 checks each at 60 s, run by the real daemon.

The watcher is ``watcher.app.daemon.App`` on a generated watcher.yml, in a process of its own
(``bench/scale_daemon.py``, which imports only watcher), with everything ``watcher run``
runs: scheduler, probe pool, engine and store (SQLite on disk), outbox, web server for
/metrics. The targets are real servers on loopback:

- web targets (``--web-share``, default 80 %): ``http`` and ``https`` (a fresh TLS
  handshake per check, verified against a test CA) and ``tcp``, all against one nginx;
- server targets (the rest): ``load`` and ``memory`` over SSH and ``tcp``; many logical
  targets share a few sshd instances (``--sshd``), as the pool shares one connection per
  host, port and user;
- ``--failing`` of the web targets answer 500, so incidents open and are kept up to date.

After one interval of warm-up (first runs are spread over one interval), the bench
measures for ``--minutes``: checks per second, schedule lag (how late each check started
against its timetable, every sample), the daemon's CPU (user+sys) in total and per check,
its RSS (peak over the whole run, config loading included), SQLite rows and transactions
per second, and the /metrics scrape (by curl, every 15 s, so the scraper's CPU is not
counted).

    sudo .venv/bin/python bench/scale_bench.py [--targets 10000] [--minutes 5]

Needs root (the sshd test login), nginx, openssh-server and curl. Traffic stays on
127.0.0.1; every load is bounded by ``--targets`` and ``--minutes``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers.base import (  # noqa: E402
    ManagedProcess,
    cleanup_all,
    descendants,
    free_port,
    make_workdir,
    wait_for_port,
)
from tests.servers.certs import make_test_pki  # noqa: E402
from tests.servers.sshd import Sshd, ensure_test_user, make_client_keys  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TICKS = os.sysconf("SC_CLK_TCK")
SCRAPE_EVERY = 15.0


# ------------------------------------------------------------------------- the site


def start_nginx(workdir: Path, cert: Path, key: Path) -> tuple[ManagedProcess, int, int]:
    """One nginx worker: ``/fail/...`` answers 500, everything else 200, no access log."""
    plain, tls = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
        worker_processes 1;
        daemon off;
        pid {workdir}/nginx.pid;
        error_log {workdir}/error.log;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {workdir}/tmp;
            server {{
                listen 127.0.0.1:{plain} backlog=4096;
                listen 127.0.0.1:{tls} ssl backlog=4096;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                ssl_session_cache off;
                ssl_session_tickets off;
                location /fail/ {{ return 500 "down\\n"; }}
                location / {{ return 200 "up\\n"; }}
            }}
        }}
        """
    )
    process = ManagedProcess(
        [NGINX, "-c", str(conf), "-p", str(workdir)], workdir / "nginx.out", name="nginx"
    )
    process.start()
    wait_for_port("127.0.0.1", plain, 10)
    wait_for_port("127.0.0.1", tls, 10)
    return process, plain, tls


@dataclass
class Site:
    config: Path
    servers: list[int] = field(default_factory=list)  # pids whose CPU is the site's, not watcher's
    web: int = 0
    ssh: int = 0
    failing: int = 0


def build_site(workdir: Path, args: argparse.Namespace) -> Site:
    pki = make_test_pki(workdir / "pki")
    nginx, plain, tls = start_nginx(workdir / "nginx", pki.valid.cert_path, pki.valid.key_path)
    web = round(args.targets * args.web_share)
    servers = args.targets - web
    sshds: list[Sshd] = []
    keys = make_client_keys(workdir / "keys")
    if servers:
        user = ensure_test_user()
        for n in range(args.sshd):
            sshds.append(
                Sshd(
                    make_workdir(f"scale-sshd{n}"),
                    user=user,
                    client_keys=keys,
                    extra_config=["LogLevel ERROR"],
                ).start()
            )
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text("".join(s.known_hosts_line() + "\n" for s in sshds))
    failing_every = round(1 / args.failing) if args.failing else 0
    lines = [
        "site: scale-bench",
        f"state: {workdir / 'state' / 'watcher.db'}",
        f"listen: 127.0.0.1:{free_port()}",
        "log_level: warning",
        f"workers: {args.workers}" if args.workers else "",
        f"defaults: {{interval: {args.interval}s, timeout: 10s}}",
        "ssh:",
        f"  user: {sshds[0].user if sshds else 'nobody'}",
        f"  key_file: {keys.ed25519}",
        f"  known_hosts: {known_hosts}",
        "targets:",
    ]
    failing = 0
    for i in range(web):
        path = f"/t/{i:05d}"
        if failing_every and i % failing_every == failing_every // 2:
            path = f"/fail/{i:05d}"
            failing += 1
        lines += [
            f"  - name: web-{i:05d}",
            "    host: 127.0.0.1",
            "    probes:",
            f'      - http: {{url: "http://127.0.0.1:{plain}{path}"}}',
            f'      - http: {{name: https, url: "https://127.0.0.1:{tls}{path}", ca_file: "{pki.ca.cert_path}"}}',
            f"      - tcp: {{port: {plain}}}",
        ]
    for i in range(servers):
        sshd = sshds[i % len(sshds)]
        lines += [
            f"  - name: srv-{i:05d}",
            "    host: 127.0.0.1",
            "    transport: ssh",
            f"    ssh: {{port: {sshd.port}}}",
            "    probes:",
            "      - load: {}",
            "      - memory: {}",
            f"      - tcp: {{port: {plain}}}",
        ]
    config = workdir / "watcher.yml"
    config.write_text("\n".join(line for line in lines if line) + "\n")
    pids = [p for p in [nginx.pid, *(s.pid for s in sshds)] if p]
    return Site(config, pids, web, servers, failing)


# ------------------------------------------------------------------- measurements


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and everything under it: live processes (the nginx worker)
    and reaped ones (sshd sessions, counted in their parent once they end)."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS
    return total


@dataclass
class Scrape:
    seconds: float
    size: int  # as sent: gzip, as Prometheus asks for it
    text_size: int
    series: int


def scrape(url: str, into: Path) -> Scrape:
    """One GET /metrics by curl asking for gzip as Prometheus does (its CPU is not the
    daemon's), timed by curl."""
    done = subprocess.run(
        [
            "curl",
            "-s",
            "--compressed",
            "-o",
            str(into),
            "-w",
            "%{time_total} %{size_download} %{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds, size, code = done.stdout.split()
    if code != "200":
        raise SystemExit(f"/metrics answered {code}")
    text = into.read_text()
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return Scrape(float(seconds), int(size), len(text.encode()), series)


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument(
        "--minutes", type=float, default=5.0, help="measured time after one interval of warm-up"
    )
    parser.add_argument(
        "--interval", type=int, default=60, help="seconds between runs of each check"
    )
    parser.add_argument(
        "--web-share", type=float, default=0.8, help="share of targets that are web targets"
    )
    parser.add_argument(
        "--failing", type=float, default=0.01, help="share of web targets answering 500"
    )
    parser.add_argument(
        "--sshd", type=int, default=4, help="sshd instances the server targets share"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="workers: in watcher.yml (0: the default)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--tracemalloc",
        type=Path,
        help="the daemon writes its biggest Python allocations here (slow)",
    )
    args = parser.parse_args()
    for binary in (NGINX, "/usr/sbin/sshd", shutil.which("curl") or "/usr/bin/curl"):
        if not os.access(binary, os.X_OK):
            print(f"missing {binary}: install nginx, openssh-server and curl", file=sys.stderr)
            return 2
    try:
        return run(args)
    finally:
        errors = cleanup_all()
        if errors:
            print("cleanup problems:", errors, file=sys.stderr)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    workdir = make_workdir("scale-bench")
    site = build_site(workdir, args)
    say(
        f"site: {site.web} web targets ({site.failing} failing), {site.ssh} server targets over {args.sshd} sshd"
    )
    listen = next(
        line.split()[1]
        for line in site.config.read_text().splitlines()
        if line.startswith("listen:")
    )
    out, log_file = workdir / "figures.json", workdir / "watcher.log"
    measure = args.minutes * 60
    daemon = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "scale_daemon.py"),
            str(site.config),
            f"--warmup={args.interval}",
            f"--measure={measure}",
            f"--out={out}",
            f"--log={log_file}",
            *([f"--tracemalloc={args.tracemalloc}"] if args.tracemalloc else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    scrapes: list[Scrape] = []
    try:
        say(
            f"daemon {daemon.pid} starting; {args.interval} s of warm-up, then {args.minutes:g} min measured"
        )
        assert daemon.stdout is not None
        if daemon.stdout.readline().strip() != "MEASURING":
            raise SystemExit(f"the daemon stopped early (exit {daemon.wait()}); see {log_file}")
        servers0, wall0 = sum(tree_cpu(p) for p in site.servers), time.perf_counter()
        next_scrape, next_say = wall0 + 5, wall0 + 60
        while (now := time.perf_counter()) < wall0 + measure - 5:
            if now >= next_scrape:
                scrapes.append(scrape(f"http://{listen}/metrics", workdir / "metrics.txt"))
                next_scrape += SCRAPE_EVERY
            if now >= next_say:
                say(f"{(now - wall0) / 60:.0f} min measured; load average {os.getloadavg()[0]:.2f}")
                next_say += 60
            time.sleep(0.5)
        servers_cpu = sum(tree_cpu(p) for p in site.servers) - servers0
        servers_wall = time.perf_counter() - wall0
        load = os.getloadavg()
        if daemon.wait(timeout=measure + 120) != 0:
            raise SystemExit(f"the daemon failed (exit {daemon.returncode}); see {log_file}")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    f = json.loads(out.read_text())
    log_lines = log_file.read_text().splitlines() if log_file.exists() else []
    wall = f["measured_s"]
    figures = {
        **f,
        "targets": args.targets,
        "interval_s": args.interval,
        "checks_per_s": f["runs"] / wall,
        "expected_checks_per_s": f["checks"] / args.interval,
        "cpu_percent_of_one_core": 100 * (f["user_s"] + f["sys_s"]) / wall,
        "sys_percent_of_one_core": 100 * f["sys_s"] / wall,
        "cpu_ms_per_check": 1000 * (f["user_s"] + f["sys_s"]) / f["runs"]
        if f["runs"]
        else float("nan"),
        "servers_cpu_percent": 100 * servers_cpu / servers_wall,
        "sqlite_rows_per_s": f["writes"] / wall,
        "sqlite_transactions_per_s": f["batches"] / wall,
        "results_per_transaction": f["results"] / f["batches"] if f["batches"] else 0,
        "scrapes": len(scrapes),
        "scrape_s_median": statistics.median(s.seconds for s in scrapes)
        if scrapes
        else float("nan"),
        "scrape_s_max": max((s.seconds for s in scrapes), default=float("nan")),
        "scrape_bytes": scrapes[-1].size if scrapes else 0,
        "scrape_text_bytes": scrapes[-1].text_size if scrapes else 0,
        "scrape_series": scrapes[-1].series if scrapes else 0,
        "loadavg_at_end": load,
        "log_lines": dict(Counter(line.split()[2] for line in log_lines if len(line.split()) > 2)),
        "log_sample": log_lines[:5],
    }
    print_table(figures, args, site)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    ok = figures["lag_p99_s"] < 2.0 and figures["rss_peak"] < 300 * 2**20
    return 0 if ok else 1


def print_table(f: dict[str, Any], args: argparse.Namespace, site: Site) -> None:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    mb = 2**20
    statuses = ", ".join(f"{k} {n:,}" for k, n in f["statuses"].items())
    print(
        f"\nScale: {f['targets']:,} targets ({site.web:,} web: http, https, tcp; {site.ssh:,} servers: load and memory"
        f" over SSH to {args.sshd} sshd, tcp), {f['checks']:,} checks every {f['interval_s']} s;"
        f" measured {f['measured_s'] / 60:.1f} min after {f['interval_s']} s of warm-up."
        f"\n{os.cpu_count()} cores ({cpu_model}), Python {sys.version.split()[0]}; load average at the end"
        f" {' '.join(f'{x:.2f}' for x in f['loadavg_at_end'])}\n"
    )
    lag = f"{f['lag_p50_s'] * 1000:,.1f} ms / {f['lag_p99_s'] * 1000:,.1f} ms / {f['lag_max_s'] * 1000:,.0f} ms"
    rows = [
        (
            "checks per second",
            f"{f['checks_per_s']:,.1f} (the schedule asks {f['expected_checks_per_s']:,.1f})",
        ),
        ("schedule lag p50 / p99 / max", f"{lag} ({f['lag_samples']:,} checks)"),
        (
            "checks skipped (still running) / past hard timeout",
            f"{f['skipped']:.0f} / {f['hard_timeouts']:.0f}",
        ),
        ("results by check and status", statuses),
        (
            "open incidents by priority",
            ", ".join(f"{p} {n}" for p, n in f["incidents_open"].items()),
        ),
        (
            "daemon CPU, user+sys",
            f"{f['cpu_percent_of_one_core']:.1f} % of one core ({f['sys_percent_of_one_core']:.1f} % sys)",
        ),
        ("daemon CPU per check", f"{f['cpu_ms_per_check']:.3f} ms"),
        ("nginx and sshd CPU (not the daemon's)", f"{f['servers_cpu_percent']:.1f} % of one core"),
        (
            "daemon RSS: imported / config loaded / started / median / peak",
            f"{f['rss_imported'] / mb:.0f} / {f['rss_config_loaded'] / mb:.0f} / {f['rss_started'] / mb:.0f}"
            f" / {f['rss_median'] / mb:.0f} / {f['rss_peak'] / mb:.0f} MB",
        ),
        ("SQLite rows written per second", f"{f['sqlite_rows_per_s']:,.0f}"),
        (
            "SQLite transactions per second (results in each)",
            f"{f['sqlite_transactions_per_s']:.1f} ({f['results_per_transaction']:.0f})",
        ),
        (
            f"/metrics scrape time median / max ({f['scrapes']} scrapes)",
            f"{f['scrape_s_median'] * 1000:,.0f} ms / {f['scrape_s_max'] * 1000:,.0f} ms",
        ),
        (
            "/metrics size, gzip as sent / text",
            f"{f['scrape_bytes'] / mb:.1f} MiB / {f['scrape_text_bytes'] / mb:.1f} MiB, {f['scrape_series']:,} series",
        ),
        (
            "daemon log lines by level",
            ", ".join(f"{k} {n:,}" for k, n in f["log_lines"].items()) or "none",
        ),
        (
            "config load / daemon start / stop",
            f"{f['config_load_s']:.1f} s / {f['start_s']:.1f} s / {f['stop_s']:.1f} s",
        ),
    ]
    print("| figure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if f["log_sample"]:
        print("\nfirst log lines:\n" + "\n".join(f["log_sample"]))
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print(
        f"\ntargets: p99 lag < 2 s {met(f['lag_p99_s'] < 2)} ({f['lag_p99_s']:.3f} s);"
        f" peak RSS < 300 MB {met(f['rss_peak'] < 300 * mb)} ({f['rss_peak'] / mb:.0f} MB);"
        f" {f['checks_per_s'] / f['expected_checks_per_s']:.2f}x the scheduled checks ran"
    )


if __name__ == "__main__":
    raise SystemExit(main())
