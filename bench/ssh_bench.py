"""Micro: watcher's pooled SSH probe function (a ``run_probe()`` loop in this process, not
the daemon) beside check_by_ssh opening a new OpenSSH connection per check. For products
side by side, check_by_ssh with ControlMaster/ControlPersist included, run
``bench/product_bench.py``.

SSH checks side by side: watcher's pooled probe, Nagios' check_by_ssh (with OpenSSH's default
and with the classic curve25519 key exchange), and paramiko with a new connection per check,
all running the same Nagios plugin on the same local sshd.

For each: checks per second (one check at a time) and CPU per check, on the client (this
process, or check_by_ssh and its ssh child) and on the server (sshd and everything it ran).

    sudo .venv/bin/python bench/ssh_bench.py [--checks 300]

Needs root (it creates the unprivileged login ``watchertest`` the test sshd accepts),
openssh-server and monitoring-plugins (check_by_ssh, check_load).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probes.base import run_probe  # noqa: E402
from probes.nagios import NagiosConfig, NagiosProbe  # noqa: E402
from tests.servers.base import cleanup_all, descendants, make_workdir  # noqa: E402
from tests.servers.sshd import Sshd, ensure_test_user, make_client_keys  # noqa: E402
from watcher.delivery.httpclient import HttpClients  # noqa: E402
from watcher.transports.ssh import SshPool, SshSettings  # noqa: E402

PLUGINS = Path("/usr/lib/nagios/plugins")
PLUGIN_ARGS = ["-w", "1000,1000,1000", "-c", "2000,2000,2000"]
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    name: str
    checks: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.checks / self.wall_s

    @property
    def client_ms(self) -> float:
        return 1000 * self.client_cpu_s / self.checks

    @property
    def server_ms(self) -> float:
        return 1000 * self.server_cpu_s / self.checks


def sshd_cpu(sshd: Sshd) -> float:
    """CPU seconds sshd and its reaped children used so far (per-connection processes
    count once their connection ends, so measure with every connection closed)."""
    assert sshd.pid is not None
    fields = Path(f"/proc/{sshd.pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / TICKS


def wait_for_sessions_to_end(sshd: Sshd) -> None:
    deadline = time.monotonic() + 10
    while descendants(sshd.pid or 0) and time.monotonic() < deadline:
        time.sleep(0.02)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    name: str,
    sshd: Sshd,
    checks: int,
    one_check: Callable[[], None],
    *,
    client: Callable[[], float],
    before: Callable[[], None] = lambda: None,
    after: Callable[[], None] = lambda: None,
) -> Row:
    before()
    one_check()  # warm-up: imports, first connection for the pooled variant
    if name != "pooled probe":  # the pooled variant keeps its one connection open
        wait_for_sessions_to_end(sshd)
    server0, client0, wall0 = sshd_cpu(sshd), client(), time.perf_counter()
    for _ in range(checks):
        one_check()
    wall = time.perf_counter() - wall0
    client_used = client() - client0
    after()
    wait_for_sessions_to_end(sshd)
    return Row(name, checks, wall, client_used, sshd_cpu(sshd) - server0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=300, help="checks per variant (default 300)")
    args = parser.parse_args()
    for binary in ("/usr/sbin/sshd", PLUGINS / "check_by_ssh", PLUGINS / "check_load"):
        if not os.access(binary, os.X_OK):
            print(
                f"missing {binary}: install openssh-server and monitoring-plugins", file=sys.stderr
            )
            return 2
    try:
        user = ensure_test_user()
        keys = make_client_keys(make_workdir("bench-keys"))
        sshd = Sshd(make_workdir("bench-sshd"), user=user, client_keys=keys).start()
        known_hosts = sshd.write_known_hosts(make_workdir("bench-kh") / "known_hosts")
        settings = SshSettings(
            target="bench",
            host=sshd.host,
            port=sshd.port,
            user=sshd.user,
            key_files=(keys.ed25519,),
            known_hosts=known_hosts,
        )
        plugin = [str(PLUGINS / "check_load"), *PLUGIN_ARGS]
        probe = NagiosProbe(NagiosConfig(run=plugin))
        http = HttpClients()

        def check_with(pool: SshPool) -> None:
            from probes.base import ProbeContext

            ctx = ProbeContext(
                site="bench",
                target="bench",
                host=sshd.host,
                labels={},
                timeout=10,
                http=http,
                runner=pool.runner(settings),
            )
            [result] = run_probe(probe, ctx, "nagios")
            if result.status != "ok":
                raise SystemExit(f"check failed: {result.message}")

        pool = SshPool(trust_file=None)
        pooled = measure(
            "pooled probe",
            sshd,
            args.checks,
            lambda: check_with(pool),
            client=time.process_time,
            after=pool.close,
        )

        by_ssh = [
            str(PLUGINS / "check_by_ssh"),
            "-H",
            sshd.host,
            "-p",
            str(sshd.port),
            "-l",
            sshd.user,
            "-i",
            str(keys.ed25519),
            "-o",
            "LogLevel=ERROR",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-t",
            "10",
            "-C",
            " ".join(plugin),
        ]

        def check_by_ssh(argv: list[str]) -> None:
            done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise SystemExit(
                    f"check_by_ssh failed ({done.returncode}): {done.stdout}{done.stderr}"
                )

        nagios = measure(
            "check_by_ssh", sshd, args.checks, lambda: check_by_ssh(by_ssh), client=children_cpu
        )
        # OpenSSH 9 negotiates the post-quantum sntrup761x25519 key exchange by default, which
        # costs most of ssh's CPU; this row shows check_by_ssh with the classic one.
        light = [*by_ssh[:-2], "-o", "KexAlgorithms=curve25519-sha256", *by_ssh[-2:]]
        nagios_light = measure(
            "check_by_ssh, curve25519 kex",
            sshd,
            args.checks,
            lambda: check_by_ssh(light),
            client=children_cpu,
        )

        def fresh_connection() -> None:
            each = SshPool(trust_file=None)
            try:
                check_with(each)
            finally:
                each.close()

        fresh = measure(
            "paramiko, new connection per check",
            sshd,
            args.checks,
            fresh_connection,
            client=time.process_time,
        )
    finally:
        errors = cleanup_all()
    if errors:
        print("cleanup problems:", errors, file=sys.stderr)

    rows = [pooled, nagios, nagios_light, fresh]
    print(
        f"Micro (watcher: a bare run_probe() loop; check_by_ssh without multiplexing): "
        f"{args.checks} sequential checks each, plugin: check_load {' '.join(PLUGIN_ARGS)}, sshd on 127.0.0.1, "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        f"| {'variant':36} | {'checks/s':>8} | {'client CPU/check':>16} | {'sshd CPU/check':>14} |"
    )
    print(f"|{'-' * 38}|{'-' * 10}:|{'-' * 17}:|{'-' * 15}:|")
    for row in rows:
        print(
            f"| {row.name:36} | {row.per_second:8.1f} | {row.client_ms:13.2f} ms | {row.server_ms:11.2f} ms |"
        )
    print()
    for other in rows[1:]:
        print(
            f"pooled vs {other.name}: {pooled.per_second / other.per_second:.1f}x the checks/s, "
            f"{other.client_ms / pooled.client_ms:.1f}x less client CPU, "
            f"{other.server_ms / pooled.server_ms:.1f}x less sshd CPU per check"
        )
    target = min(nagios.client_ms, nagios_light.client_ms) / pooled.client_ms
    print(
        f"\ntarget (pooled uses >= 5x less client CPU per check than check_by_ssh, either kex): "
        f"{'met' if target >= 5 else 'NOT met'} ({target:.1f}x)"
    )
    return 0 if target >= 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
