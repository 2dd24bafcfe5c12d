"""Generated results history for the audit tests, written through the store as the engine
writes it and compacted as the daemon compacts it (raw 2 days, hourly 90, daily 730)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from probes.base import Result
from tests.support.helpers import result
from watcher.store import Store

# Monday 23 Nov 2026 08:00 IST: a weekly report's slot
NOW = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
RETENTION = {"raw": timedelta(days=2), "hourly": timedelta(days=90), "daily": timedelta(days=730)}


def write(store: Store, results: list[Result]) -> None:
    with store.transaction() as db:
        store.save_results(db, results)


def series(
    store: Store,
    target: str,
    probe: str,
    metrics: Callable[[float, random.Random], dict[str, float] | None],
    *,
    days: float = 30,
    every: timedelta = timedelta(minutes=10),
    labels: dict[str, str] | None = None,
    kind: str | None = None,
    status: Callable[[float], str] | None = None,
    end: datetime = NOW,
    seed: int = 7,
) -> None:
    """Results from ``end - days`` to ``end``; ``metrics(day, rng)`` gives each one's figures
    (``day``: days since the start, a float), None to skip that moment."""
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    batch = []
    at = start
    while at < end:
        day = (at - start).total_seconds() / 86400
        figures = metrics(day, rng)
        if figures is not None:
            batch.append(
                result(
                    target,
                    probe,
                    kind=kind or probe,
                    metrics=figures,
                    labels=labels,
                    at=at,
                    status=status(day) if status else "ok",
                )
            )
        at += every
    write(store, batch)


def compact(store: Store, now: datetime = NOW) -> None:
    store.compact(now, **RETENTION)


SITE_CONFIG = """
site: acme-pune
state: state/watcher.db
listen: null
ssh: {user: monitor}
contacts:
  managers: [{name: IT manager, email: it-manager@example.org}]
targets:
  - name: mail1
    host: 127.0.0.15
    description: Mail server (Postfix, Dovecot)
    probes:
      - disk: {paths: [/var, /]}
      - load: {}
      - memory: {}
      - mail_queue: {}
      - du: {paths: [/var]}
      - http: {name: webmail, url: "http://127.0.0.1:9/"}
  - name: db1
    host: 127.0.0.16
    probes:
      - disk: {paths: [/srv/db]}
      - load: {}
      - memory: {}
      - tcp: {port: 5432}
  - name: mdm
    probes:
      - agent_checkins: {url: "http://127.0.0.1:9/api/devices", stale_after: 24h}
