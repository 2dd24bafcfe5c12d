"""A cluster under load and under kills: N targets over 2 ``watcher run`` members on one
PostgreSQL, beside the same config on SQLite (one watcher), and failover time.

The targets are TCP listeners on loopback in this process, one port each, which record
when each was checked. For each state the bench runs the daemons for ``--seconds`` after
one interval of warm-up and reports: the p99 schedule lag (from the members' /metrics
histograms, the bucket bound), CPU seconds per second of the members and of the database
server's processes, and result rows written per second. Then, on PostgreSQL only, it kills
one member (-9) ``--kills`` times and measures the failover: from the kill to the first
check of a target that member ran, on the survivor (median and max), restarting the
killed member and letting it rejoin between kills.

    sudo .venv/bin/python bench/cluster_bench.py                 # 500 targets, 3 kills
    sudo .venv/bin/python bench/cluster_bench.py --targets 10000 --kills 20

Needs root (PostgreSQL runs as its own user). Traffic stays on 127.0.0.1; every load
is bounded by ``--targets``, ``--seconds`` and ``--kills``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults.test_cluster_chaos import Listeners, Node  # noqa: E402
from tests.servers.base import LOOPBACK, free_port  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402
from watcher.cluster.partition import owner  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def p99_lag(ports: list[int]) -> float:
    """The bucket bound under which 99 % of the members' checks started."""
    buckets: dict[float, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=30) as r:
            text = r.read().decode()
        for le, count in re.findall(
            r'^watcher_scheduler_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M
        ):
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(count)
    total = buckets.get(float("inf"), 0.0)
    for bound in sorted(buckets):
        if total and buckets[bound] >= 0.99 * total:
            return bound
    return float("nan")


def result_rows(state: str, postgres: PostgresServer | None) -> int:
    if postgres is not None:
        return int(postgres.sql(state, "SELECT count(*) FROM results")[0][0])
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
    finally:
        conn.close()


def write_config(directory: Path, state: str, ports: list[int], interval: float) -> Path:
    head = textwrap.dedent(f"""
        site: bench
        state: {state}
        listen: {LOOPBACK}:{free_port()}
        log_level: warning
        cluster: {{lease: 6s}}
        defaults: {{interval: {interval}s, timeout: 2s}}
        targets:
        """).lstrip()
    lines = [
        f"  - {{name: t{n:05d}, probes: [{{tcp: {{host: {LOOPBACK}, port: {port}}}}}]}}"
        for n, port in enumerate(ports)
    ]
    path = directory / "watcher.yml"
    path.write_text(head + "\n".join(lines) + "\n")
    return path


def measure(
    label: str,
    directory: Path,
    state: str,
    names: list[str],
    listeners: Listeners,
    args: argparse.Namespace,
    postgres: PostgresServer | None,
) -> tuple[dict[str, float], list[Node]]:
    directory.mkdir()
    config = write_config(directory, state, listeners.ports, args.interval)
    nodes = [Node(name, config, directory) for name in names]
    for node in nodes:
        node.start()
    for node in nodes:
        if not node.wait_healthy(120):
            raise SystemExit(f"{label}: {node.name} did not start; see {directory}")
    time.sleep(args.interval + 2)  # first turns are spread over one interval
    pids = [n.proc.pid for n in nodes if n.proc]
    db = postgres_pids() if postgres else []
    rows0, cpu0, db0, t0 = (
        result_rows(state, postgres),
        cpu_seconds(pids),
        cpu_seconds(db),
        time.monotonic(),
    )
    time.sleep(args.seconds)
    elapsed = time.monotonic() - t0
    figures = {
        "p99 lag s": p99_lag([n.port for n in nodes]),
        "members CPU s/s": (cpu_seconds(pids) - cpu0) / elapsed,
        "database CPU s/s": (cpu_seconds(db) - db0) / elapsed if postgres else float("nan"),
        "result rows/s": (result_rows(state, postgres) - rows0) / elapsed,
    }
    return figures, nodes


def failovers(nodes: list[Node], listeners: Listeners, args: argparse.Namespace) -> list[float]:
    names = [n.name for n in nodes]
    times = []
    for k in range(args.kills):
        victim, survivor = nodes[k % 2], nodes[(k + 1) % 2]
        orphaned = [
            port
            for n, port in enumerate(listeners.ports)
            if owner(f"t{n:05d}", names) == victim.name
        ]
        killed = time.monotonic()
        victim.kill()
        deadline = killed + 60 + args.interval
        first = None
        while first is None and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = [t for p in orphaned for t in listeners.checked[p][-3:] if t > killed + 0.2]
            if seen:
                first = min(seen)
        times.append((first or float("nan")) - killed)
        print(
            f"  kill {k + 1}: {victim.name} -> {survivor.name} after {times[-1]:.2f}s", flush=True
        )
        victim.start()
        victim.wait_healthy(120)
        time.sleep(8)  # the victim rejoins and takes its share back
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between checks")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per state")
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.targets + 1024)), hard))
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    listeners = Listeners(args.targets)
    postgres = PostgresServer().start()
    rows: dict[str, dict[str, float]] = {}
    try:
        figures, nodes = measure(
            "sqlite", work / "sqlite", str(work / "sqlite.db"), ["solo"], listeners, args, None
        )
        rows["SQLite, 1 watcher"] = figures
        for node in nodes:
            node.proc and node.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            node.proc and node.proc.wait(30)
        url = postgres.new_url()
        figures, nodes = measure(
            "postgres", work / "pg", url, ["n1", "n2"], listeners, args, postgres
        )
        rows["PostgreSQL, 2 members"] = figures
        print(f"{args.targets} targets at {args.interval:g}s, measured {args.seconds:g}s each")
        print(f"{'':<24}" + "".join(f"{k:>18}" for k in next(iter(rows.values()))))
        for label, f in rows.items():
            print(f"{label:<24}" + "".join(f"{v:>18.3f}" for v in f.values()))
        if args.kills:
            print(
                f"failover over {args.kills} kills (kill -9 to the first check of an orphaned target):"
            )
            times = failovers(nodes, listeners, args)
            good = [t for t in times if t == t]
            if good:
                print(f"  median {statistics.median(good):.2f}s, max {max(good):.2f}s, lease 6s")
        for node in nodes:
            node.proc and node.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            node.proc and node.proc.wait(30)
    except BaseException:
        for log in sorted(work.glob("*/*.log")):
            print(f"--- {log} (kept):\n" + log.read_text()[-2000:], file=sys.stderr)
        raise
    else:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    finally:
        listeners.stop()
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
