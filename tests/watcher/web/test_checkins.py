"""Pushed heartbeats: the pure verdict as the clock moves, the endpoint over real HTTP
(a WebServer with the routes, and a whole running App), persistence and the config."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from probes.base import Result
from tests.servers.base import free_port, wait_until
from tests.support.helpers import Clock, config_from, write_config
from watcher.app.daemon import App
from watcher.app.pipeline import Engine
from watcher.config.models import Checkin, ConfigError
from watcher.store import Store
from watcher.web.checkins import Checkins, CheckinState, RateLimiter, Ticker, attach, verdict
from watcher.web.server import WebServer

API_TOKEN = "api-Token-4711"
BACKUP_TOKEN = "backup-Token-0815"
# Monday 23 Nov 2026, 04:00 UTC = 09:30 IST
START = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def _config_text(listen: str = "127.0.0.1:0", extra: str = "") -> str:
    return f"""
    site: acme
    state: state.db
    listen: "{listen}"
    api_token: "{API_TOKEN}"
    checkins:
      - {{name: nightly-backup, period: 1d, grace: 2h, token: "{BACKUP_TOKEN}", description: "pg_dump of the ERP database"}}
      - {{name: report-mailer, schedule: "30 2 * * *", grace: 1h, timezone: Asia/Kolkata}}
    {extra}
    """


# --------------------------------------------------------------------------- the pure verdict


def _spec(**kw: Any) -> Checkin:
    return Checkin(**{"name": "job", **kw})


def test_a_period_check_goes_new_up_grace_late_as_the_clock_moves() -> None:
    spec = _spec(period="1h", grace="10m")
    state = CheckinState("job", first_seen=START)
    assert verdict(spec, state, START + timedelta(minutes=30)).state == "new"
    assert verdict(spec, state, START + timedelta(minutes=71)).state == "late"  # never came
    pinged = CheckinState("job", first_seen=START, last_ok_at=START + timedelta(minutes=5), pings=1)
    seen = [verdict(spec, pinged, START + timedelta(minutes=m)) for m in (30, 66, 74, 76)]
    assert [(v.state, v.status, v.reason) for v in seen] == [
        ("up", "ok", ""),
        ("grace", "ok", ""),
        ("grace", "ok", ""),
        ("late", "fail", "late"),
    ]
    assert seen[-1].metrics["late_s"] == 60 and seen[-1].metrics["age_s"] == 71 * 60


def test_a_failure_holds_until_the_next_success() -> None:
    spec = _spec(period="1h")
    failed = CheckinState(
        "job",
        START,
        last_ok_at=START,
        last_fail_at=START + timedelta(minutes=1),
        exit_code=3,
        pings=2,
        failures=1,
    )
    found = verdict(spec, failed, START + timedelta(minutes=2))
    assert (found.state, found.reason, found.metrics["exit_code"]) == ("failed", "failed", 3)
    assert "exit code 3" in found.message
    recovered = CheckinState(
        "job",
        START,
        last_ok_at=START + timedelta(minutes=3),
        last_fail_at=START + timedelta(minutes=1),
    )
    assert verdict(spec, recovered, START + timedelta(minutes=4)).state == "up"
    late = verdict(spec, failed, START + timedelta(hours=2))
    assert late.reason == "late" and "last run failed" in late.message


def test_a_cron_schedule_is_honoured_in_its_timezone_as_the_clock_moves() -> None:
    spec = _spec(schedule="30 2 * * mon-fri", grace="1h")
    tz = "Asia/Kolkata"
    # Checked in Monday 02:40 IST (Sunday 21:10 UTC); next run Tuesday 02:30 IST = Monday 21:00 UTC.
    state = CheckinState(
        "job",
        first_seen=START - timedelta(days=2),
        last_ok_at=datetime(2026, 11, 22, 21, 10, tzinfo=UTC),
    )
    moments = {
        "monday noon IST": (datetime(2026, 11, 23, 6, 30, tzinfo=UTC), "up"),
        "tuesday 02:45 IST": (datetime(2026, 11, 23, 21, 15, tzinfo=UTC), "grace"),
        "tuesday 03:29 IST": (datetime(2026, 11, 23, 21, 59, tzinfo=UTC), "grace"),
        "tuesday 03:31 IST": (datetime(2026, 11, 23, 22, 1, tzinfo=UTC), "late"),
    }
    for name, (now, expected) in moments.items():
        assert verdict(spec, state, now, tz).state == expected, name
    # Checked in Friday 02:35 IST: nothing is due over the weekend, Monday 03:30 IST is the deadline.
    friday = CheckinState(
        "job",
        first_seen=START - timedelta(days=7),
        last_ok_at=datetime(2026, 11, 26, 21, 5, tzinfo=UTC),
    )
    assert verdict(spec, friday, datetime(2026, 11, 29, 21, 59, tzinfo=UTC), tz).state == "grace"
    sunday = verdict(spec, friday, datetime(2026, 11, 29, 12, 0, tzinfo=UTC), tz)
    assert sunday.state == "up" and sunday.expected_at == datetime(2026, 11, 29, 21, 0, tzinfo=UTC)
    assert verdict(spec, friday, datetime(2026, 11, 29, 22, 1, tzinfo=UTC), tz).state == "late"


def test_the_rate_limiter_refills_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=3.0, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # per client
    now[0] += 1.0
    assert limiter.allow("a") and not limiter.allow("a")
    limiter.charge("b", 10)
    assert not limiter.allow("b") and limiter.retry_after("b") == pytest.approx(1.0)


# --------------------------------------------------------------------------- over HTTP


@dataclass
class Site:
    engine: Engine
    checkins: Checkins
    store: Store
    web: WebServer
    clock: Clock

    def post(
        self, path: str, token: str | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web.port}{path}", data=body, method="POST"
        )
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)

    def tick(self, **delta: float) -> None:
        self.clock.advance(**delta)
        self.engine.tick()

    def incidents(self, target: str) -> list[Any]:
        return sorted(
            (i for i in self.store.incidents(limit=100) if i.target == target), key=lambda i: i.id
        )

    def close(self) -> None:
        """The watcher stopped (or killed: the store's writes are each committed)."""
        self.web.stop()
        self.store.close()

    def row(self, name: str) -> dict[str, Any]:
        (row,) = self.store.query("SELECT * FROM checkins WHERE name=?", (name,))
        return dict(row)


def _site(tmp_path: Path, limiter: RateLimiter | None = None, start: datetime = START) -> Site:
    clock = Clock(start)
    config = config_from(tmp_path, _config_text())
    store = Store(config.state_path)
    engine = Engine(config, store, clock=clock)
    checkins = Checkins(config, store, clock=clock, on_results=engine.process, limiter=limiter)
    engine.add_ticker(checkins.due_results)
    web = WebServer("127.0.0.1:0", api_token=config.model.api_token)
    checkins.routes(web)
    web.start()
    return Site(engine, checkins, store, web, clock)


def test_check_ins_attach_through_plain_callables_without_a_daemon(tmp_path: Path) -> None:
    """What check-ins need of the watcher is a clock, a place for results and a tick."""
    clock = Clock(START)
    config = config_from(tmp_path, _config_text())
    store = Store(config.state_path)
    heard: list[Result] = []
    tickers: list[Ticker] = []
    checkins = attach(
        config, store, clock=clock, on_results=heard.extend, add_ticker=tickers.append
    )
    try:
        [tick] = tickers
        assert {r.target for r in tick(clock())} == {"nightly-backup", "report-mailer"}
        assert checkins.signal("nightly-backup", BACKUP_TOKEN, ok=True).status == 200
        assert [(r.target, r.status) for r in heard] == [("nightly-backup", "ok")]
    finally:
        store.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = _site(tmp_path, limiter=RateLimiter(rate=100, burst=1000))
    s.engine.tick()  # first sight of every check
    yield s
    s.close()


def test_on_time_is_ok_and_late_past_the_grace_is_one_incident(site: Site) -> None:
    status, body, _ = site.post("/checkin/nightly-backup", BACKUP_TOKEN)
    assert status == 200 and body["state"] == "up" and body["status"] == "ok"
    site.tick(hours=23)
    site.post("/checkin/nightly-backup", BACKUP_TOKEN)
    site.tick(hours=25)  # 1d + 1h: due, within the 2h grace
    assert site.incidents("nightly-backup") == []
    site.tick(hours=1, minutes=1)  # past due + grace
    (incident,) = site.incidents("nightly-backup")
    assert (incident.state, incident.priority, incident.rule, incident.target) == (
        "open",
        "P2",
        "heartbeat-late",
        "nightly-backup",
    )
    assert "did not check in on time" in incident.summary
    site.tick(minutes=30)
    assert len(site.incidents("nightly-backup")) == 1  # still late: the same incident
    site.post("/checkin/nightly-backup", BACKUP_TOKEN)
    site.tick(minutes=1)  # the next report is the second ok in a row
    assert [i.state for i in site.incidents("nightly-backup")] == ["resolved"]
    assert site.row("nightly-backup")["pings"] == 3


def test_an_explicit_failure_is_an_incident_with_the_exit_code_and_output(site: Site) -> None:
    site.post("/checkin/nightly-backup", BACKUP_TOKEN)
    output = b"pg_dump: error: connection to server failed\n"
    status, body, _ = site.post(
        "/checkin/nightly-backup/fail?exit_code=2", BACKUP_TOKEN, body=output
    )
    assert (status, body["state"], body["status"]) == (200, "failed", "fail")
    (incident,) = site.incidents("nightly-backup")
    assert (incident.state, incident.rule) == ("open", "heartbeat-failed")
    assert "exit code 2" in incident.message and "pg_dump: error" in incident.evidence
    assert incident.metrics["exit_code"] == 2
    site.post("/checkin/nightly-backup/0", BACKUP_TOKEN)  # the exit-code form: 0 is a success
    site.tick(minutes=2)
    assert [i.state for i in site.incidents("nightly-backup")] == ["resolved"]
    status, body, _ = site.post("/checkin/nightly-backup/137", BACKUP_TOKEN)
    assert body["state"] == "failed" and site.incidents("nightly-backup")[-1].state == "open"


def test_a_wrong_token_and_an_unknown_name_get_the_same_401_and_change_nothing(site: Site) -> None:
    site.post("/checkin/nightly-backup", BACKUP_TOKEN)
    before = site.row("nightly-backup")
    wrong = site.post("/checkin/nightly-backup/fail", "guess")
    unknown = site.post("/checkin/no-such-job/fail", BACKUP_TOKEN)
    missing = site.post("/checkin/nightly-backup/fail")
    api_for_own_token = site.post("/checkin/nightly-backup/fail", API_TOKEN)  # it has its own token
    for status, body, headers in (wrong, unknown, missing, api_for_own_token):
        assert (status, body) == (401, {"error": "unknown check or wrong token"})
        assert headers["WWW-Authenticate"] == "Bearer"
    assert site.row("nightly-backup") == before
    assert site.incidents("nightly-backup") == []
    bad_url = site.post("/checkin/nightly-backup/explode", "guess")
    assert bad_url[0] == 401  # the shape of the URL is looked at only after the token


def test_the_api_token_serves_checks_without_their_own(site: Site) -> None:
    assert site.post("/checkin/report-mailer", API_TOKEN)[0] == 200
    assert site.post("/checkin/report-mailer", BACKUP_TOKEN)[0] == 401
    status, body, _ = site.post("/checkin/report-mailer/fail?exit_code=abc", API_TOKEN)
    assert status == 400 and "exit_code" in body["error"]
    assert site.post("/checkin/report-mailer/later", API_TOKEN)[0] == 400


def test_a_cron_check_goes_late_only_after_its_scheduled_run_plus_grace(site: Site) -> None:
    # 09:30 IST Monday. The 02:30 IST run is due tomorrow at 02:30, late after 03:30.
    site.post("/checkin/report-mailer", API_TOKEN)
    site.tick(hours=16, minutes=59)  # 02:29 IST Tuesday
    site.tick(minutes=60)  # 03:29 IST: in its grace
    assert site.incidents("report-mailer") == []
    site.tick(minutes=2)  # 03:31 IST
    (incident,) = site.incidents("report-mailer")
    assert incident.rule == "heartbeat-late" and "02:30 IST" in incident.message
    site.post("/checkin/report-mailer", API_TOKEN)
    site.tick(minutes=1)
    assert [i.state for i in site.incidents("report-mailer")] == ["resolved"]
    site.tick(hours=23)  # 02:35 IST Wednesday: due, within grace
    assert site.incidents("report-mailer")[-1].state == "resolved"


def test_check_ins_are_rate_limited_per_client(tmp_path: Path) -> None:
    s = _site(tmp_path, limiter=RateLimiter(rate=0.01, burst=25))
    try:
        assert [s.post("/checkin/nightly-backup", "guess")[0] for _ in range(3)] == [401, 401, 401]
        status, body, headers = s.post(
            "/checkin/nightly-backup", BACKUP_TOKEN
        )  # three misses used the bucket up
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert s.store.query("SELECT pings FROM checkins WHERE pings > 0") == []
    finally:
        s.close()


def test_what_jobs_said_survives_a_restart(tmp_path: Path) -> None:
    s = _site(tmp_path)
    s.post("/checkin/nightly-backup", BACKUP_TOKEN)
    s.post("/checkin/nightly-backup/fail?exit_code=4", BACKUP_TOKEN)
    s.close()
    again = _site(tmp_path)
    try:
        state = again.checkins.state("nightly-backup")
        assert (state.pings, state.failures, state.exit_code, state.failed) == (2, 1, 4, True)
        assert state.last_ok_at == START
        (result,) = [r for r in again.checkins.due_results(START) if r.probe == "nightly-backup"]
        assert (result.status, result.reason) == ("fail", "failed")
    finally:
        again.close()


def _down_and_back(s: Site, tmp_path: Path, *, down: timedelta) -> Site:
    """The watcher killed at ``s``'s clock and started again ``down`` later."""
    s.close()
    return _site(tmp_path, start=s.clock() + down)


def test_a_check_in_due_while_the_watcher_was_down_is_waited_for_anew_not_called_late(
    tmp_path: Path,
) -> None:
    s = _site(tmp_path)
    s.post("/checkin/nightly-backup", BACKUP_TOKEN)  # period 1d, grace 2h
    s.tick(hours=23, minutes=30)
    # down from 03:30 to 05:00 on the next day: the run due at 04:00 may have checked in then
    again = _down_and_back(s, tmp_path, down=timedelta(hours=3))
    try:
        again.engine.tick()
        state = again.checkins.state("nightly-backup")
        assert state.resumed_at == again.clock() and state.pings == 1
        result = again.checkins.result(again.checkins.specs["nightly-backup"], again.clock())
        assert result.status == "ok" and "watcher was down" in result.message, result.message
        again.tick(hours=25)  # one period + 1h since it came back: within grace
        assert again.incidents("nightly-backup") == []
        again.tick(hours=1, minutes=1)
        again.tick(minutes=1)
        [late] = again.incidents("nightly-backup")
        assert late.state == "open"
        last = again.store.latest("nightly-backup")[0]
        assert "none since the watcher came back" in last.message, last.message
    finally:
        again.close()


def test_a_check_already_late_before_the_watcher_went_down_stays_late(tmp_path: Path) -> None:
    s = _site(tmp_path)
    s.post("/checkin/nightly-backup", BACKUP_TOKEN)
    s.tick(days=1, hours=2, minutes=1)
    s.tick(minutes=1)
    assert len(s.incidents("nightly-backup")) == 1
    again = _down_and_back(s, tmp_path, down=timedelta(minutes=30))
    try:
        again.engine.tick()
        assert again.checkins.state("nightly-backup").resumed_at is None
        (result,) = [r for r in again.store.latest("nightly-backup")]
        assert (result.status, result.reason) == ("fail", "late")
        [incident] = again.incidents("nightly-backup")
        assert incident.state == "open"
    finally:
        again.close()


def test_a_restart_between_runs_changes_no_deadline(tmp_path: Path) -> None:
    s = _site(tmp_path)
    s.post("/checkin/nightly-backup", BACKUP_TOKEN)
    s.tick(hours=3)
    again = _down_and_back(s, tmp_path, down=timedelta(minutes=10))
    try:
        again.engine.tick()
        assert again.checkins.state("nightly-backup").resumed_at is None
        again.tick(hours=23, minutes=1)  # 1d + 2h grace after the check-in, and a minute
        again.tick(minutes=1)
        assert len(again.incidents("nightly-backup")) == 1
    finally:
        again.close()


def test_results_are_reported_each_interval_and_at_once_on_a_change(site: Site) -> None:
    site.post("/checkin/nightly-backup", BACKUP_TOKEN)
    assert site.checkins.due_results(site.clock()) == []  # just reported by the check-in itself
    site.clock.advance(seconds=61)
    assert {r.probe for r in site.checkins.due_results(site.clock())} == {
        "nightly-backup",
        "report-mailer",
    }
    site.clock.advance(days=1, hours=2, seconds=1)
    (late,) = [r for r in site.checkins.due_results(site.clock()) if r.probe == "nightly-backup"]
    assert (late.kind, late.status, late.reason, late.target) == (
        "heartbeat",
        "fail",
        "late",
        "nightly-backup",
    )
    assert BACKUP_TOKEN not in late.evidence + late.message


# --------------------------------------------------------------------------- a running watcher


@pytest.mark.slow
def test_a_running_watcher_takes_check_ins_over_http(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, _config_text(listen=f"127.0.0.1:{port}", extra="targets: []"))
    app = App(path)
    clock = Clock(datetime.now(UTC))
    app.engine.clock = clock  # the engine's clock is the check-ins' clock too
    app.start()
    try:
        base = f"http://127.0.0.1:{port}"

        def post(p: str, token: str) -> int:
            request = urllib.request.Request(
                base + p, data=b"", method="POST", headers={"Authorization": f"Bearer {token}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        def results() -> dict[str, dict[str, Any]]:
            with urllib.request.urlopen(base + "/api/results", timeout=5) as response:
                return {
                    r["probe"]: r for r in json.loads(response.read()) if r["kind"] == "heartbeat"
                }

        assert post("/checkin/nightly-backup", BACKUP_TOKEN) == 200
        wait_until(
            lambda: results().get("nightly-backup", {}).get("status") == "ok",
            10,
            "the check-in on /api/results",
        )
        assert post("/checkin/nightly-backup", "guess") == 401
        assert post("/checkin/unknown", BACKUP_TOKEN) == 401

        assert post("/checkin/report-mailer/fail?exit_code=1", API_TOKEN) == 200
        wait_until(
            lambda: any(i.rule == "heartbeat-failed" for i in app.engine.incidents()),
            10,
            "an incident for /fail",
        )

        clock.advance(days=1, hours=3)  # nightly-backup is now late: the engine's tick finds it
        wait_until(
            lambda: any(i.rule == "heartbeat-late" for i in app.engine.incidents()),
            15,
            "a late incident",
        )
        late = next(i for i in app.engine.incidents() if i.rule == "heartbeat-late")
        assert (late.target, late.state, late.priority) == ("nightly-backup", "open", "P2")
        with urllib.request.urlopen(base + "/", timeout=5) as response:
            page = response.read().decode()
        assert "nightly-backup" in page and "did not check in on time" in page
    finally:
        app.shutdown()


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("checkins", "words"),
    [
        ("[{name: a}]", "needs period: or schedule:"),
        ('[{name: a, period: 1h, schedule: "@daily"}]', "not both"),
        ('[{name: a, schedule: "61 * * * *"}]', "outside the minute field"),
        ('[{name: a, schedule: "0 0 30 feb *"}]', "never runs"),
        ("[{name: a, period: 1h, timezone: Mars/Olympus}]", "unknown timezone"),
        ("[{name: a, period: 1h}, {name: a, period: 2h}]", "two check-ins are named 'a'"),
        ("[{name: a, period: 1h, target: nowhere}]", "names no configured target"),
        ("[{name: web, period: 1h}]", "a target is also named 'web'"),
        ('[{name: "a b", period: 1h}]', "check-in name"),
    ],
)
def test_bad_check_ins_are_refused_with_their_line(
    tmp_path: Path, checkins: str, words: str
) -> None:
    text = f"""
    site: acme
    api_token: "{API_TOKEN}"
    targets: [{{name: web, probes: [{{tcp: {{port: 80}}}}]}}]
    checkins: {checkins}
    """
    with pytest.raises(ConfigError) as caught:
        config_from(tmp_path, text)
    assert words in str(caught.value) and "watcher.yml:" in str(caught.value)


def test_a_check_in_nobody_can_reach_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no token and there is no api_token"):
        config_from(tmp_path, "site: acme\ncheckins: [{name: a, period: 1h}]\n")
    with pytest.raises(ConfigError, match="listen: is off"):
        config_from(
            tmp_path,
            'site: acme\nlisten: null\ncheckins: [{name: a, period: 1h, token: "t-123456"}]\n',
        )


def test_heartbeat_under_a_target_points_to_checkins(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="list them under the top-level checkins:"):
        config_from(tmp_path, "site: acme\ntargets: [{name: x, probes: [{heartbeat: {}}]}]\n")


def test_rules_can_name_a_check_in_by_target_and_probe(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
        priorities: {}
        rules:
          - {name: backup-late-p1, target: nightly-backup, probe: nightly-backup, when: "late_s > 6h", priority: P1}
        """,
        name="site.yml",
    )
    config = config_from(
        tmp_path,
        f"""
        site: acme
        api_token: "{API_TOKEN}"
        rules: [default, site.yml]
        targets: [{{name: db1, probes: [{{tcp: {{port: 5432}}}}]}}]
        checkins:
          - {{name: nightly-backup, period: 1d}}
          - {{name: vacuum, period: 1d, target: db1}}
        """,
    )
    assert sorted(config.targets) == ["db1", "nightly-backup"]
    assert [c.result_target for c in config.model.checkins] == ["nightly-backup", "db1"]
    with pytest.raises(ConfigError, match="already has a probe named 'tcp'"):
        config_from(
            tmp_path,
            f'site: acme\napi_token: "{API_TOKEN}"\ntargets: [{{name: db1, probes: [{{tcp: {{port: 1}}}}]}}]\ncheckins: [{{name: tcp, period: 1d, target: db1}}]\n',
        )
