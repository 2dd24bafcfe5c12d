"""Products side by side, at the same checks per second: the ``watcher run`` daemon against
blackbox_exporter scraped by a real Prometheus (HTTP, HTTPS), and against Nagios'
check_by_ssh with and without OpenSSH connection multiplexing (SSH).

Each phase runs one product at a time on the same loopback servers, at the same rate, and
reads its CPU from /proc/<pid>/stat over a steady window after one interval of warm-up:

- watcher: ``watcher run -c generated.yml`` (probing, SQLite state, rules, outbox, web
  server), N targets with one check each every ``--interval``; its process CPU.
- blackbox: ``prometheus-blackbox-exporter`` with one module per scheme (plain HTTP: no TLS
  settings at all; HTTPS: the test CA, as watcher is given), and ``prometheus`` scraping the
  same N URLs through ``/probe`` (the relabelling of blackbox's README) every
  ``--interval``; the CPU of the exporter plus Prometheus, and of the exporter alone.
- check_by_ssh: started by this script as Nagios would start it, at the same rate with up
  to 16 at a time; the CPU of check_by_ssh and its ssh (and, multiplexed, the ssh master
  process). This script's own scheduling is not counted, so Nagios' own cost is left out.

Checks counted are those the server saw (nginx's request counter; for SSH the checks that
completed). The micro rows time a bare ``run_probe()`` loop in this process: a function,
not a product, kept to show what the daemon adds.

    sudo .venv/bin/python bench/product_bench.py [--rates 100,400] [--ssh-rate 5] [--window 30]

Needs root (the sshd test login), nginx, prometheus, prometheus-blackbox-exporter,
openssh-server and monitoring-plugins (``sudo scripts/install-debian-deps.sh --bench``).
Traffic stays on 127.0.0.1; every phase is bounded by ``--window``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    Nginx,
    loadavg,
    machine,
    proc_cpu,
    say,
    start_nginx,
    start_watcher,
    stop,
    table,
    tree_cpu,
)

from tests.servers.base import (
    ManagedProcess,
    cleanup_all,
    free_port,
    make_workdir,
    register_cleanup,
    wait_for_port,
)
from tests.servers.certs import make_test_pki
from tests.servers.sshd import Sshd, ensure_test_user, make_client_keys

PROMETHEUS = "/usr/bin/prometheus"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PLUGINS = Path("/usr/lib/nagios/plugins")
PLUGIN = [str(PLUGINS / "check_load"), "-w", "1000,1000,1000", "-c", "2000,2000,2000"]


@dataclass
class Measured:
    """One product over one steady window."""

    product: str
    checks: int
    wall_s: float
    cpu_s: float  # the product's own processes
    extra: dict[str, float]  # other CPU seconds worth showing (e.g. the exporter alone)
    load: str

    @property
    def rate(self) -> float:
        return self.checks / self.wall_s

    @property
    def ms(self) -> float:
        return 1000 * self.cpu_s / self.checks if self.checks else float("nan")


def steady_window(
    window: float, count: Callable[[], int], cpu: dict[str, Callable[[], float]]
) -> tuple[int, float, dict[str, float], str]:
    """Checks counted and CPU seconds of each named part over ``window`` seconds."""
    c0, cpu0, t0 = count(), {k: f() for k, f in cpu.items()}, time.perf_counter()
    time.sleep(window)
    c1, cpu1, t1 = count(), {k: f() for k, f in cpu.items()}, time.perf_counter()
    return c1 - c0, t1 - t0, {k: cpu1[k] - cpu0[k] for k in cpu}, loadavg()


# ------------------------------------------------------------------------------ HTTP


def watcher_http(
    workdir: Path, nginx: Nginx, urls: list[str], ca: Path | None, args: argparse.Namespace
) -> Measured:
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "site: product-bench",
        f"state: {workdir / 'watcher.db'}",
        f"listen: 127.0.0.1:{free_port()}",
        "log_level: warning",
        f"defaults: {{interval: {args.interval}s, timeout: 4s}}",
        "rules: [default]",
        "targets:",
    ]
    ca_part = f', ca_file: "{ca}"' if ca else ""
    for i, url in enumerate(urls):
        lines += [
            f"  - name: web-{i:05d}",
            "    host: 127.0.0.1",
            f'    probes: [{{http: {{url: "{url}"{ca_part}}}}}]',
        ]
    config = workdir / "watcher.yml"
    config.write_text("\n".join(lines) + "\n")
    daemon = start_watcher(config, workdir / "watcher.log")
    try:
        time.sleep(args.interval + args.settle)
        if daemon.poll() is not None:
            raise SystemExit(f"watcher stopped; see {workdir / 'watcher.log'}")
        n, wall, cpu, load = steady_window(
            args.window, nginx.requests, {"watcher": lambda: proc_cpu(daemon.pid)}
        )
        return Measured("watcher run", n, wall, cpu["watcher"], {}, load)
    finally:
        stop(daemon)


def blackbox_http(
    workdir: Path, nginx: Nginx, urls: list[str], ca: Path | None, args: argparse.Namespace
) -> Measured:
    workdir.mkdir(parents=True, exist_ok=True)
    tls = f"\n      tls_config: {{ca_file: {ca}}}" if ca else ""
    (workdir / "blackbox.yml").write_text(
        "modules:\n"
        "  check:\n"
        "    prober: http\n"
        "    timeout: 4s\n"
        "    http:\n"
        "      preferred_ip_protocol: ip4\n"
        "      ip_protocol_fallback: false" + tls + "\n"
    )
    exporter_port, prom_port = free_port(), free_port()
    exporter = ManagedProcess(
        [
            BLACKBOX,
            f"--config.file={workdir / 'blackbox.yml'}",
            f"--web.listen-address=127.0.0.1:{exporter_port}",
            "--log.level=warn",
        ],
        workdir / "blackbox.log",
        name="blackbox",
    )
    exporter.start()
    wait_for_port("127.0.0.1", exporter_port, 10)
    targets = "\n".join(f"          - {u}" for u in urls)
    (workdir / "prometheus.yml").write_text(
        f"""global: {{scrape_interval: {args.interval}s, scrape_timeout: {min(4, args.interval)}s}}
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params: {{module: [check]}}
    static_configs:
      - targets:
{targets}
    relabel_configs:
      - {{source_labels: [__address__], target_label: __param_target}}
      - {{source_labels: [__param_target], target_label: instance}}
      - {{target_label: __address__, replacement: "127.0.0.1:{exporter_port}"}}
