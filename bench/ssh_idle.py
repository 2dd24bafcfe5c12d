"""What open, idle SSH connections cost watcher: its own pool, N connections, no checks.

Opens one connection per endpoint with ``watcher.transports.ssh.SshPool`` (the pool the
daemon uses, with its defaults: keepalive every 30 s, closed after 300 s idle), runs one
command on each so each is fully set up as in the daemon, then measures this process's CPU
and thread count over ``--window`` seconds while nothing runs. Prints JSON.

    .venv/bin/python bench/ssh_idle.py endpoints.json --window 20

``endpoints.json``: ``{"user": ..., "key_file": ..., "known_hosts": ...,
"endpoints": [["127.1.0.1", 2222], ...]}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from watcher.transports.ssh import SshPool, SshSettings  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--window", type=float, default=20)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    pool = SshPool(trust_file=None)
    failures: list[str] = []

    def open_one(endpoint: list) -> None:
        host, port = endpoint
        settings = SshSettings(
            target=f"{host}:{port}",
            host=host,
            port=int(port),
            user=spec["user"],
            key_files=(Path(spec["key_file"]),),
            known_hosts=Path(spec["known_hosts"]),
        )
        try:
            pool.runner(settings).run("true", timeout=30)
        except Exception as exc:  # noqa: BLE001 - counted and reported, not fatal
            failures.append(f"{host}:{port}: {exc}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as workers:
        list(workers.map(open_one, spec["endpoints"]))
    opened = time.perf_counter() - t0
    time.sleep(2)  # let the last channel closes settle
    cpu0, wall0 = cpu(), time.perf_counter()
    time.sleep(args.window)
    used, wall = cpu() - cpu0, time.perf_counter() - wall0
    threads = threading.active_count()
    pool.close()
    print(
        json.dumps(
            {
                "connections": len(spec["endpoints"]) - len(failures),
                "failures": failures[:5],
                "failed": len(failures),
                "open_s": opened,
                "idle_cpu_share": used / wall,
                "threads": threads,
                "window_s": wall,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
