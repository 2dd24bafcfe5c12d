"""Audit figures from a generated history: forecasts, usage, queues, cleanup, fleet,
heartbeats, and SLA compliance driven through the real engine on a business calendar."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.audit_history import NOW, compact, series, write
from tests.support.helpers import Clock, config_from, result
from watcher.app.pipeline import Engine
from watcher.audit.build import build_audit, du_directory
from watcher.audit.figures import Audit
from watcher.audit.report_html import render_html
from watcher.audit.report_md import render_markdown
from watcher.config.models import Config
from watcher.config.thresholds import Thresholds
from watcher.store import Store

IST = ZoneInfo("Asia/Kolkata")

CONFIG = """
site: acme-pune
state: state/watcher.db
listen: null
ssh: {user: monitor}
targets:
  - name: mail1
    host: 127.0.0.15
    description: Mail server
    probes:
      - disk: {paths: [/var, /]}
      - tcp: {port: 25}
  - name: db1
    host: 127.0.0.16
    probes:
      - tcp: {port: 5432}
  - name: web1
    probes:
      - http: {url: "http://127.0.0.1:9/"}
  - name: web2
    probes:
      - http: {url: "http://127.0.0.1:9/"}
  - name: fs1
    probes:
      - disk: {paths: [/srv]}
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return config_from(tmp_path, CONFIG, environ={})


@pytest.fixture
def store(config: Config) -> Store:
    s = Store(config.state_path)
    yield s
    s.close()


def _audit(
    store: Store, config: Config, *, days: float = 30, now: datetime = NOW, **kw: float
) -> Audit:
    return build_audit(
        store, config, since=timedelta(days=days), now=now, thresholds=Thresholds(**kw)
    )


def _disk(audit: Audit, target: str, path: str):
    server = next(s for s in audit.servers if s.target == target)
    return next(d for d in server.disks if d.path == path)


def _linear(start: float, per_day: float, noise: float):
    return lambda day, rng: {"used_percent": start + per_day * day + rng.gauss(0, noise)}


# ------------------------------------------------------------------------ disks


def test_a_disk_filling_linearly_with_noise_is_forecast_full_on_the_right_day(
    store: Store, config: Config
) -> None:
    # 60% growing half a point a day for 30 days, noise of 1.5 points: 75% now, full in 50 days
    series(store, "mail1", "disk", _linear(60, 0.5, 1.5), labels={"path": "/var"})
    compact(store)
    disk = _disk(_audit(store, config), "mail1", "/var")
    f = disk.forecast
    assert f.confidence == "good" and f.note == ""
    assert f.per_week == pytest.approx(3.5, abs=0.15)
    assert abs((f.at - (NOW + timedelta(days=50))).total_seconds()) < 2 * 86400
    assert disk.critical.days_left == pytest.approx(40, abs=2)  # 95% ten days earlier
    assert disk.used_percent == pytest.approx(75, abs=4)
    # the history behind it: two days raw, the rest hourly, a chart of at most 168 points
    assert 140 <= len(disk.history) <= 168


def test_a_disk_nine_days_from_full_is_the_top_recommendation(store: Store, config: Config) -> None:
    series(store, "mail1", "disk", _linear(61, 1.0, 1.0), labels={"path": "/var"})
    series(store, "mail1", "disk", _linear(40, 0.0, 0.5), labels={"path": "/"}, seed=8)
    series(store, "fs1", "disk", _linear(50, 0.2, 0.5), labels={"path": "/srv"}, seed=9)
    compact(store)
    audit = _audit(store, config)
    top = audit.recommendations[0]
    assert top.severity == "high" and top.target == "mail1" and top.area == "disk"
    match = re.fullmatch(r"/var on mail1 full in about (\d+) days at the current rate", top.text)
    assert match and 8 <= int(match.group(1)) <= 10, top.text
    # / is steady: no forecast, a plain note, no recommendation
    root = _disk(audit, "mail1", "/")
    assert root.forecast.at is None and root.forecast.note == "steady: no clear growth"
    assert not [r for r in audit.recommendations if r.text.startswith("/ on mail1")]
    # /srv, 56% now, fills in 220 days: beyond the 90-day horizon of recommendations
    srv = _disk(audit, "fs1", "/srv")
    assert srv.forecast.days_left == pytest.approx(220, rel=0.1)
    assert not [r for r in audit.recommendations if "/srv" in r.text]