"""
    )
    prometheus = ManagedProcess(
        [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
        name="prometheus",
    )
    prometheus.start()
    try:
        wait_for_port("127.0.0.1", prom_port, 20)
        time.sleep(args.interval + args.settle)
        e, p = exporter.pid or 0, prometheus.pid or 0
        n, wall, cpu, load = steady_window(
            args.window,
            nginx.requests,
            {"exporter": lambda: proc_cpu(e), "prometheus": lambda: proc_cpu(p)},
        )
        return Measured(
            "blackbox_exporter + Prometheus",
            n,
            wall,
            cpu["exporter"] + cpu["prometheus"],
            {"exporter alone": cpu["exporter"]},
            load,
        )
    finally:
        prometheus.stop()
        exporter.stop()


def micro_http(url: str, ca: Path | None, checks: int) -> Measured:
    from http_bench import bench_watcher

    load = loadavg()
    wall, cpu = bench_watcher(url, str(ca) if ca else None, checks)
    return Measured("micro: run_probe() loop", checks, wall, cpu, {}, load)


# ------------------------------------------------------------------------------- SSH


@dataclass
class Ssh:
    sshd: Sshd
    key: Path
    known_hosts: Path


def watcher_ssh(workdir: Path, ssh: Ssh, args: argparse.Namespace) -> Measured:
    workdir.mkdir(parents=True, exist_ok=True)
    targets = max(1, round(args.ssh_rate * args.ssh_interval))
    s = ssh.sshd
    lines = [
        "site: product-bench",
        f"state: {workdir / 'watcher.db'}",
        f"listen: 127.0.0.1:{free_port()}",
        "log_level: warning",
        f"defaults: {{interval: {args.ssh_interval}s, timeout: 10s}}",
        "rules: [default]",
        "ssh:",
        f"  user: {s.user}",
        f"  key_file: {ssh.key}",
        f"  known_hosts: {ssh.known_hosts}",
        "targets:",
    ]
    for i in range(targets):
        lines += [
            f"  - name: srv-{i:04d}",
            f"    host: {s.host}",
            "    transport: ssh",
            f"    ssh: {{port: {s.port}}}",
            f"    probes: [{{nagios: {{run: {json.dumps(PLUGIN)}}}}}]",
        ]
    config = workdir / "watcher.yml"
    config.write_text("\n".join(lines) + "\n")
    daemon = start_watcher(config, workdir / "watcher.log")
    sshd_pid = s.pid or 0
    try:
        time.sleep(args.ssh_interval + args.settle)
        if daemon.poll() is not None:
            raise SystemExit(f"watcher stopped; see {workdir / 'watcher.log'}")
        # Checks counted: results watcher stored (one row per check).
        n, wall, cpu, load = steady_window(
            args.window,
            lambda: results_in(workdir / "watcher.db"),
            {"watcher": lambda: proc_cpu(daemon.pid), "sshd": lambda: tree_cpu([sshd_pid])},
        )
        return Measured("watcher run (pooled SSH)", n, wall, cpu["watcher"], cpu, load)
    finally:
        stop(daemon)


def micro_ssh(ssh: Ssh, checks: int) -> Measured:
    """The nagios probe through the pool, one check at a time in this process."""
    from probes.base import ProbeContext, run_probe
    from probes.nagios import NagiosConfig, NagiosProbe
    from watcher.delivery.httpclient import HttpClients
    from watcher.transports.ssh import SshPool, SshSettings

    s = ssh.sshd
    settings = SshSettings(
        target="bench",
        host=s.host,
        port=s.port,
        user=s.user,
        key_files=(ssh.key,),
        known_hosts=ssh.known_hosts,
    )
    pool = SshPool(trust_file=None)
    probe = NagiosProbe(NagiosConfig(run=PLUGIN))
    ctx = ProbeContext(
        site="bench",
        target="bench",
        host=s.host,
        labels={},
        timeout=10,
        http=HttpClients(),
        runner=pool.runner(settings),
    )
    load = loadavg()
    try:
        run_probe(probe, ctx, "nagios")  # the connection, opened once as in the daemon
        sshd0, cpu0, wall0 = tree_cpu([s.pid or 0]), time.process_time(), time.perf_counter()
        for _ in range(checks):
            [result] = run_probe(probe, ctx, "nagios")
            if result.status != "ok":
                raise SystemExit(f"micro SSH check failed: {result.message}")
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        sshd = tree_cpu([s.pid or 0]) - sshd0
    finally:
        pool.close()
    return Measured("micro: run_probe() loop, pooled", checks, wall, cpu, {"sshd": sshd}, load)


def results_in(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("select count(*) from results").fetchone()[0])


def check_by_ssh_phase(
    workdir: Path, ssh: Ssh, args: argparse.Namespace, multiplexed: bool
) -> Measured:
    workdir.mkdir(parents=True, exist_ok=True)
    s = ssh.sshd
    # A Unix socket path must be short (108 bytes): not under the long work dir.
    control_dir = tempfile.mkdtemp(prefix="watcher-cm", dir="/tmp")
    register_cleanup(lambda: shutil.rmtree(control_dir, ignore_errors=True))
    control = Path(control_dir) / "m"
    argv = [
        str(PLUGINS / "check_by_ssh"),
        "-H",
        s.host,
        "-p",
        str(s.port),
        "-l",
        s.user,
        "-i",
        str(ssh.key),
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"UserKnownHostsFile={ssh.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-t",
        "10",
    ]
    if multiplexed:
        argv += [
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={control}",
            "-o",
            "ControlPersist=300",
        ]
    argv += ["-C", " ".join(PLUGIN)]
    done = 0
    failures: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        nonlocal done
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        with lock:
            if r.returncode == 0:
                done += 1
            elif len(failures) < 3:
                failures.append(f"exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")

    def master_pid() -> int:
        r = subprocess.run(
            ["ssh", "-o", f"ControlPath={control}", "-p", str(s.port), "-O", "check", s.host],
            capture_output=True,
            text=True,
        )
        text = r.stderr + r.stdout
        if "pid=" not in text:
            return 0
        return int(text.split("pid=")[1].split(")")[0])

    stopping = threading.Event()
    period = 1.0 / args.ssh_rate

    def scheduler() -> None:
        with ThreadPoolExecutor(16) as pool:
            next_at = time.monotonic()
            while not stopping.is_set():
                pool.submit(one)
                next_at += period
                stopping.wait(max(0.0, next_at - time.monotonic()))

    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    if multiplexed:
        # Open the master first: clients started together would race to create it.
        one()
    runner = threading.Thread(target=scheduler, daemon=True)
    runner.start()
    master = 0
    try:
        time.sleep(args.settle + 2)
        master = master_pid() if multiplexed else 0
        n, wall, cpu, load = steady_window(
            args.window,
            lambda: done,
            {
                "clients": children,
                "master": lambda: proc_cpu(master, children=False) if master else 0.0,
                "sshd": lambda: tree_cpu([s.pid or 0]),
            },
        )
    finally:
        stopping.set()
        runner.join(timeout=60)
        if multiplexed:
            subprocess.run(
                ["ssh", "-o", f"ControlPath={control}", "-p", str(s.port), "-O", "exit", s.host],
                capture_output=True,
            )
    if failures:
        raise SystemExit("check_by_ssh failed: " + "; ".join(failures))
    name = "check_by_ssh, ControlMaster/ControlPersist" if multiplexed else "check_by_ssh"
    return Measured(name, n, wall, cpu["clients"] + cpu["master"], cpu, load)


# ------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates", default="100,400", help="HTTP checks per second, comma-separated"
    )
    parser.add_argument(
        "--interval", type=int, default=5, help="seconds between a target's checks (HTTP)"
    )
    parser.add_argument("--window", type=float, default=30, help="seconds measured per phase")
    parser.add_argument("--settle", type=float, default=3, help="seconds after the first interval")
    parser.add_argument("--micro", type=int, default=1000, help="checks in the micro loop")
    parser.add_argument("--ssh-rate", type=float, default=5, help="SSH checks per second")
    parser.add_argument("--ssh-interval", type=int, default=10)
    parser.add_argument("--ssh-micro", type=int, default=200, help="checks in the SSH micro loop")
    parser.add_argument("--only", choices=["http", "ssh"], help="run one half")
    args = parser.parse_args()
    needed = [
        PROMETHEUS,
        BLACKBOX,
        "/usr/sbin/nginx",
        "/usr/sbin/sshd",
        str(PLUGINS / "check_by_ssh"),
    ]
    missing = [b for b in needed if not os.access(b, os.X_OK)]
    if missing:
        print(
            f"missing {', '.join(missing)}: run sudo scripts/install-debian-deps.sh --bench",
            file=sys.stderr,
        )
        return 2
    try:
        if args.only != "ssh":
            http_part(args)
        if args.only != "http":
            ssh_part(args)
    finally:
        errors = cleanup_all()
        if errors:
            print("cleanup problems:", errors, file=sys.stderr)
    return 0


def ratio(watcher: Measured, other: Measured) -> str:
    return f"{other.ms / watcher.ms:.2f}x"


def http_part(args: argparse.Namespace) -> None:
    workdir = make_workdir("product-bench-http")
    pki = make_test_pki(workdir / "pki")
    nginx = start_nginx(workdir / "nginx", pki.valid.cert_path, pki.valid.key_path)
    rows = []
    start_load = loadavg()
    for rate in [int(r) for r in args.rates.split(",")]:
        targets = rate * args.interval
        for scheme in ("http", "https"):
            port = nginx.plain if scheme == "http" else nginx.tls
            ca = pki.ca.cert_path if scheme == "https" else None
            urls = [f"{scheme}://127.0.0.1:{port}/t/{i:05d}" for i in range(targets)]
            tag = f"{scheme}-{rate}"
            say(f"{tag}: watcher run, {targets} targets every {args.interval} s")
            w = watcher_http(workdir / f"w-{tag}", nginx, urls, ca, args)
            say(f"{tag}: blackbox_exporter + Prometheus")
            b = blackbox_http(workdir / f"b-{tag}", nginx, urls, ca, args)
            m = (
                micro_http(urls[0], ca, args.micro)
                if rate == int(args.rates.split(",")[0])
                else None
            )
            cmd = f"{targets} targets, one {scheme} check each every {args.interval} s"
            for x in (w, b, m):
                if x is None:
                    continue
                extra = ", ".join(f"{k} {1000 * v / x.checks:.2f} ms" for k, v in x.extra.items())
                # A product that fell behind the schedule did less work than asked: its CPU
                # per check is not comparable (time-outs, retries), so no ratio is given.
                behind = x is not m and x.rate < 0.95 * rate
                rows.append(
                    [
                        scheme,
                        cmd if x is not m else f"{args.micro} checks one at a time",
                        x.product,
                        f"{x.rate:,.0f}" + (f" of {rate}: fell behind" if behind else ""),
                        f"{x.ms:.2f} ms" + (f" ({extra})" if extra else ""),
                        "n/a (fell behind)"
                        if behind
                        else "1.00x"
                        if x is w
                        else ratio(w, x)
                        if x is b
                        else "(micro)",
                        x.load,
                    ]
                )
    print(
        f"\nHTTP(S) products side by side against one local nginx (one worker; TLS: ECDSA P-256,"
        f" no session reuse, certificate verified against the test CA by both); {machine()};"
        f" load average at the start {start_load}\n"
    )
    print(
        table(
            [
                "scheme",
                "command",
                "product",
                "checks/s",
                "CPU per check",
                "CPU vs watcher run",
                "load average",
            ],
            rows,
        )
    )
    print(
        "\nCPU vs watcher run: the product's CPU per check over watcher's (above 1: watcher uses"
        " less). The micro row is a bare run_probe() loop, not a product."
    )


def ssh_part(args: argparse.Namespace) -> None:
    user = ensure_test_user()
    workdir = make_workdir("product-bench-ssh")
    keys = make_client_keys(workdir / "keys")
    sshd = Sshd(make_workdir("product-bench-sshd"), user=user, client_keys=keys).start()
    ssh = Ssh(sshd, keys.ed25519, sshd.write_known_hosts(workdir / "known_hosts"))
    start_load = loadavg()
    say(f"ssh: watcher run, {args.ssh_rate:g} checks/s")
    w = watcher_ssh(workdir / "w", ssh, args)
    say("ssh: check_by_ssh with ControlMaster")
    cm = check_by_ssh_phase(workdir / "cm", ssh, args, multiplexed=True)
    say("ssh: check_by_ssh, a new connection per check")
    plain = check_by_ssh_phase(workdir / "plain", ssh, args, multiplexed=False)
    micro = micro_ssh(ssh, args.ssh_micro)
    cmd = " ".join(["check_load", *PLUGIN[1:]])
    rows = []
    for x in (w, cm, plain, micro):
        rows.append(
            [
                cmd if x is not micro else f"{args.ssh_micro} checks one at a time",
                x.product,
                f"{x.rate:,.1f}",
                f"{x.ms:.2f} ms",
                f"{1000 * x.extra['sshd'] / x.checks:.2f} ms",
                "1.00x" if x is w else "(micro)" if x is micro else ratio(w, x),
                x.load,
            ]
        )
    print(
        f"\nSSH products side by side: the same plugin over the same local sshd (OpenSSH,"
        f" default key exchange), {args.ssh_rate:g} checks/s, up to 16 at a time; {machine()};"
        f" load average at the start {start_load}\n"
    )
    print(
        table(
            [
                "command",
                "product",
                "checks/s",
                "client CPU per check",
                "sshd CPU per check",
                "client CPU vs watcher run",
                "load average",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
