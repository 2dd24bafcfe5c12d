"""Pushed heartbeats: jobs that report in by themselves, and are late when they do not.

    checkins:
      - {name: nightly-backup, schedule: "30 2 * * *", grace: 2h, token: "${BACKUP_TOKEN}"}
      - {name: hourly-sync, period: 1h, grace: 10m}      # checks in with the api_token

A job calls ``POST /checkin/<name>`` when its work is done, ``POST /checkin/<name>/fail``
(``?exit_code=3``) when it failed, or ``POST /checkin/<name>/<exit code>`` (0 is
success), with ``Authorization: Bearer <token>``; the request body, if any, is kept as
the run's output (the last 4 KiB). An unknown name and a wrong token get the same 401.

A check's state is a pure function of its settings, what the job last said and ``now``
(:func:`verdict`), in the manner of healthchecks.io: ``new`` until the first check-in,
``up``, ``grace`` once the run is due, ``late`` past due plus grace, ``failed`` after a
``/fail`` until the next success. :class:`Checkins` keeps what jobs said in the state
file and turns verdicts into ``heartbeat`` results: at once when a job checks in, and
from the engine's clock-driven tick (a late job cannot announce itself).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from probes.base import Result, cap_text, one_line
from watcher.config.models import Checkin, Config
from watcher.core.durations import format_duration
from watcher.core.secret import Secret, redact
from watcher.schedule.cron import CronSchedule, parse_cron
from watcher.store import Store
from watcher.web.server import Request, Response, WebServer, json_response

__all__ = ["CheckinState", "Checkins", "RateLimiter", "Ticker", "Verdict", "attach", "verdict"]

log = logging.getLogger("watcher.checkins")

KIND = "heartbeat"
NOTE_CAP = 4096
# A job host may finish many jobs at once; a token guesser pays more per miss.
RATE_PER_SECOND = 2.0
RATE_BURST = 30.0
MISS_COST = 10.0
# How often the store learns that check-ins are being heard: after a crash, the time since
# is when the watcher was deaf to them.
HEARD_EVERY = timedelta(seconds=15)
HEARD_KEY = "checkins_heard_until"


@dataclass(frozen=True)
class CheckinState:
    """What is known of one check: when it was first watched and what its job last said."""

    name: str
    first_seen: datetime
    last_ok_at: datetime | None = None
    last_fail_at: datetime | None = None
    exit_code: int | None = None
    note: str = ""
    pings: int = 0
    failures: int = 0
    # Set when the watcher came back from being down while this check's job was due:
    # a check-in sent then was lost, so the check waits anew from here.
    resumed_at: datetime | None = None

    @property
    def anchor(self) -> datetime:
        """What the next check-in is expected after."""
        times = [t for t in (self.last_signal_at, self.resumed_at) if t is not None]
        return max(times) if times else self.first_seen

    @property
    def last_signal_at(self) -> datetime | None:
        times = [t for t in (self.last_ok_at, self.last_fail_at) if t is not None]
        return max(times) if times else None

    @property
    def failed(self) -> bool:
        """The last word from the job was a failure."""
        return self.last_fail_at is not None and (
            self.last_ok_at is None or self.last_fail_at > self.last_ok_at
        )


@dataclass(frozen=True)
class Verdict:
    state: str  # new, resumed, up, grace, late, failed
    status: str  # ok or fail
    reason: str
    message: str
    metrics: dict[str, float]
    expected_at: datetime
    deadline: datetime


@lru_cache(maxsize=256)
def _cron(schedule: str, timezone: str) -> CronSchedule:
    return parse_cron(schedule, timezone)


def expected_after(spec: Checkin, anchor: datetime, timezone: str) -> datetime:
    """When the job should next report, given that it last did (or was first watched) at ``anchor``."""
    if spec.period is not None:
        return anchor + spec.period
    assert spec.schedule is not None
    return _cron(spec.schedule, timezone).next_after(anchor)


def verdict(spec: Checkin, state: CheckinState, now: datetime, timezone: str = "UTC") -> Verdict:
    """The check's state now: a pure function of its settings, its history and ``now``."""
    last = state.last_signal_at
    expected = expected_after(spec, state.anchor, timezone)
    resumed = (
        state.resumed_at if state.resumed_at and (last is None or state.resumed_at > last) else None
    )
    deadline = expected + spec.grace
    zone = ZoneInfo(timezone)

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    metrics: dict[str, float] = {
        "late_s": max(0.0, (now - deadline).total_seconds()),
        "checkins_total": state.pings,
        "failures_total": state.failures,
    }
    if last is not None:
        metrics["age_s"] = max(0.0, (now - last).total_seconds())
    if state.failed and state.exit_code is not None:
        metrics["exit_code"] = state.exit_code
    failure = ""
    if state.failed and state.last_fail_at is not None:
        code = f" with exit code {state.exit_code}" if state.exit_code is not None else ""
        failure = f"last run failed{code} at {local(state.last_fail_at)}"
    if now > deadline:
        since = (
            f"last check-in {local(last)}"
            if last
            else f"no check-in since watching began {local(state.first_seen)}"
        )
        if resumed:
            since += f", none since the watcher came back {local(resumed)}"
        message = f"{since}; expected by {local(expected)} + {format_duration(spec.grace)} grace"
        if failure:
            message += f"; {failure}"
        return Verdict("late", "fail", "late", message, metrics, expected, deadline)
    if failure:
        return Verdict("failed", "fail", "failed", failure, metrics, expected, deadline)
    if resumed and now <= expected:
        return Verdict(
            "resumed",
            "ok",
            "",
            f"the watcher was down while a check-in was due (back {local(resumed)}); "
            f"waiting for the next, due by {local(deadline)}",
            metrics,
            expected,
            deadline,
        )
    if last is None:
        return Verdict(
            "new",
            "ok",
            "",
            f"waiting for the first check-in, due by {local(deadline)}",
            metrics,
            expected,
            deadline,
        )
    if now > expected:
        message = f"due at {local(expected)}, within grace until {local(deadline)}"
        return Verdict("grace", "ok", "", message, metrics, expected, deadline)
    ago = format_duration(max(0.0, (now - last).total_seconds()))
    return Verdict(
        "up",
        "ok",
        "",
        f"checked in {ago} ago; next by {local(expected)}",
        metrics,
        expected,
        deadline,
    )