def test_too_little_history_gives_a_note_instead_of_a_date(store: Store, config: Config) -> None:
    series(store, "mail1", "disk", _linear(60, 5.0, 0.1), labels={"path": "/var"}, days=0.5)
    disk = _disk(_audit(store, config), "mail1", "/var")
    assert disk.forecast.at is None and disk.forecast.confidence == "none"
    assert (
        disk.forecast.note
        == "too little history to forecast (12 h of data; a forecast needs a day or more)"
    )


def test_noisy_growth_gives_a_note_instead_of_a_date(store: Store, config: Config) -> None:
    # a clear but small trend (0.2 a day) under hourly noise of 5 points: R² about 0.1
    series(
        store,
        "mail1",
        "disk",
        _linear(50, 0.2, 5.0),
        labels={"path": "/var"},
        every=timedelta(hours=1),
    )
    compact(store)
    disk = _disk(_audit(store, config), "mail1", "/var")
    assert disk.forecast.at is None
    assert disk.forecast.note.startswith("too noisy to forecast (the trend explains")
    assert disk.forecast.r2 < 0.3


def test_a_cleanup_restarts_the_fit(store: Store, config: Config) -> None:
    # 1 point a day from 50% for 20 days, a cleanup down to 40%, then 1 point a day again: 50% now
    def usage(day: float, rng) -> dict[str, float]:
        value = 50 + day if day < 20 else 40 + (day - 20)
        return {"used_percent": value + rng.gauss(0, 0.3)}

    series(store, "mail1", "disk", usage, labels={"path": "/var"})
    compact(store)
    f = _disk(_audit(store, config), "mail1", "/var").forecast
    assert f.days_left == pytest.approx(50, abs=2)
    assert f.note == "fitted since 13 Nov, when it fell from 70 to 40%"
    assert f.reset["from"] == pytest.approx(70, abs=1)


def test_a_disk_already_critical_is_a_critical_recommendation(store: Store, config: Config) -> None:
    series(store, "fs1", "disk", _linear(97, 0.0, 0.2), labels={"path": "/srv"})
    compact(store)
    audit = _audit(store, config)
    assert audit.recommendations[0].severity == "critical"
    assert (
        audit.recommendations[0].text == "/srv on fs1 is 97% full now: free space or grow it today"
    )


def test_inodes_and_bytes_grow_beside_the_percentage(store: Store, config: Config) -> None:
    def usage(day: float, rng) -> dict[str, float]:
        return {
            "used_percent": 60 + 0.5 * day,
            "used_bytes": 60e9 + 0.5e9 * day,
            "free_bytes": 40e9 - 0.5e9 * day,
            "size_bytes": 100e9,
            "inodes_used_percent": 50 + 1.0 * day,
        }

    series(store, "mail1", "disk", usage, labels={"path": "/var"})
    compact(store)
    audit = _audit(store, config)
    disk = _disk(audit, "mail1", "/var")
    assert disk.growth_bytes_per_week == pytest.approx(3.5e9, rel=0.01)
    assert disk.size_bytes == 100e9 and disk.free_bytes == pytest.approx(25e9, rel=0.01)
    assert disk.inodes_forecast is not None and disk.inodes_forecast.days_left == pytest.approx(
        20, abs=0.5
    )
    assert any(
        r.area == "inodes" and "runs out of inodes in about 20 days" in r.text
        for r in audit.recommendations
    )


# ------------------------------------------------------------------------ load, memory, mail queue


