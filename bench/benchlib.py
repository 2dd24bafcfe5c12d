"""What the product benches share: CPU and memory read from /proc, the load average, one
nginx that both products probe, the ``watcher run`` daemon started on a generated config,
and the tables they print.

CPU is always read from ``/proc/<pid>/stat`` (user + sys, plus the reaped children the
process waited for), so a product's figure is that of its own processes, whatever else
runs on the machine. The load average is printed with every table: the machine is shared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.base import (  # noqa: E402
    ManagedProcess,
    descendants,
    free_port,
    wait_for_port,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TICKS = os.sysconf("SC_CLK_TCK")
WATCHER = ROOT / ".venv" / "bin" / "watcher"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return f"{os.cpu_count()} cores ({model}), Python {sys.version.split()[0]}"


def proc_cpu(pid: int, children: bool = True) -> float:
    """CPU seconds (user + sys) of one process, with its reaped children if asked; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    used = (11, 12, 13, 14) if children else (11, 12)
    return sum(int(fields[i]) for i in used) / TICKS


def tree_cpu(pids: Iterable[int]) -> float:
    """CPU seconds of processes and everything live under them (reaped ones are in their
    parent's children time)."""
    total = 0.0
    for pid in pids:
        total += sum(proc_cpu(p) for p in [pid, *descendants(pid)])
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads of a process."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            out[name] = int(value.split()[0])
    return out


# ------------------------------------------------------------------------------ nginx


@dataclass
class Nginx:
    """One nginx worker serving plain HTTP and TLS: ``/fail/...`` answers 500, a path whose
    file exists under ``down`` answers 500 too (so a bench can fail a target at a moment of
    its choosing), everything else 200. ``requests()`` reads its request counter."""

    process: ManagedProcess
    plain: int
    tls: int
    status: int
    down: Path

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def requests(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status}/status", timeout=10) as r:
            # Active connections: N / server accepts handled requests / A H R / Reading...
            lines = r.read().decode().splitlines()
        return int(lines[2].split()[2])

    def fail(self, path: str, failing: bool = True) -> None:
        flag = self.down / path.lstrip("/")
        if failing:
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.touch()
        else:
            flag.unlink(missing_ok=True)


def start_nginx(workdir: Path, cert: Path, key: Path) -> Nginx:
    plain, tls, status = free_port(), free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    down = workdir / "down"
    down.mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
        worker_processes 1;
        daemon off;
        pid {workdir}/nginx.pid;
        error_log {workdir}/error.log;
        worker_rlimit_nofile 16384;
        events {{ worker_connections 8192; }}
        http {{
            access_log off;
            client_body_temp_path {workdir}/tmp;
            server {{
                listen 127.0.0.1:{status};
                location /status {{ stub_status; }}
            }}
            server {{
                listen 127.0.0.1:{plain} backlog=4096;
                listen 127.0.0.1:{tls} ssl backlog=4096;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                ssl_session_cache off;
                ssl_session_tickets off;
                root {down};
                location /fail/ {{ return 500 "down\\n"; }}
                location / {{
                    if (-f $request_filename) {{ return 500 "down\\n"; }}
                    return 200 "up\\n";
                }}
            }}
        }}
        """
    )
    process = ManagedProcess(
        [NGINX, "-c", str(conf), "-p", str(workdir)], workdir / "nginx.out", name="nginx"
    )
    process.start()
    for port in (plain, tls, status):
        wait_for_port("127.0.0.1", port, 10)
    return Nginx(process, plain, tls, status, down)


# ---------------------------------------------------------------------------- daemons


def start_watcher(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``watcher run -c CONFIG``, the daemon as users run it, in a process of its own."""
    check = subprocess.run(
        [str(WATCHER), "validate", "-c", str(config)], capture_output=True, text=True
    )
    if check.returncode != 0:
        raise SystemExit(f"generated config refused:\n{check.stdout}{check.stderr}")
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(WATCHER), "run", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ----------------------------------------------------------------------------- tables


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; numbers right-aligned."""
    rows = [[str(c) for c in row] for row in rows]
    align = [
        "---:" if rows and all(_numeric(r[i]) for r in rows) else "---" for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


_NUMBER = re.compile(r"^[\d,.]+ ?(ms|s|x|%|MB)?( \(.*\))?$")


def _numeric(text: str) -> bool:
    return bool(_NUMBER.match(text))