"""


def populate_site(store: Store, config: object, *, end: datetime = NOW) -> None:
    """A month of a small site: disks (one nine days from full), load with overloads,
    memory, a growing mail queue, du with old log files (one with markup in its name), the
    device fleet, a late heartbeat, and incidents (one with markup in its message, which
    the report must show as text)."""
    from tests.support.helpers import Clock
    from watcher.app.pipeline import Engine

    def disk(start: float, per_day: float, noise: float):
        return lambda day, rng: {
            "used_percent": start + per_day * day + rng.gauss(0, noise),
            "used_bytes": (start + per_day * day) * 1e9,
            "size_bytes": 100e9,
            "free_bytes": (100 - start - per_day * day) * 1e9,
            "inodes_used_percent": 12.0 + 0.01 * day,
        }

    series(store, "mail1", "disk", disk(61, 1.0, 0.8), labels={"path": "/var"}, end=end, seed=1)
    series(store, "mail1", "disk", disk(35, 0.0, 0.3), labels={"path": "/"}, end=end, seed=2)
    series(store, "db1", "disk", disk(40, 0.3, 0.5), labels={"path": "/srv/db"}, end=end, seed=3)

    def load(peak: float):
        def figures(day: float, rng: random.Random) -> dict[str, float]:
            clock = day + 2.5 / 24
            busy = int(clock) % 2 == 0 and 9 <= (clock % 1) * 24 < 13
            per_core = (peak if busy else 0.35) + rng.gauss(0, 0.05)
            return {"load1": per_core * 4, "cores": 4, "load1_per_core": per_core}

        return figures

    series(store, "mail1", "load", load(1.4), end=end, seed=4)
    series(store, "db1", "load", load(0.8), end=end, seed=5)
    for target, seed in (("mail1", 6), ("db1", 7)):
        series(
            store,
            target,
            "memory",
            lambda day, rng: {
                "used_percent": 72 + 15 * ((day * 24) % 24 > 12) + rng.gauss(0, 2),
                "swap_used_percent": 3.0,
            },
            end=end,
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
        end=end,
        seed=8,
    )
    for directory, size, per_day in (
        ("/var/mail", 30e9, 0.4e9),
        ("/var/log", 6e9, 0.2e9),
        ("/var/lib/mysql", 12e9, 0.0),
    ):
        series(
            store,
            "mail1",
            "du",
            lambda day, rng, s=size, g=per_day: {"size_bytes": s + g * day, "share_percent": 10.0},
            labels={"path": "/var", "dir": directory},
            every=timedelta(days=1),
            end=end,
        )
    old_logs = {"path": "/var/log", "older_than": "30d"}
    old_figures = {"old_files": 240.0, "old_bytes": 3.1 * 2**30, "unreadable": 0.0}
    series(
        store,
        "mail1",
        "du",
        lambda day, rng: old_figures,
        labels=old_logs,
        every=timedelta(days=1),
        end=end,
    )
    write(
        store,
        [
            result(
                "mail1",
                "du",
                labels=old_logs,
                at=end - timedelta(hours=3),
                metrics=old_figures,
                evidence="240 files under /var/log not modified for over 30d: 3328599654 bytes\n"
                "         bytes   days  file\n"
                "    2147483648     45  /var/log/mail.log.1\n"
                "      52428800     33  /var/log/<script>x.log",
            ),
            *(
                result(
                    "mail1",
                    "du",
                    labels={**old_logs, "file": name},
                    at=end - timedelta(hours=3),
                    metrics={"file_bytes": size, "age_days": days},
                )
                for size, days, name in (
                    (2147483648.0, 45.0, "/var/log/mail.log.1"),
                    (52428800.0, 33.0, "/var/log/<script>x.log"),
                )
            ),
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
        end=end,
    )
    write(
        store,
        [
            result(
                "mdm",
                "agent_checkins",
                labels={"scope": "fleet"},
                at=end - timedelta(minutes=2),
                metrics={
                    "devices_total": 480,
                    "stale_devices": 54,
                    "stale_ratio": 54 / 480,
                    "never_checked_in": 4,
                },
                evidence="54 of 480 devices have not checked in for 1d (stalest first):\n"
                "  a91f  Sales tablet 7  never\n  77c2  <b>Front desk</b>  9 days ago",
            )
        ],
    )
    series(
        store,
        "site",
        "nightly-backup",
        lambda day, rng: {"late_s": 0.0},
        kind="heartbeat",
        end=end,
        status=lambda day: "fail" if 11 <= day < 11.2 or 26 <= day < 26.1 else "ok",
    )
    compact(store, end)

    clock = Clock(end - timedelta(days=6))
    engine = Engine(config, store, clock=clock)  # type: ignore[arg-type]
    for target, probe, offset, message in (
        ("mail1", "webmail", timedelta(days=6), "HTTP 502 <script>alert('x')</script>"),
        ("db1", "tcp", timedelta(days=4, hours=3), "connection refused"),
        ("mail1", "webmail", timedelta(days=2), "timed out"),
    ):
        at = end - offset
        for moment in (at - timedelta(minutes=2), at):
            engine.process(
                [
                    result(
                        target,
                        probe,
                        kind="http" if probe == "webmail" else probe,
                        status="fail",
                        message=message,
                        at=moment,
                    )
                ]
            )
        clock.now = at + timedelta(minutes=40)
        [incident] = [i for i in store.incidents(states=["open"]) if i.target == target]
        engine.acknowledge(incident.id, by="l2", source="cli")
        clock.now = at + timedelta(hours=5)
        engine.resolve(incident.id, by="l2")
