#!/usr/bin/env python3
"""Draws docs/img/audit-sample.png: the real audit report of a month of a small site.

A month of results (disks, one filling; load with busy mornings; memory; a growing mail
queue; directory sizes and old logs; a device fleet; a nightly backup heartbeat) is written
through the store and compacted as the daemon does, incidents go through the real engine,
``build_audit`` and ``render_html`` make the report, and headless Chromium photographs its
first screen. ``--html FILE`` also keeps the HTML. Needs Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.audit_history import NOW, compact, series, write  # noqa: E402
from tests.support.helpers import Clock, result  # noqa: E402
from watcher.app.pipeline import Engine  # noqa: E402
from watcher.audit.build import build_audit  # noqa: E402
from watcher.audit.report_html import render_html  # noqa: E402
from watcher.config.load import load_config  # noqa: E402
from watcher.config.models import Config  # noqa: E402
from watcher.store import Store  # noqa: E402

PICTURE = ROOT / "docs" / "img" / "audit-sample.png"
# As in /work/shared/COMPONENTS.md and tests/support/chromium.py: nothing but the file.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
)

CONFIG = """\
site: acme-pune
state: sample.db
listen: 127.0.0.1:9177
api_token: "${WATCHER_API_TOKEN:-sample}"
ssh: {user: monitor}
contacts:
  managers: [{name: IT manager, email: it-manager@acme.example}]
targets:
  - name: mail1
    host: mail1.acme.example
    description: Mail server (Postfix, Dovecot)
    probes:
      - disk: {paths: [/var, /]}
      - load: {}
      - memory: {}
      - mail_queue: {}
      - du: {paths: [/var], old_files: {paths: [/var/log], older_than: 30d}}
      - http: {name: webmail, url: "https://mail1.acme.example/webmail"}
  - name: db1
    host: db1.acme.example
    description: ERP database (PostgreSQL)
    probes:
      - disk: {paths: [/srv/db]}
      - load: {}
      - memory: {}
      - tcp: {port: 5432}
  - name: mdm
    description: Device management
    probes:
      - agent_checkins: {url: "https://mdm.acme.example/api/devices", stale_after: 24h}
checkins:
  - {name: nightly-backup, schedule: "30 2 * * *", grace: 2h}
