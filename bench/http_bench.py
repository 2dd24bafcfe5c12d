"""Micro: watcher's bare ``http`` probe function beside whole tools, one check at a time.

Not a product comparison: the watcher row is a ``run_probe()`` loop in this process, with
no scheduler, store or rules, while the others are whole programs. For products side by
side (the ``watcher run`` daemon against blackbox_exporter scraped by Prometheus at the
same rate) run ``bench/product_bench.py``.

HTTP and HTTPS checks: watcher's ``http`` probe, Prometheus' blackbox
exporter (driven through /probe as Prometheus drives it) and Nagios' check_http, against
the same local nginx serving a small static file, plain and over TLS with a fresh
handshake per check.

For each: checks per second (one check at a time), client CPU per check, and checks per
second per core (1 / CPU per check). The client is this process for watcher, the
exporter process for blackbox (the Prometheus side that asks it is not counted), and
check_http with its process start for Nagios (that is how Nagios runs it). Each checks
the status only, over a new connection. watcher and blackbox_exporter verify the
certificate against the test CA (watcher also reads its expiry); check_http -S cannot
verify it, so it does less work there.

    .venv/bin/python bench/http_bench.py [--checks 2000]

Needs nginx-light, prometheus-blackbox-exporter and monitoring-plugins-standard
(`scripts/install-debian-deps.sh --bench`).
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probes.base import ProbeContext, run_probe  # noqa: E402
from probes.http import HttpConfig, HttpProbe  # noqa: E402
from tests.servers.base import ManagedProcess, cleanup_all, free_port, make_workdir, wait_for_port  # noqa: E402
from tests.servers.certs import make_test_pki  # noqa: E402
from tests.servers.prometheus import BlackboxExporter  # noqa: E402
from watcher.delivery.httpclient import HttpClients  # noqa: E402

CHECK_HTTP = "/usr/lib/nagios/plugins/check_http"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    tool: str
    scheme: str
    checks: int
    wall_s: float
    cpu_s: float

    @property
    def per_second(self) -> float:
        return self.checks / self.wall_s

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.checks

    @property
    def per_core(self) -> float:
        return self.checks / self.cpu_s if self.cpu_s else float("inf")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_nginx(workdir: Path, cert: Path, key: Path) -> tuple[ManagedProcess, int, int]:
    plain, tls = free_port(), free_port()
    root = workdir / "www"
    root.mkdir(parents=True, exist_ok=True)
    (root / "health").write_text('{"status": "up"}\n')
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
        worker_processes 1;
        daemon off;
        pid {workdir}/nginx.pid;
        error_log {workdir}/error.log;
        events {{ worker_connections 1024; }}
        http {{
            access_log off;
            client_body_temp_path {workdir}/tmp;
            server {{
                listen 127.0.0.1:{plain};
                listen 127.0.0.1:{tls} ssl;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                ssl_session_cache off;
                ssl_session_tickets off;
                root {root};
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


def bench_watcher(url: str, ca_file: str | None, checks: int) -> tuple[float, float]:
    clients = HttpClients()
    probe = HttpProbe(HttpConfig(url=url, ca_file=ca_file))
    ctx = ProbeContext(
        site="bench", target="nginx", host="127.0.0.1", labels={}, timeout=5, http=clients
    )
    run_probe(probe, ctx, "http")  # build the TLS context once, as a running watcher has
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(checks):
        [result] = run_probe(probe, ctx, "http")
        if result.status != "ok":
            raise SystemExit(f"watcher probe failed: {result.message}")
    return time.perf_counter() - wall0, time.process_time() - cpu0


def bench_blackbox(
    exporter: BlackboxExporter, url: str, module: str, checks: int
) -> tuple[float, float]:
    pid = exporter.pid
    assert pid is not None
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
    path = f"/probe?module={module}&target={url}"

    def probe() -> None:
        conn.request("GET", path)
        body = conn.getresponse().read()
        if b"probe_success 1" not in body:
            raise SystemExit(f"blackbox probe failed:\n{body.decode()[:2000]}")

    probe()
    cpu0, wall0 = proc_cpu(pid), time.perf_counter()
    for _ in range(checks):
        probe()
    return time.perf_counter() - wall0, proc_cpu(pid) - cpu0


def bench_check_http(port: int, tls: bool, checks: int) -> tuple[float, float]:
    # Status only, like the other two (check_http -S does not verify the certificate at all:
    # it has no CA option; watcher and blackbox_exporter verify it against the test CA).
    argv = [CHECK_HTTP, "-H", "127.0.0.1", "-p", str(port), "-u", "/health"]
    if tls:
        argv.append("-S")
    subprocess.run(argv, check=True, capture_output=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    for _ in range(checks):
        done = subprocess.run(argv, capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"check_http failed: {done.stdout.decode()}")
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=2000, help="checks per tool and scheme")
    args = parser.parse_args()
    workdir = make_workdir("http-bench")
    pki = make_test_pki(workdir / "pki")
    nginx, plain, tls = start_nginx(workdir, pki.valid.cert_path, pki.valid.key_path)
    exporter = BlackboxExporter(workdir / "blackbox", ca_file=pki.ca.cert_path).start()
    rows: list[Row] = []
    try:
        plan: list[tuple[str, str, Callable[[], tuple[float, float]]]] = []
        for scheme, port in (("http", plain), ("https", tls)):
            url = f"{scheme}://127.0.0.1:{port}/health"
            ca = str(pki.ca.cert_path) if scheme == "https" else None
            module = "tls" if scheme == "https" else "http_2xx"
            plan += [
                (
                    "watcher http probe",
                    scheme,
                    lambda u=url, c=ca: bench_watcher(u, c, args.checks),
                ),
                (
                    "blackbox_exporter",
                    scheme,
                    lambda u=url, m=module: bench_blackbox(exporter, u, m, args.checks),
                ),
                (
                    "check_http",
                    scheme,
                    lambda p=port, t=scheme == "https": bench_check_http(
                        p, t, max(200, args.checks // 4)
                    ),
                ),
            ]
        for tool, scheme, run in plan:
            wall, cpu = run()
            checks = max(200, args.checks // 4) if tool == "check_http" else args.checks
            rows.append(Row(tool, scheme, checks, wall, cpu))
            print(f"  {tool:<20} {scheme:<5} done", file=sys.stderr)
    finally:
        exporter.stop()
        nginx.stop()
        cleanup_all()
    print_table(rows)


def print_table(rows: list[Row]) -> None:
    cores = os.cpu_count()
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nMicro (watcher: a bare run_probe() loop, not the daemon): HTTP checks against local nginx (one worker, a 17-byte file, TLS: ECDSA P-256, no session reuse),"
        f" one at a time; {cores} cores ({cpu_model}), Python {sys.version.split()[0]}, load average at the end {load}\n"
    )
    print(
        "| tool | scheme | checks | checks/s | client CPU per check | checks/s per core | watcher per core vs this |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    ours = {r.scheme: r for r in rows if r.tool.startswith("watcher")}
    for r in rows:
        ratio = ours[r.scheme].per_core / r.per_core
        print(
            f"| {r.tool} | {r.scheme} | {r.checks} | {r.per_second:,.0f} | {r.cpu_ms:.2f} ms | {r.per_core:,.0f} | {ratio:.2f}x |"
        )
    blackbox = {r.scheme: r for r in rows if r.tool == "blackbox_exporter"}
    http_ratio = ours["http"].per_core / blackbox["http"].per_core
    print(
        f"\nmicro: watcher's probe function alone does {ours['https'].per_core:,.0f} HTTPS checks/s per"
        f" core and {http_ratio:.2f}x the exporter's plain HTTP checks per core; the exporter"
        " row is a whole program, so this is no product ratio (bench/product_bench.py is)."
    )


if __name__ == "__main__":
    main()
