"""``POST /api/alertmanager``: alerts from Prometheus Alertmanager and Grafana become results.

    alertmanager:
      token: "${ALERTMANAGER_TOKEN}"   # Alertmanager's http_config.authorization.credentials
      target_label: instance           # then fallback_labels: [job], then default_target
      resolve_silent_after: 12h        # a firing alert not re-sent for this long is lost

A post is checked whole (``probes.alertmanager.parse_post``) before any alert of it is
applied, so a bad one changes nothing and gets a 4xx that says why. Each alert's last
known state (status, ``startsAt``, when it was last heard) is kept in the state file:

- a firing alert is a failing ``alertmanager`` result; Alertmanager's repeats of it
  (``repeat_interval``, or the same alert in two groups) are counted as duplicates and
  only refresh it, so they never open a second incident or ticket;
- ``startsAt`` orders what arrives out of order: a ``firing`` post of an episode already
  resolved (within ``STALE_WINDOW``), or a ``resolved`` post of an older episode than
  the one firing, is stale and ignored;
- ``resolved`` is final: it counts as the whole ``resolve_after`` streak at once, since
  Alertmanager has already waited for the alert to clear;
- a firing alert that Alertmanager stops sending without resolving it is resolved after
  ``resolve_silent_after`` with a message saying so (the engine's tick asks);
- after a restart the kept states are fed to the engine again, so a resolve that was
  accepted but not yet applied before a crash is still applied.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

from probes.alertmanager import (
    KIND,
    Alert,
    AlertmanagerSettings,
    PayloadError,
    Post,
    alert_result,
    parse_post,
    result_labels,
    target_index,
    target_of,
)
from probes.base import Result
from watcher.config.models import Config, Target
from watcher.core.durations import format_duration
from watcher.store import Store
from watcher.web.checkins import RateLimiter
from watcher.web.server import Request, Response, WebServer, json_response

if TYPE_CHECKING:
    from watcher.app.daemon import App

__all__ = ["AlertReceiver", "AlertState", "attach", "ROUTE"]

log = logging.getLogger("watcher.alertmanager")

ROUTE = "/api/alertmanager"
# Wrong tokens from one address: a burst of four, then one every 2.5 s (the rest get 429).
RATE_PER_SECOND = 20.0
RATE_BURST = 200.0
MISS_COST = 50.0
# How long after a resolve a firing post of the same episode (same startsAt) is taken
# for a late delivery rather than the alert firing again.
STALE_WINDOW = timedelta(minutes=10)
# How long an ended alert is remembered.
FORGET_AFTER = timedelta(days=1)
# The label the alertmanager integration puts on watcher's own incidents.
ECHO_LABEL = "watcher_fingerprint"


@dataclass(frozen=True)
class AlertState:
    """What is known of one alert: its latest word, and when it was last heard.

    ``status`` is firing, resolved, or lost (firing, then silent past
    ``resolve_silent_after``)."""

    key: str
    target: str
    target_label: str
    status: str
    starts_at: datetime
    heard_at: datetime
    alert: Alert
    source: str


def _item(labels: dict[str, str]) -> str:
    return " ".join(str(v) for _, v in sorted(labels.items()))


def _alert_to_json(alert: Alert) -> str:
    return json.dumps(
        {
            "status": alert.status,
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "startsAt": alert.starts_at.isoformat(),
            "endsAt": alert.ends_at.isoformat() if alert.ends_at else None,
            "fingerprint": alert.fingerprint,
            "generatorURL": alert.generator_url,
            "extra": dict(alert.extra),
        }
    )


def _alert_from_json(text: str) -> Alert:
    data = json.loads(text)
    return Alert(
        status=data["status"],
        labels=data["labels"],
        annotations=data["annotations"],
        starts_at=datetime.fromisoformat(data["startsAt"]),
        ends_at=datetime.fromisoformat(data["endsAt"]) if data.get("endsAt") else None,
        fingerprint=data["fingerprint"],
        generator_url=data.get("generatorURL", ""),
        extra=data.get("extra") or {},
    )


class _Counters:
    """Posts received, deduplicated and rejected; alerts by what became of them."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry or CollectorRegistry()
        self.received = Counter(
            "watcher_alertmanager_posts_received",
            "Webhook posts accepted at /api/alertmanager",
            ["source"],
            registry=r,
        )
        self.deduplicated = Counter(
            "watcher_alertmanager_posts_deduplicated",
            "Accepted posts that changed nothing (every alert a repeat or stale)",
            ["source"],
            registry=r,
        )
        self.rejected = Counter(
            "watcher_alertmanager_posts_rejected",
            "Posts refused, by reason",
            ["reason"],
            registry=r,
        )
        self.alerts = Counter(
            "watcher_alertmanager_alerts",
            "Alerts received, by status and by what became of them",
            ["status", "outcome"],
            registry=r,
        )
        for source in ("alertmanager", "grafana"):
            self.received.labels(source)
            self.deduplicated.labels(source)
        for reason in ("auth", "json", "version", "schema", "labels", "too_many", "off"):
            self.rejected.labels(reason)