def test_load_and_memory_percentiles_and_hours_above_the_threshold(
    store: Store, config: Config
) -> None:
    # load per core 0.3, except 10:00-12:00 UTC on every third day (ten days, 20 h) at 1.5
    def load(day: float, rng) -> dict[str, float]:
        clock = day + 2.5 / 24  # the history starts at 02:30
        per_core = 1.5 if int(clock) % 3 == 0 and 10 <= (clock % 1) * 24 < 12 else 0.3
        return {"load1": per_core * 4, "cores": 4, "load1_per_core": per_core}

    series(store, "db1", "load", load, every=timedelta(minutes=5))
    series(
        store,
        "db1",
        "memory",
        lambda day, rng: {"used_percent": 70 + 20 * (day % 1), "swap_used_percent": 0.0},
    )
    compact(store)
    audit = _audit(store, config)
    server = next(s for s in audit.servers if s.target == "db1")
    by_label = {u.label: u for u in server.usage}
    load_stats = by_label["load per core"].stats
    assert load_stats.hours_above == 20 and load_stats.hours == pytest.approx(720, abs=1)
    assert (
        load_stats.p50 == pytest.approx(0.3)
        and load_stats.p95 == pytest.approx(0.3)
        and load_stats.max == 1.5
    )
    memory = by_label["memory used"].stats
    assert memory.p50 == pytest.approx(80, abs=1) and memory.p95 == pytest.approx(89, abs=1)
    assert memory.max == pytest.approx(90, abs=0.5) and memory.hours_above == pytest.approx(
        0, abs=31
    )
    assert by_label["swap used"].stats.max == 0
    rec = next(r for r in audit.recommendations if r.area == "load")
    assert rec.text == "db1 was overloaded for 20 h (3% of the period): load per core at or above 1"
    assert rec.severity == "medium"  # 1% to 5% of the time


def test_a_growing_mail_queue_and_a_stuck_message_are_recommendations(
    store: Store, config: Config
) -> None:
    series(
        store,
        "mail1",
        "mail_queue",
        lambda day, rng: {"queued": 5 + 2 * day, "oldest_age_s": 600 + 86400 * max(0, day - 28)},
    )
    compact(store)
    audit = _audit(store, config)
    server = next(s for s in audit.servers if s.target == "mail1")
    queue = {u.label: u for u in server.mail_queue}
    assert queue["mail queue"].per_week == pytest.approx(14, rel=0.02)
    assert queue["mail queue"].stats.max == pytest.approx(65, abs=0.5)
    texts = [r.text for r in audit.recommendations if r.area == "mail"]
    assert "mail1: mail queue keeps growing (+14 messages a week)" in texts
    # the latest sample (ten minutes before the end: 600 s + 1.993 days), not its hour's mean
    assert "mail1: the oldest queued mail is 2d old: delivery is stuck" in texts


def test_the_audit_tolerates_kinds_that_have_no_history(store: Store, config: Config) -> None:
    audit = _audit(store, config)
    assert audit.recommendations == []
    assert {s.target for s in audit.servers} == {"mail1", "fs1"}  # configured disks, nothing yet
    assert (
        "no load history in this period: add a load probe to a target to see it here" in audit.notes
    )
    json.loads(audit.to_json())


# ------------------------------------------------------------------------ cleanup, fleet, heartbeats


def test_du_results_give_the_largest_and_fastest_growing_directories(
    store: Store, config: Config
) -> None:
    sizes = {
        "/var/lib/mysql": (40e9, 0.0),
        "/var/log": (8e9, 1e9),
        "/var/spool/mail": (20e9, 0.1e9),
        "/var/cache": (1e9, 0),
    }
    for directory, (size, per_day) in sizes.items():
        series(
            store,
            "mail1",
            "du",
            lambda day, rng, s=size, g=per_day: {"size_bytes": s + g * day},
            labels={"path": "/var", "dir": directory},
            every=timedelta(days=1),
        )
    series(
        store,
        "mail1",
        "du",
        lambda day, rng: {"total_bytes": 100e9},
        labels={"path": "/var"},
        every=timedelta(days=1),
    )
    compact(store)
    server = next(s for s in _audit(store, config).servers if s.target == "mail1")
    largest = [(c.path, c.why) for c in server.cleanup]
    assert largest == [
        ("/var/lib/mysql", "largest"),
        ("/var/log", "logs, growing"),
        ("/var/spool/mail", "largest, growing"),
        ("/var/cache", "largest"),
    ]
    log = next(c for c in server.cleanup if c.path == "/var/log")
    assert log.growth_bytes_per_week == pytest.approx(
        7e9, rel=0.01
    ) and log.size_bytes == pytest.approx(37e9, rel=0.01)