"""


def populate(store: Store, config: Config) -> None:
    """A month of the site, ending Monday 23 Nov 2026 08:00 IST."""

    def disk(start: float, per_day: float, noise: float, size: float):
        return lambda day, rng: {
            "used_percent": start + per_day * day + rng.gauss(0, noise),
            "used_bytes": (start + per_day * day) / 100 * size,
            "size_bytes": size,
            "free_bytes": (100 - start - per_day * day) / 100 * size,
            "inodes_used_percent": 12.0 + 0.01 * day,
        }

    series(store, "mail1", "disk", disk(61, 1.0, 0.8, 100e9), labels={"path": "/var"}, seed=1)
    series(store, "mail1", "disk", disk(35, 0.0, 0.3, 20e9), labels={"path": "/"}, seed=2)
    series(store, "db1", "disk", disk(40, 0.3, 0.5, 500e9), labels={"path": "/srv/db"}, seed=3)

    def load(peak: float):
        def figures(day: float, rng):
            clock = day + 2.5 / 24
            busy = int(clock) % 2 == 0 and 9 <= (clock % 1) * 24 < 13
            per_core = (peak if busy else 0.35) + rng.gauss(0, 0.05)
            return {"load1": per_core * 4, "cores": 4, "load1_per_core": per_core}

        return figures

    series(store, "mail1", "load", load(1.4), seed=4)
    series(store, "db1", "load", load(0.8), seed=5)
    for target, seed in (("mail1", 6), ("db1", 7)):
        series(
            store,
            target,
            "memory",
            lambda day, rng: {
                "used_percent": 72 + 15 * ((day * 24) % 24 > 12) + rng.gauss(0, 2),
                "swap_used_percent": 3.0,
            },
            seed=seed,
        )
    series(
        store,
        "mail1",
        "mail_queue",
        lambda day, rng: {
            "queued": max(0.0, 4 + 1.5 * day + rng.gauss(0, 2)),
            "oldest_age_s": 900.0,
        },
        seed=8,
    )
    for directory, size, per_day in (
        ("/var/mail", 30e9, 0.4e9),
        ("/var/log", 6e9, 0.2e9),
        ("/var/lib/mysql", 12e9, 0.0),
        ("/var/spool/postfix", 1.2e9, 0.0),
    ):
        series(
            store,
            "mail1",
            "du",
            lambda day, rng, s=size, g=per_day: {"size_bytes": s + g * day, "share_percent": 10.0},
            labels={"path": "/var", "dir": directory},
            every=timedelta(days=1),
        )
    old_logs = {"path": "/var/log", "older_than": "30d"}
    old_figures = {"old_files": 240.0, "old_bytes": 3.1 * 2**30, "unreadable": 0.0}
    series(
        store, "mail1", "du", lambda day, rng: old_figures, labels=old_logs, every=timedelta(days=1)
    )
    write(
        store,
        [
            result(
                "mail1",
                "du",
                labels=old_logs,
                at=NOW - timedelta(hours=3),
                metrics=old_figures,
                evidence="240 files under /var/log not modified for over 30d: 3328599654 bytes\n"
                "         bytes   days  file\n"
                "    2147483648     45  /var/log/mail.log.1\n"
                "     524288000     38  /var/log/dovecot.log.2\n"
                "      52428800     33  /var/log/syslog.5",
            )
        ],
    )
    series(
        store,
        "mdm",
        "agent_checkins",
        lambda day, rng: {
            "devices_total": 480,
            "stale_devices": 24 + round(day),
            "stale_ratio": (24 + round(day)) / 480,
            "never_checked_in": 4,
        },
        labels={"scope": "fleet"},
        every=timedelta(hours=1),
    )
    series(
        store,
        "nightly-backup",
        "nightly-backup",
        lambda day, rng: {"late_s": 0.0},
        kind="heartbeat",
        status=lambda day: "fail" if 11 <= day < 11.2 or 26 <= day < 26.1 else "ok",
    )
    compact(store, NOW)

    # Incidents through the real engine: (target, probe, kind, days ago, message,
    # acknowledged after, resolved after)
    clock = Clock(NOW - timedelta(days=20))
    engine = Engine(config, store, clock=clock)
    for target, probe, kind, ago, message, ack, fix in (
        ("mail1", "webmail", "http", 19.6, "HTTP 502 Bad Gateway", 25, 70),
        ("db1", "tcp", "tcp", 12.4, "connection refused", 50, 185),
        ("mail1", "webmail", "http", 6.3, "timed out after 10.0s", 140, 310),
        ("db1", "tcp", "tcp", 2.2, "connection refused", 20, 95),
    ):
        at = NOW - timedelta(days=ago)
        for moment in (at - timedelta(minutes=2), at):
            clock.now = moment
            engine.process(
                [result(target, probe, kind=kind, status="fail", message=message, at=moment)]
            )
        [incident] = [i for i in store.incidents(states=["open"]) if i.target == target]
        clock.now = at + timedelta(minutes=ack)
        engine.acknowledge(incident.id, by="l2", source="helpdesk")
        clock.now = at + timedelta(minutes=fix)
        engine.resolve(incident.id, by="l2")


def render(html_out: Path | None) -> str:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "watcher.yml").write_text(CONFIG)
        config = load_config(Path(directory) / "watcher.yml", environ={})
        store = Store(config.state_path)
        populate(store, config)
        audit = build_audit(store, config, since=timedelta(days=30), now=NOW)
        store.close()
    html = render_html(audit)
    if html_out is not None:
        html_out.write_text(html, encoding="utf-8")
    return html


def photograph(html: str, picture: Path, *, width: int, height: int) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed: run scripts/install-debian-deps.sh")
    with tempfile.TemporaryDirectory() as directory:
        page = Path(directory) / "audit.html"
        page.write_text(html, encoding="utf-8")
        shot = Path(directory) / "shot.png"
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={Path(directory) / 'profile'}",
                f"--window-size={width},{height}",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        picture.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, picture)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, help="also write the report's HTML here")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    html = render(args.html)
    photograph(html, PICTURE, width=args.width, height=args.height)
    print(f"{PICTURE.relative_to(ROOT)}: {PICTURE.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