@dataclass
class PostOutcome:
    applied: int = 0
    duplicates: int = 0
    stale: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"applied": self.applied, "duplicates": self.duplicates, "stale": self.stale}


class AlertReceiver:
    """The endpoint, the kept alert states, and the results they stand for."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: Store,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_results: Callable[[list[Result]], None] | None = None,
        admit: Callable[[Target, str], None] | None = None,
        registry: CollectorRegistry | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.on_results = on_results or (lambda _results: None)
        self.admit = admit or (lambda _target, _probe: None)
        self.counters = _Counters(registry)
        self.limiter = limiter or RateLimiter(RATE_PER_SECOND, RATE_BURST)
        self._lock = threading.RLock()
        self._emitted: dict[str, datetime] = {}
        self._states: dict[str, AlertState] = {}
        for row in store.kept_alerts():
            try:
                state = AlertState(
                    key=row["key"],
                    target=row["target"],
                    target_label=row["target_label"],
                    status=row["status"],
                    starts_at=datetime.fromisoformat(row["starts_at"]),
                    heard_at=datetime.fromisoformat(row["heard_at"]),
                    alert=_alert_from_json(row["alert"]),
                    source=row["source"],
                )
            except (KeyError, ValueError, TypeError):
                log.warning("forgetting an unreadable kept alert %r", row["key"][:80])
                continue
            self._states[state.key] = state

    @property
    def settings(self) -> AlertmanagerSettings | None:
        return self.config().model.alertmanager

    def states(self) -> list[AlertState]:
        with self._lock:
            return list(self._states.values())

    # ------------------------------------------------------------------ results

    def _targets(self, names: set[str]) -> list[Target]:
        """The targets of these names: the configured ones, else one the alert names."""
        configured = self.config().targets
        return [
            configured.get(name)
            # A target only Alertmanager knows: named by the alert, with nothing of its own.
            or Target.model_construct(name=name, labels={}, depends_on=[], probes=[])
            for name in sorted(names)
        ]

    def _emit(self, results: list[Result]) -> None:
        if not results:
            return
        for target in self._targets({r.target for r in results}):
            self.admit(target, KIND)
        self.on_results(results)

    def _results(
        self, state: AlertState, now: datetime, *, message: str | None = None
    ) -> list[Result]:
        """The results a state stands for: one failing, or a resolve_after streak of ok."""
        if state.status == "firing":
            return [alert_result(state.alert, state.target, state.target_label, now)]
        streak = self.config().model.defaults.resolve_after
        status_alert = (
            state.alert
            if state.alert.status == "resolved"
            else replace(state.alert, status="resolved")
        )
        result = alert_result(
            status_alert,
            state.target,
            state.target_label,
            now,
            message=message,
            reason="lost" if state.status == "lost" else "resolved",
        )
        return [result] * streak

    def resume(self) -> list[Result]:
        """After a start: every kept alert's result again, so the engine agrees with them.

        A firing alert's silence is counted anew from here: while the watcher was down,
        Alertmanager's posts had nowhere to go, which says nothing of the alert.
        """
        now = self.clock()
        with self._lock:
            results = []
            deaf = [replace(s, heard_at=now) for s in self._states.values() if s.status == "firing"]
            if deaf:
                self._save(deaf)
            for state in self._states.values():
                results.extend(self._results(state, now, message=self._lost_message(state)))
                self._emitted[state.key] = now
        self._emit(results)
        return results

    def _forget_old(self, now: datetime) -> None:
        """Ended alerts are kept a day (their ordering and duplicates need them a few
        minutes), so the table holds the alerts of about a day, not of all time."""
        old = [
            key
            for key, state in self._states.items()
            if state.status != "firing" and now - state.heard_at > FORGET_AFTER
        ]
        if not old:
            return
        self.store.forget_alerts(old)
        for key in old:
            self._states.pop(key, None)
            self._emitted.pop(key, None)

    def _lost_message(self, state: AlertState) -> str | None:
        if state.status != "lost":
            return None
        settings = self.settings
        silence = settings.resolve_silent_after if settings else timedelta(hours=12)
        return (
            f"{state.alert.name}: Alertmanager stopped sending this firing alert without "
            f"resolving it (last heard {state.heard_at.isoformat(timespec='seconds')}); "
            f"taken as lost and resolved after {format_duration(silence)} of silence "
            "(alertmanager.resolve_silent_after)"
        )

    def due_results(self, now: datetime) -> list[Result]:
        """For the engine's tick: firing alerts again every interval (so ``for:`` holds
        are met), and those silent past ``resolve_silent_after`` resolved as lost."""
        settings = self.settings
        if settings is None:
            return []
        every = self.config().model.defaults.interval
        out: list[Result] = []
        lost: list[AlertState] = []
        with self._lock:
            self._forget_old(now)
            for state in list(self._states.values()):
                if state.status != "firing":
                    continue
                if now - state.heard_at >= settings.resolve_silent_after:
                    lost.append(replace(state, status="lost"))
                    continue
                last = self._emitted.get(state.key)
                if last is None or now - last >= every or now < last:
                    self._emitted[state.key] = now
                    out.extend(self._results(state, now))
            if lost:
                self._save(lost)
                for state in lost:
                    message = self._lost_message(state)
                    log.warning("%s", message)
                    self.counters.alerts.labels("firing", "lost").inc()
                    out.extend(self._results(state, now, message=message))
        for target in self._targets({r.target for r in out}):
            self.admit(target, KIND)
        return out

    # ------------------------------------------------------------------ posts

    def _save(self, states: Sequence[AlertState]) -> None:
        # Columns in the store's ALERT_COLUMNS order.
        self.store.keep_alerts(
            [
                (
                    s.key,
                    s.target,
                    s.target_label,
                    s.status,
                    s.starts_at.isoformat(),
                    s.heard_at.isoformat(),
                    _alert_to_json(s.alert),
                    s.source,
                )
                for s in states
            ]
        )
        for state in states:
            self._states[state.key] = state

    def known_targets(self) -> dict[str, str]:
        """Configured target names and hosts, to find an alert's target in."""
        return target_index({t.name: t.host for t in self.config().model.targets})

    def locate(
        self, alert: Alert, settings: AlertmanagerSettings, known: dict[str, str]
    ) -> tuple[str, str, str]:
        """(target, the label that named it, the state key) of an alert."""
        target, label = target_of(alert.labels, settings, known)
        return target, label, f"{target}\0{_item(result_labels(alert, label))}"

    def receive(self, post: Post, settings: AlertmanagerSettings) -> PostOutcome:
        """Applies a checked post: states kept in one transaction, then results out."""
        now = self.clock()
        outcome = PostOutcome()
        results: list[Result] = []
        known = self.known_targets()
        with self._lock:
            changed: dict[str, AlertState] = {}
            for alert in post.alerts:
                if ECHO_LABEL in alert.labels:
                    # watcher's own incident, posted by the alertmanager integration and
                    # routed back here: taking it in would make a loop
                    self.counters.alerts.labels(alert.status, "echo").inc()
                    outcome.stale += 1
                    continue
                target, label, key = self.locate(alert, settings, known)
                previous = changed.get(key) or self._states.get(key)
                verdict = _verdict(previous, alert, now)
                self.counters.alerts.labels(alert.status, verdict).inc()
                if verdict == "stale":
                    outcome.stale += 1
                    log.info(
                        "ignored a stale %s post of %s on %s", alert.status, alert.name, target
                    )
                    continue
                if verdict == "duplicate":
                    outcome.duplicates += 1
                else:
                    outcome.applied += 1
                state = AlertState(
                    key=key,
                    target=target,
                    target_label=label,
                    status=alert.status,
                    starts_at=alert.starts_at,
                    heard_at=now,
                    alert=alert,
                    source=post.source,
                )
                changed[key] = state
                if alert.status == "firing" or verdict != "duplicate":
                    results.extend(self._results(state, now))
                    self._emitted[key] = now
            if changed:
                self._save(list(changed.values()))
        if post.truncated:
            log.warning(
                "Alertmanager left %d alerts out of a post (max_alerts in its webhook_config); "
                "they arrive when their group is sent again",
                post.truncated,
            )
        self._emit(results)
        return outcome

    def plan(self, post: Post, settings: AlertmanagerSettings) -> list[dict[str, Any]]:
        """What a post would do, without doing it (``?dry_run=1``, ``watcher test-integration``)."""
        config = self.config()
        now = self.clock()
        out = []
        known = self.known_targets()
        located = [(alert, *self.locate(alert, settings, known)[:2]) for alert in post.alerts]
        specs = {t.name: t for t in self._targets({target for _, target, _ in located})}
        for alert, target, label in located:
            result = alert_result(alert, target, label, now, post=post)
            spec = specs[target]
            evaluations = config.rules.evaluate(result, spec.labels, spec.host)
            holding = [e.rule for e in evaluations if e.value is True]
            top = min(holding, key=lambda r: int(r.priority[1:])) if holding else None
            out.append(
                {
                    "alertname": alert.name,
                    "status": alert.status,
                    "target": target,
                    "configured_target": target in config.targets,
                    "item": result.item,
                    "summary": result.message,
                    "rules": [e.rule.name for e in evaluations if e.value is True],
                    "priority": top.priority if top else None,
                }
            )
        return out

    # ------------------------------------------------------------------ HTTP

    def routes(self, web: WebServer) -> None:
        web.route("POST", ROUTE, self.handle)

    def _refuse(self, reason: str, status: int, message: str, **headers: str) -> Response:
        self.counters.rejected.labels(reason).inc()
        response = json_response({"error": message}, status)
        response.headers.update(headers)
        return response

    def handle(self, request: Request) -> Response:
        settings = self.settings
        if settings is None:
            return self._refuse(
                "off", 404, "alerts are not taken here: add an alertmanager: section to watcher.yml"
            )
        client = request.client
        expected = settings.token or self.config().model.api_token
        if expected is None:
            return self._refuse(
                "off", 403, 'set alertmanager.token (e.g. "${ALERTMANAGER_TOKEN}") in watcher.yml'
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.reveal().encode()
        ):
            # Only misses are counted against a client: Alertmanager with the right token
            # is never slowed by a guesser at the same address.
            if not self.limiter.allow(client, MISS_COST):
                wait = max(1, round(self.limiter.retry_after(client, MISS_COST)))
                return self._refuse(
                    "auth", 429, "too many refused posts; slow down", **{"Retry-After": str(wait)}
                )
            log.warning("alertmanager post refused from %s: missing or wrong token", client or "?")
            return self._refuse(
                "auth",
                401,
                "a valid Authorization: Bearer token is needed (Alertmanager: "
                "http_config.authorization.credentials)",
                **{"WWW-Authenticate": "Bearer"},
            )
        try:
            post = parse_post(request.body, max_alerts=settings.max_alerts)
        except PayloadError as exc:
            log.warning("alertmanager post refused from %s: %s", client or "?", exc)
            return self._refuse(exc.reason, 413 if exc.reason == "too_many" else 400, str(exc))
        if (request.query.get("dry_run") or ["0"])[0] not in ("0", "", "false"):
            return json_response(
                {"source": post.source, "dry_run": True, "alerts": self.plan(post, settings)}
            )
        outcome = self.receive(post, settings)
        self.counters.received.labels(post.source).inc()
        if post.alerts and outcome.applied == 0:
            self.counters.deduplicated.labels(post.source).inc()
        return json_response(
            {"source": post.source, "alerts": len(post.alerts), **outcome.as_dict()}
        )