def test_du_items_name_the_directory() -> None:
    assert du_directory("/var/log /var") == "/var/log"
    assert du_directory("/srv/my files/a /srv/my files") == "/srv/my files/a"
    assert du_directory("/var") == "/var"


def _old_files(
    store: Store,
    target: str,
    path: str,
    files: float,
    size: float,
    largest: tuple[tuple[int, int, str], ...] = (),
    evidence: str = "",
) -> None:
    """A month of daily old-file scans of ``path`` (30 days), the latest with one result
    per largest file (bytes, days, name) and ``evidence`` for a reader."""
    labels = {"path": path, "older_than": "30d"}
    figures = {"old_files": files, "old_bytes": size, "unreadable": 0.0}
    series(store, target, "du", lambda day, rng: figures, labels=labels, every=timedelta(days=1))
    at = NOW - timedelta(hours=1)
    write(
        store,
        [
            result(target, "du", metrics=figures, labels=labels, at=at, evidence=evidence),
            *(
                result(
                    target,
                    "du",
                    metrics={"file_bytes": float(size), "age_days": float(days)},
                    labels={**labels, "file": name},
                    at=at,
                )
                for size, days, name in largest
            ),
        ],
    )


_MAIL_LOGS = (
    (2147483648, 45, "/var/log/mail.log.1"),
    (734003200, 120, "/var/log/old  logs/syslog.7"),
)


def _mount(store: Store, target: str, path: str, size: float) -> None:
    series(
        store,
        target,
        "disk",
        lambda day, rng: {"used_percent": 50.0, "size_bytes": size},
        labels={"path": path},
    )


def test_old_files_give_a_section_with_the_largest_and_a_recommendation(
    store: Store, config: Config
) -> None:
    _mount(store, "mail1", "/var", 100e9)
    _mount(store, "mail1", "/", 20e9)
    _old_files(
        store,
        "mail1",
        "/var/log",
        240,
        3.1 * 2**30,
        _MAIL_LOGS,
        "240 files under /var/log not modified for over 30d: 3328599654 bytes\n"
        "         bytes   days  file\n"
        "    2147483648     45  /var/log/mail.log.1\n"
        "     734003200    120  /var/log/old  logs/syslog.7\n"
        "--- stderr ---\n"
        "find: '/var/log/private': Permission denied",
    )
    series(  # a directory du measured, which old files must not be mistaken for
        store,
        "mail1",
        "du",
        lambda day, rng: {"size_bytes": 5e9, "share_percent": 5.0},
        labels={"path": "/var", "dir": "/var/log"},
        every=timedelta(days=1),
    )
    compact(store)
    audit = _audit(store, config)
    server = next(s for s in audit.servers if s.target == "mail1")
    [old] = server.old_files
    assert (old.path, old.older_than, old.files) == ("/var/log", "30d", 240)
    assert old.size_bytes == pytest.approx(3.1 * 2**30)
    assert old.mount == "/var" and old.mount_percent == pytest.approx(3.33, abs=0.01)
    assert [(f.size_bytes, f.age_days, f.name) for f in old.largest] == [
        (2147483648, 45, "/var/log/mail.log.1"),
        (734003200, 120, "/var/log/old  logs/syslog.7"),
    ]
    assert [(c.path, c.why) for c in server.cleanup] == [("/var/log", "logs")]
    [rec] = [r for r in audit.recommendations if "untouched" in r.text]
    assert (rec.severity, rec.area, rec.target) == ("low", "cleanup", "mail1")
    assert rec.text == (
        "/var/log on mail1: 240 files untouched for over 30 days take 3.33 GB; "
        "compress or remove them"
    )
    assert rec.detail == "3.3% of /var"
    data = json.loads(audit.to_json())
    [mail1] = [s for s in data["servers"] if s["target"] == "mail1"]
    assert mail1["old_files"][0]["files"] == 240 and mail1["old_files"][0]["largest"][0] == {
        "size_bytes": 2147483648,
        "age_days": 45,
        "name": "/var/log/mail.log.1",
    }