class RateLimiter:
    """A token bucket per client address: ``rate`` a second, up to ``burst`` at once."""

    def __init__(
        self,
        rate: float = RATE_PER_SECOND,
        burst: float = RATE_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        level, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, level + (now - at) * self.rate)

    def allow(self, key: str, cost: float = 1.0) -> bool:
        now = self.clock()
        with self._lock:
            level = self._level(key, now)
            if level < cost:
                self._buckets[key] = (level, now)
                return False
            if len(self._buckets) >= self.max_clients and key not in self._buckets:
                self._forget_full(now)
            self._buckets[key] = (level - cost, now)
            return True

    def charge(self, key: str, cost: float) -> None:
        """Takes more from a client (a wrong token), down to empty at most."""
        now = self.clock()
        with self._lock:
            self._buckets[key] = (max(0.0, self._level(key, now) - cost), now)

    def retry_after(self, key: str, cost: float = 1.0) -> float:
        with self._lock:
            level = self._level(key, self.clock())
        return max(0.0, (cost - level) / self.rate)

    def _forget_full(self, now: float) -> None:
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]


@dataclass
class _Emitted:
    at: datetime
    state: str


@dataclass
class SignalOutcome:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    result: Result | None = None


class Checkins:
    """The configured check-ins: their state in the store, their endpoint, their results."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], datetime],
        on_results: Callable[[list[Result]], None] | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_results = on_results or (lambda _results: None)
        self.limiter = limiter or RateLimiter()
        self._lock = threading.RLock()
        self._states: dict[str, CheckinState] = {}
        self._emitted: dict[str, _Emitted] = {}
        # Unknown names are compared against this, so they take as long as wrong tokens.
        self._decoy = secrets.token_urlsafe(32).encode()
        self._heard_saved: datetime | None = None
        self.configure(config)
        self._resume(self.clock())

    def configure(self, config: Config) -> None:
        with self._lock:
            m = config.model
            self.specs: dict[str, Checkin] = {c.name: c for c in m.checkins}
            self.api_token: Secret | None = m.api_token
            self.default_timezone = m.business_hours.timezone
            self.emit_every = m.defaults.interval
            self.site = m.site
            self._emitted.clear()  # report every check afresh after a reload

    def timezone(self, spec: Checkin) -> str:
        return spec.timezone or self.default_timezone

    # ------------------------------------------------------------------ state

    def state(self, name: str, now: datetime | None = None) -> CheckinState:
        """The check's state, read from the store (created, first seen ``now``, if new)."""
        with self._lock:
            cached = self._states.get(name)
            if cached is not None:
                return cached
            row = self.store.checkin(name)
            if row is not None:
                state = _state_from_row(row)
            else:
                state = CheckinState(name=name, first_seen=now or self.clock())
                self.store.add_checkin(name, state.first_seen)
            self._states[name] = state
            return state

    def forget_cached(self) -> None:
        """Drops the states read from the store: in a cluster any member takes a
        check-in, and the member that judges it reads what the others recorded."""
        with self._lock:
            self._states.clear()

    def _record(self, state: CheckinState) -> None:
        self.store.save_checkin(
            state.name,
            {
                "last_ok_at": _iso(state.last_ok_at),
                "last_fail_at": _iso(state.last_fail_at),
                "exit_code": state.exit_code,
                "note": state.note,
                "pings": state.pings,
                "failures": state.failures,
                "resumed_at": _iso(state.resumed_at),
            },
        )
        self._states[state.name] = state

    def _resume(self, now: datetime) -> None:
        """After the watcher was down, checks whose job was due meanwhile wait anew.

        A check-in sent while nothing listened is lost; judging the check by its old
        deadline would raise a false late incident after every outage of the watcher. A
        check that was already late before the outage stays late, and the next missed
        run after it is caught as usual.
        """
        heard = self.store.get_meta(HEARD_KEY)
        deaf_from = datetime.fromisoformat(heard) if heard else None
        with self._lock:
            if deaf_from is not None and deaf_from < now:
                for spec in self.specs.values():
                    state = self.state(spec.name, now)
                    due = verdict(spec, state, deaf_from, self.timezone(spec))
                    if due.deadline > deaf_from and due.expected_at <= now and not state.failed:
                        self._record(replace(state, resumed_at=now))
                        log.warning(
                            "check-in %s was due while the watcher was down (%s to %s); "
                            "waiting for its next check-in",
                            spec.name,
                            deaf_from.isoformat(timespec="seconds"),
                            now.isoformat(timespec="seconds"),
                        )
            self._heard(now, force=True)

    def _heard(self, now: datetime, *, force: bool = False) -> None:
        last = self._heard_saved
        if force or last is None or now - last >= HEARD_EVERY or now < last:
            self.store.set_meta(HEARD_KEY, now.isoformat())
            self._heard_saved = now

    # ------------------------------------------------------------------ results

    def result(self, spec: Checkin, now: datetime) -> Result:
        return self._judge(spec, now)[0]

    def _judge(self, spec: Checkin, now: datetime) -> tuple[Result, Verdict]:
        state = self.state(spec.name, now)
        found = verdict(spec, state, now, self.timezone(spec))
        result = Result(
            target=spec.result_target,
            probe=spec.name,
            kind=KIND,
            status=found.status,  # type: ignore[arg-type]
            message=one_line(redact(found.message)),
            metrics=found.metrics,
            labels={},
            evidence=cap_text(redact(self._evidence(spec, state))),
            duration_s=0.0,
            at=now,
            reason=found.reason,
        )
        return result, found

    def due_results(self, now: datetime) -> list[Result]:
        """Results for the checks whose state changed, or that were last reported an
        interval ago: what the engine's tick feeds in."""
        out = []
        with self._lock:
            self._heard(now)
            for spec in self.specs.values():
                result, found = self._judge(spec, now)
                last = self._emitted.get(spec.name)
                if (
                    last is None
                    or last.state != found.state
                    or now - last.at >= self.emit_every
                    or now < last.at
                ):
                    self._emitted[spec.name] = _Emitted(now, found.state)
                    out.append(result)
        return out

    def _evidence(self, spec: Checkin, state: CheckinState) -> str:
        tz = self.timezone(spec)
        when = (
            f"every {format_duration(spec.period)}"
            if spec.period
            else f"cron {spec.schedule!r} ({tz})"
        )
        lines = [
            f"check-in {spec.name}: {when}, grace {format_duration(spec.grace)}",
            f"watched since {state.first_seen.isoformat(timespec='seconds')}; "
            f"{state.pings} check-ins, {state.failures} failures",
            f"last success: {_iso(state.last_ok_at) or 'never'}",
            f"last failure: {_iso(state.last_fail_at) or 'never'}"
            + (
                f" (exit code {state.exit_code})"
                if state.failed and state.exit_code is not None
                else ""
            ),
        ]
        if spec.description:
            lines.insert(1, spec.description)
        if state.note:
            lines.append(
                f"output sent with the last {'failure' if state.failed else 'check-in'}:\n{state.note}"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------ signals

    def _expected_token(self, spec: Checkin | None) -> bytes | None:
        if spec is None:
            return None
        token = spec.token or self.api_token
        return token.reveal().encode() if token else None

    def signal(
        self,
        name: str,
        token: str,
        *,
        ok: bool,
        exit_code: int | None = None,
        note: str = "",
        client: str = "",
    ) -> SignalOutcome:
        """A job checking in. Unknown names and wrong tokens get the same answer."""
        return self._gate(name, token, client) or self._record_signal(
            name, ok=ok, exit_code=exit_code, note=note
        )

    def _gate(self, name: str, token: str, client: str) -> SignalOutcome | None:
        """None if the client may check in to ``name``; else the 429 or the one 401."""
        if not self.limiter.allow(client):
            wait = max(1, round(self.limiter.retry_after(client)))
            return SignalOutcome(
                429, {"error": "too many check-ins; slow down"}, {"Retry-After": str(wait)}
            )
        with self._lock:
            expected = self._expected_token(self.specs.get(name))
        matches = hmac.compare_digest(
            token.encode(), expected if expected is not None else self._decoy
        )
        if expected is not None and matches:
            return None
        self.limiter.charge(client, MISS_COST)
        log.warning(
            "check-in refused from %s: unknown check or wrong token (%r)", client or "?", name[:64]
        )
        return SignalOutcome(
            401, {"error": "unknown check or wrong token"}, {"WWW-Authenticate": "Bearer"}
        )

    def _record_signal(
        self, name: str, *, ok: bool, exit_code: int | None, note: str
    ) -> SignalOutcome:
        now = self.clock()
        with self._lock:
            spec = self.specs[name]
            state = self.state(name, now)
            last = state.last_signal_at
            if last is not None and now <= last:
                now = last + timedelta(
                    microseconds=1
                )  # same instant (a coarse clock): keep the order
            note = note[-NOTE_CAP:] if note else ""
            if ok:
                state = replace(
                    state, last_ok_at=now, exit_code=exit_code, note=note, pings=state.pings + 1
                )
            else:
                state = replace(
                    state,
                    last_fail_at=now,
                    exit_code=exit_code,
                    note=note,
                    pings=state.pings + 1,
                    failures=state.failures + 1,
                )
            self._record(state)
            result, found = self._judge(spec, now)
            self._emitted[name] = _Emitted(now, found.state)
        self.on_results([result])
        log.info("check-in %s: %s", name, "ok" if ok else f"failed (exit code {exit_code})")
        body = {
            "name": name,
            "state": found.state,
            "status": result.status,
            "next_due": found.expected_at.isoformat(),
        }
        return SignalOutcome(200, body, result=result)

    # ------------------------------------------------------------------ HTTP

    def routes(self, web: WebServer) -> None:
        """``POST /checkin/<name>``, ``/checkin/<name>/fail``, ``/checkin/<name>/<exit code>``."""
        web.route("POST", r"/checkin/(?P<name>[^/]+)(?:/(?P<what>[^/]*))?", self.handle)

    def handle(self, request: Request) -> Response:
        name = request.params.get("name") or ""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        # The token is checked before the URL's shape, so a bad URL tells nothing about the name.
        outcome = self._gate(name, token, request.client)
        if outcome is None:
            ok, exit_code, problem = _signal_of(request.params.get("what"), request.query)
            if problem:
                return json_response({"error": problem}, 400)
            note = request.body.decode("utf-8", "replace") if request.body else ""
            outcome = self._record_signal(name, ok=ok, exit_code=exit_code, note=note)
        response = json_response(outcome.body, outcome.status)
        response.headers.update(outcome.headers)
        return response


_EXIT_CODE = re.compile(r"-?[0-9]{1,9}")


def _signal_of(what: str | None, query: dict[str, list[str]]) -> tuple[bool, int | None, str]:
    """(ok, exit code, problem) from the URL's last part and ``?exit_code=``."""
    values = query.get("exit_code")
    raw = values[0] if values else None
    exit_code = None
    if raw is not None:
        # ASCII digits only ("²" passes isdigit, not int), and few enough of them for
        # the state file's integer column.
        if not _EXIT_CODE.fullmatch(raw.strip()):
            return False, None, f"exit_code must be a whole number, got {raw[:20]!r}"
        exit_code = int(raw)
    if what is None or what == "":
        return (exit_code in (None, 0)), exit_code, ""
    if what == "fail":
        return False, exit_code, ""
    if what.isascii() and what.isdigit() and len(what) <= 3:
        code = int(what)
        return code == 0, code, ""
    return (
        False,
        None,
        f"unknown signal {what[:20]!r}; use /checkin/<name>, /checkin/<name>/fail or /checkin/<name>/<exit code>",
    )


def _state_from_row(row: Any) -> CheckinState:
    return CheckinState(
        name=row["name"],
        first_seen=datetime.fromisoformat(row["first_seen"]),
        last_ok_at=_from_iso(row["last_ok_at"]),
        last_fail_at=_from_iso(row["last_fail_at"]),
        exit_code=row["exit_code"],
        note=row["note"] or "",
        pings=row["pings"],
        failures=row["failures"],
        resumed_at=_from_iso(row["resumed_at"]),
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


Ticker = Callable[[datetime], Sequence[Result]]


def attach(
    config: Config,
    store: Store,
    *,
    clock: Callable[[], datetime],
    on_results: Callable[[list[Result]], None],
    add_ticker: Callable[[Ticker], None],
) -> Checkins:
    """Wires check-ins into a running watcher through what they need of it and nothing
    more: ``on_results`` takes the results a job's check-in gives, ``add_ticker`` has a
    clock-driven tick ask for the late ones, and ``clock`` is that tick's clock."""
    checkins = Checkins(config, store, clock=clock, on_results=on_results)
    add_ticker(checkins.due_results)
    return checkins