def _verdict(previous: AlertState | None, alert: Alert, now: datetime) -> str:
    """applied, duplicate or stale: what an arriving alert is, given what is kept of it."""
    if previous is None:
        return "applied"
    if alert.status == "firing":
        if previous.status == "lost":
            return "applied"  # heard again after it was given up: it fires anew
        if alert.starts_at < previous.starts_at:
            return "stale"
        if previous.status == "resolved":
            if alert.starts_at > previous.starts_at:
                return "applied"  # a new episode
            # The same episode sent firing after its resolve: a delivery retried late,
            # unless it keeps coming (Alertmanager's resolve_timeout ended it while
            # Prometheus still fires it), which a repeat after the window shows.
            return "stale" if now - previous.heard_at < STALE_WINDOW else "applied"
        return "duplicate" if alert.starts_at == previous.starts_at else "applied"
    if alert.starts_at < previous.starts_at:
        return "stale"  # the end of an older episode than the one kept
    if previous.status in ("resolved", "lost") and alert.starts_at == previous.starts_at:
        return "duplicate"
    return "applied"


def attach(app: App) -> AlertReceiver:
    """Wires the receiver into a running watcher: its route, the engine's tick for silent
    alerts, results into the engine's queue, and the kept states fed in again."""
    receiver = AlertReceiver(
        lambda: app.config,
        app.store,
        clock=lambda: app.engine.clock(),
        on_results=app.sink.put,
        admit=app.engine.admit,
        registry=app.metrics.registry,
    )
    app.engine.add_ticker(receiver.due_results)
    config = app.config
    if config.model.alertmanager is not None and not any(
        KIND in rule.probe or not rule.probe for rule in config.rules.rules
    ):
        log.warning(
            "alertmanager: is set but no rule looks at its alerts: add the shipped pack, "
            "rules: [default, alertmanager]"
        )
    receiver.resume()
    return receiver