def test_the_largest_old_files_come_from_the_results_whatever_the_evidence_says(
    tmp_path: Path, config: Config
) -> None:
    """Two stores with the same per-file results, one whose evidence lists other files in
    other words: the audit's largest old files and its reports are the same."""
    reports = []
    for name, evidence in (
        ("as-listed", "240 files\n    2147483648     45  /var/log/mail.log.1"),
        ("reworded", "Old files (by size):\n - /etc/passwd, 9 bytes, 1 day\n  1  2  /tmp/x"),
    ):
        store = Store(tmp_path / f"{name}.db")
        _mount(store, "mail1", "/var", 100e9)
        _old_files(store, "mail1", "/var/log", 240, 3.1 * 2**30, _MAIL_LOGS, evidence)
        compact(store)
        audit = _audit(store, config)
        store.close()
        [old] = next(s for s in audit.servers if s.target == "mail1").old_files
        assert [(f.size_bytes, f.age_days, f.name) for f in old.largest] == list(_MAIL_LOGS)
        reports.append((render_html(audit), render_markdown(audit), audit.to_json()))
    assert reports[0] == reports[1]


def test_old_files_under_a_gigabyte_are_recommended_only_at_5_percent_of_their_mount(
    store: Store, config: Config
) -> None:
    _mount(store, "mail1", "/var", 100e9)
    _old_files(store, "mail1", "/var/log", 3000, 900e6)  # 0.9% of /var
    _mount(store, "fs1", "/srv", 10e9)
    _old_files(store, "fs1", "/srv/exports/logs", 12, 600e6)  # 6% of /srv
    _old_files(store, "db1", "/opt/app/logs", 7, 850e6)  # no disk probe: 1 GiB alone counts
    compact(store)
    audit = _audit(store, config)
    shares = {
        (o.target, o.path): (
            o.mount,
            None if o.mount_percent is None else round(o.mount_percent, 1),
        )
        for s in audit.servers
        for o in s.old_files
    }
    assert shares == {
        ("mail1", "/var/log"): ("/var", 0.9),
        ("fs1", "/srv/exports/logs"): ("/srv", 6.0),
        ("db1", "/opt/app/logs"): (None, None),
    }
    assert [(r.text, r.detail) for r in audit.recommendations if "untouched" in r.text] == [
        (
            "/srv/exports/logs on fs1: 12 files untouched for over 30 days take 600 MB; "
            "compress or remove them",
            "6.0% of /srv",
        )
    ]
    lower = _audit(store, config, old_files_bytes=800e6)
    assert [r.target for r in lower.recommendations if "untouched" in r.text] == [
        "mail1",
        "db1",
        "fs1",
    ]


def test_the_fleet_stale_ratio_trend_and_devices_never_checked_in(
    store: Store, config: Config
) -> None:
    def fleet(day: float, rng) -> dict[str, float]:
        stale = round(10 + day)  # of 200: 5% at the start, 20% now
        return {
            "devices_total": 200,
            "stale_devices": stale,
            "stale_ratio": stale / 200,
            "never_checked_in": 3,
        }

    series(
        store, "mdm", "agent_checkins", fleet, labels={"scope": "fleet"}, every=timedelta(hours=1)
    )
    last = result(
        "mdm",
        "agent_checkins",
        metrics=fleet(30, None),
        labels={"scope": "fleet"},
        at=NOW - timedelta(minutes=1),
        evidence="40 of 200 devices have not checked in for 1d (stalest first):\n  d-17  Ravi's phone  never\n  d-3  Lab tablet  12 days ago",
    )
    write(store, [last])
    compact(store)
    audit = _audit(store, config)
    [f] = audit.fleet
    assert (f.devices_total, f.stale_devices, f.never_checked_in) == (200, 40, 3)
    assert f.ratio_first == pytest.approx(0.05, abs=0.01) and f.ratio_per_week == pytest.approx(
        0.035, abs=0.002
    )
    assert f.late == ["d-17  Ravi's phone  never", "d-3  Lab tablet  12 days ago"]
    texts = [r.text for r in audit.recommendations if r.area == "fleet"]
    assert texts == [
        "40 of 200 devices on mdm are not checking in (20%, up from 5%)",
        "3 devices on mdm have never checked in: finish their enrolment",
    ]


def test_missed_heartbeats_count_episodes_not_results(store: Store, config: Config) -> None:
    # a nightly backup reported every 10 minutes: late on two nights (3 h and 1 h), failing again now
    def late(day: float) -> str:
        return "fail" if 5 <= day < 5.125 or 20 <= day < 20.05 or day > 29.9 else "ok"

    series(
        store,
        "site",
        "nightly-backup",
        lambda day, rng: {"late_s": 0.0},
        kind="heartbeat",
        status=late,
    )
    compact(store)
    [h] = _audit(store, config).heartbeats
    assert h.name == "nightly-backup" and h.missed == 3
    assert h.failing_hours == pytest.approx(3 + 1.2 + 2.4, abs=0.5)


# ------------------------------------------------------------------------ incidents and SLA


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment given in IST, held in UTC as the engine's clock gives it."""
    return datetime(2026, 11, day, hour, minute, tzinfo=IST).astimezone(UTC)


def _fail(engine: Engine, target: str, probe: str, at: datetime) -> None:
    for moment in (at - timedelta(minutes=2), at):  # the rules hold for 2 minutes
        engine.process(
            [result(target, probe, status="fail", message="connection refused", at=moment)]
        )


def _incident(store: Store, target: str):
    [incident] = [i for i in store.incidents(limit=100) if i.target == target]
    return incident


def test_sla_compliance_mtta_and_mttr_against_hand_computed_values(
    store: Store, config: Config
) -> None:
    """Business hours 08:00-18:00 IST, Monday to Friday (the seed's support hours).

    A  P2 mail1 opened Fri 20 Nov 17:00: respond by Mon 11:00 (1 h Fri + 3 h Mon), acked Mon 10:30: met;
       resolve by Tue 17:00 (2 working days: 1 + 10 + 9 h), resolved Tue 16:00: met.
    B  P2 db1 opened Fri 19:30, after hours: respond by Mon 12:00, acked 12:30: missed;
       resolve by Tue 18:00, resolved Wed 09:00: missed.
    C  P1 web1 opened Sat 03:00 (24x7): respond by 05:00, acked 04:00: met; resolve by 07:00, resolved 08:00: missed.
    D  P1 web2 opened Sun 10:00, recovered 10:30 without an ack: the fix is the response; both met.
    E  P3 fs1 opened Wed 25 Nov 10:00, open at the report (Wed 14:00): both deadlines still running.
    """
    clock = Clock(_at(20, 16))
    engine = Engine(config, store, clock=clock)
    _fail(engine, "mail1", "tcp", _at(20, 17))
    _fail(engine, "db1", "tcp", _at(20, 19, 30))
    _fail(engine, "web1", "http", _at(21, 3))
    _fail(engine, "web2", "http", _at(22, 10))
    for minute in (29, 30):
        engine.process([result("web2", "http", at=_at(22, 10, minute))])
    a, b, c = (_incident(store, t) for t in ("mail1", "db1", "web1"))
    assert (a.response_due, a.resolve_due) == (
        _at(23, 11),
        _at(24, 17),
    )  # the tracker agrees with the hand
    assert (b.response_due, b.resolve_due) == (_at(23, 12), _at(24, 18))
    for incident, when in ((c, _at(21, 4)), (a, _at(23, 10, 30)), (b, _at(23, 12, 30))):
        clock.now = when
        engine.acknowledge(incident.id, by="l2", source="cli")
    for incident, when in ((c, _at(21, 8)), (a, _at(24, 16)), (b, _at(25, 9))):
        clock.now = when
        engine.resolve(incident.id, by="l2")
    engine.process(
        [
            result(
                "fs1", "disk", metrics={"used_percent": 90}, labels={"path": "/srv"}, at=_at(25, 10)
            )
        ]
    )

    audit = _audit(store, config, days=7, now=_at(25, 14))
    inc = audit.incidents
    by = {p.priority: p for p in inc.by_priority}
    assert inc.opened == 5
    assert (by["P1"].opened, by["P2"].opened, by["P3"].opened, by["P4"].opened) == (2, 2, 1, 0)
    assert (by["P1"].response.met, by["P1"].response.judged, by["P1"].response.percent) == (
        2,
        2,
        100.0,
    )
    assert (by["P1"].resolution.met, by["P1"].resolution.judged, by["P1"].resolution.percent) == (
        1,
        2,
        50.0,
    )
    assert (by["P2"].response.percent, by["P2"].resolution.percent) == (50.0, 50.0)
    assert (by["P3"].response.running, by["P3"].resolution.running, by["P3"].open_now) == (1, 1, 1)
    assert by["P3"].response.percent is None
    hour = 3600.0
    assert by["P1"].mtta_s == 1 * hour and by["P1"].mttr_s == 2.75 * hour
    assert by["P2"].mtta_s == 65.25 * hour and by["P2"].mttr_s == 102.25 * hour
    # on P2's business clock: acked after 1 + 2.5 and 4.5 working hours; resolved after
    # 1 + 10 + 8 and 10 + 10 + 1
    assert by["P2"].mtta_clock_s == 4.0 * hour and by["P2"].mttr_clock_s == 20.0 * hour
    assert (by["P1"].mtta_clock_s, by["P1"].mttr_clock_s) == (by["P1"].mtta_s, by["P1"].mttr_s)
    markdown = render_markdown(audit)
    assert "| 2d17h (4h working) | 4d6h (20h working) |" in markdown, markdown
    assert '<span class="note">20h working</span>' in render_html(audit)
    assert math.isclose(inc.mtta_s, (1 + 65.5 + 65) / 3 * hour)
    assert inc.mttr_s == 52.5 * hour
    assert [(m["target"], m["missed"]) for m in inc.missed] == [
        ("web1", ["resolution"]),
        ("db1", ["resolution", "response"]),
    ]
    assert [(r.rule, r.incidents) for r in inc.noisiest] == [
        ("http-down", 2),
        ("tcp-down", 2),
        ("disk-high", 1),
    ]
    sla = [(r.severity, r.text) for r in audit.recommendations if r.area == "sla"]
    assert sla == [
        ("critical", "P1 resolution SLA met for 50% of incidents (1 of 2); the target is 95%"),
        ("high", "P2 resolution SLA met for 50% of incidents (1 of 2); the target is 95%"),
        ("high", "P2 response SLA met for 50% of incidents (1 of 2); the target is 95%"),
    ]