SAMPLE_POST: dict[str, Any] = {
    "version": "4",
    "status": "firing",
    "receiver": "watcher",
    "groupKey": '{}:{alertname="WatcherReceiverTest"}',
    "truncatedAlerts": 0,
    "groupLabels": {"alertname": "WatcherReceiverTest"},
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "WatcherReceiverTest",
                "instance": "watcher-test:9100",
                "severity": "critical",
            },
            "annotations": {"summary": "receiver test from watcher test-integration"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": "0000000000000000",
        }
    ],
}


def test_receiver(config: Config, timeout: float = 10.0) -> tuple[bool, list[str]]:
    """Posts a sample alert to the running watcher's endpoint as a dry run (nothing is
    applied): checks that it listens, that the token is right, and what the rules make
    of it. (ok, lines to print)."""
    import urllib.error
    import urllib.request

    settings = config.model.alertmanager
    listen = config.model.listen
    if settings is None:
        return False, ["alertmanager: is not configured in watcher.yml"]
    if not listen:
        return False, ["listen: is off, so nothing can receive Alertmanager's posts"]
    token = settings.token or config.model.api_token
    if token is None:
        return False, ['set alertmanager.token (e.g. "${ALERTMANAGER_TOKEN}")']
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}{ROUTE}?dry_run=1"
    request = urllib.request.Request(
        url,
        data=json.dumps(SAMPLE_POST).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token.reveal()}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own listen address
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return False, [
            f"{url.split('?')[0]} answered {exc.code}: {exc.read()[:300].decode(errors='replace')}"
        ]
    except OSError as exc:
        return False, [f"nothing answers at {url.split('?')[0]} ({exc}); is `watcher run` running?"]
    lines = [
        f"{url.split('?')[0]}: a sample Alertmanager post is accepted (dry run, nothing applied)"
    ]
    for alert in answer.get("alerts", []):
        lines.append(
            f"  {alert['alertname']} on {alert['target']}: "
            + (
                f"{alert['priority']} by {', '.join(alert['rules'])}"
                if alert["priority"]
                else "no rule holds; list the alertmanager rule pack in rules:"
            )
        )
    return True, lines