def test_a_missed_deadline_counts_before_the_incident_ends(store: Store, config: Config) -> None:
    clock = Clock(_at(23, 9))
    engine = Engine(config, store, clock=clock)
    _fail(engine, "web1", "http", _at(23, 9))  # P1: respond by 11:00, resolve by 13:00
    audit = _audit(store, config, days=1, now=_at(23, 12))
    p1 = next(p for p in audit.incidents.by_priority if p.priority == "P1")
    assert (p1.response.missed, p1.resolution.running, p1.open_now) == (1, 1, 1)


def test_the_json_report_holds_the_same_figures(store: Store, config: Config) -> None:
    series(store, "mail1", "disk", _linear(61, 1.0, 1.0), labels={"path": "/var"})
    compact(store)
    audit = _audit(store, config)
    data = json.loads(audit.to_json())
    [mail1] = [s for s in data["servers"] if s["target"] == "mail1"]
    disk = mail1["disks"][0]
    figures = _disk(audit, "mail1", "/var")
    assert disk["path"] == "/var" and disk["forecast"]["days_left"] == pytest.approx(
        figures.forecast.days_left, abs=1e-4
    )
    assert abs(datetime.fromisoformat(disk["forecast"]["at"]) - figures.forecast.at) < timedelta(
        seconds=1
    )
    assert len(disk["history"]) == len(figures.history)
    assert data["recommendations"][0]["text"] == audit.recommendations[0].text
    assert data["incidents"]["by_priority"][0]["response"] == {
        "met": 0,
        "missed": 0,
        "running": 0,
        "judged": 0,
        "percent": None,
    }
    assert data["thresholds"]["disk_critical"] == 95.0
