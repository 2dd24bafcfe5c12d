"""The ops console: overview, incident and target pages, actions, live data.

Read-only for everyone who can reach ``listen:``; acknowledging, resolving, adding a
maintenance window and silencing a target need a login with the API token
(``watcher.web.session``). Actions go through the same engine and maintenance functions as
the HTTP API, so tickets, pages and the outbox follow exactly as they do there.

The overview stays fast on a large site by filtering the engine's in-memory latest
results and reading history (``Store.check_history``) only for the checks on the page.
Every page is rendered by an autoescaping template and served under a policy that lets
it load only its own stylesheet and script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from markupsafe import Markup, escape

from probes.base import Result
from watcher.delivery.render import local_time
from watcher.engine.incident import Incident
from watcher.engine.outage import OUTAGE_PROBE
from watcher.engine.suppression import describe
from watcher.web.maintenance_api import create_window
from watcher.web.server import ClientError, Request, Response, WebServer, json_response
from watcher.web.session import Session, Sessions, Throttled, cookie_value, set_cookie
from watcher.web.templating import render

__all__ = ["CONSOLE_CSP", "Console", "PAGE_SIZE"]

# Only the console's own stylesheet and script, data only from its own origin, forms only
# back to it: nothing a name slips into the page can run or load anything.
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_SIZE = 50
MAX_PROBLEMS = 200
POLL_S = 15
STATUSES = ("ok", "fail", "error")
_STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


@dataclass
class CheckRow:
    result: Result
    key: str
    maintenance: bool
    priority: str | None
    day: Markup
    month: Markup
    uptime: dict[str, float | None]
    spark: str
    latency: float | None
    changed: str


class Console:
    """The console's routes on ``app``'s web server (``app`` as in ``watcher.app.App``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sessions = Sessions(lambda: app.config.model.api_token)

    def routes(self, web: WebServer) -> None:
        web.route("GET", "/console", self.overview)
        web.route("GET", "/console/live.json", self.live)
        web.route("GET", r"/console/incidents/(?P<id>\d+)", self.incident_page)
        web.route("GET", r"/console/targets/(?P<name>[^/]+)", self.target_page)
        web.route("GET", r"/console/static/(?P<name>[a-z]+\.(?:css|js))", self.static)
        # Browsers ask for it on their own; an empty answer keeps their consoles clean.
        web.route("GET", "/favicon.ico", lambda request: Response(204))
        web.route("GET", "/console/login", self.login_page)
        web.route("POST", "/console/login", self.login)
        web.route("POST", "/console/logout", self.logout)
        web.route("POST", r"/console/incidents/(?P<id>\d+)/(?P<action>ack|resolve)", self.act)
        web.route("POST", "/console/maintenance", self.add_maintenance)
        web.route("POST", r"/console/targets/(?P<name>[^/]+)/silence", self.silence)

    # ------------------------------------------------------------------ helpers

    @property
    def calendar(self) -> Any:
        return self.app.config.calendar

    def _time(self, moment: datetime | None) -> str:
        return local_time(moment, self.calendar)

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(cookie_value(request.headers.get("cookie")))

    def _page(self, template: str, request: Request, status: int = 200, **context: Any) -> Response:
        session = self._session(request)
        now = self.app.engine.clock()
        html = render(
            template,
            site=self.app.config.site,
            session=session,
            csrf=session.csrf if session else "",
            now=self._time(now),
            tz=str(self.calendar.tz),
            poll=POLL_S,
            path=request.path,
            **context,
        )
        return Response(
            status,
            html.encode(),
            "text/html; charset=utf-8",
            {"Content-Security-Policy": CONSOLE_CSP},
        )

    def _countdown(self, due: datetime | None, now: datetime) -> str:
        if due is None:
            return "-"
        seconds = (due - now).total_seconds()
        text = _span(abs(seconds))
        return f"in {text}" if seconds >= 0 else f"overdue {text}"

    def _problems(self, now: datetime) -> list[dict[str, Any]]:
        """Open and acknowledged incidents, most urgent first, as the templates show them."""
        active = [i for i in self.app.engine.incidents() if i.active]
        active.sort(key=lambda i: (i.priority or "P9", i.state == "acknowledged", i.id or 0))
        return [self._incident_view(i, now) for i in active[:MAX_PROBLEMS]]

    def _incident_view(self, i: Incident, now: datetime) -> dict[str, Any]:
        return {
            "id": i.id,
            "priority": i.priority or "-",
            "state": i.state,
            "target": i.target,
            "summary": i.summary or i.message,
            "outage": i.probe == OUTAGE_PROBE,
            "members": len(i.members),
            "total": i.total_members,
            "age": _span((now - (i.opened_at or i.first_seen or now)).total_seconds()),
            "respond": self._countdown(i.response_due, now),
            "resolve": self._countdown(i.resolve_due, now),
            "respond_due": i.response_due.isoformat() if i.response_due else "",
            "resolve_due": i.resolve_due.isoformat() if i.resolve_due else "",
            "late": bool(i.resolve_due and i.resolve_due < now),
            "ack_by": i.acknowledged_by or "",
            "note": describe(i),
            "tickets": self.app.store.tickets(i.id or 0) if i.id else [],
        }

    def _maintenance(self, now: datetime) -> list[tuple[Any, str]]:
        active = self.app.engine.suppressor.maintenance.active(now)
        return [(window, self._time(end)) for window, end in active]

    # ----------------------------------------------------------------- overview

    def _select(self, query: dict[str, list[str]], now: datetime) -> tuple[list[Result], dict]:
        """The latest results the filters keep, problems first, and the filters as read."""

        def one(name: str) -> str:
            return (query.get(name) or [""])[0].strip()[:200]

        filters = {k: one(k) for k in ("q", "target", "label", "status", "priority")}
        if filters["status"] and filters["status"] not in STATUSES:
            raise ClientError(400, "status must be ok, fail or error")
        targets = self.app.engine.targets
        label_key, _, label_value = filters["label"].partition("=")
        by_priority: dict[str, str] = {}
        for i in self.app.engine.incidents():
            if i.active and i.priority:
                best = by_priority.get(i.target)
                by_priority[i.target] = min(best, i.priority) if best else i.priority
        needle = filters["q"].lower()
        chosen = []
        for r in self.app.engine.latest():
            if filters["target"] and r.target != filters["target"]:
                continue
            if filters["status"] and r.status != filters["status"]:
                continue
            if filters["priority"] and by_priority.get(r.target) != filters["priority"]:
                continue
            if label_key:
                target = targets.get(r.target)
                labels = dict(getattr(target, "labels", {}) or {})
                if labels.get(label_key) != label_value if label_value else label_key not in labels:
                    continue
            if needle and needle not in f"{r.target} {r.probe} {r.item} {r.message}".lower():
                continue
            chosen.append(r)
        # Labels are joined into an item only where there are any: at 10,000 checks the
        # sort is a good part of the page's time.
        chosen.sort(
            key=lambda r: (
                r.status == "ok",
                by_priority.get(r.target) or "P9",
                r.target,
                r.probe,
                r.item if r.labels else "",
            )
        )
        filters["by_priority"] = by_priority  # type: ignore[assignment]
        return chosen, filters

    def _rows(self, results: list[Result], by_priority: dict[str, str], now: datetime) -> list:
        maintenance = self.app.engine.suppressor.maintenance
        active = maintenance.active(now)
        targets = self.app.engine.targets
        hour = math.floor(now.timestamp() / 3600) * 3600
        day = math.floor(now.timestamp() / 86400) * 86400
        # The cells' names are the same on every row: made once per page.
        hours = [self._hour_title(hour - (23 - k) * 3600) for k in range(24)]
        days = [self._day_title(day - (29 - k) * 86400) for k in range(30)]
        rows = []
        for r in results:
            spans, changed = self.app.store.check_history(
                r.key, now - timedelta(days=30), hourly_since=now - timedelta(hours=24)
            )
            target = targets.get(r.target)
            labels = dict(getattr(target, "labels", {}) or {})
            in_window = bool(active) and bool(maintenance.covering(r.target, labels, now, active))
            day_cells = _cells(spans, hour - 23 * 3600, 3600, hours)
            month_cells = _cells(spans, day - 29 * 86400, 86400, days)
            rows.append(
                CheckRow(
                    result=r,
                    key="|".join(r.key),
                    maintenance=in_window,
                    priority=by_priority.get(r.target),
                    day=day_cells,
                    month=month_cells,
                    uptime={
                        "24 h": _uptime(spans, now.timestamp() - 86400),
                        "7 d": _uptime(spans, now.timestamp() - 7 * 86400),
                        "30 d": _uptime(spans, now.timestamp() - 30 * 86400),
                    },
                    spark=_sparkline(spans, hour - 23 * 3600),
                    latency=r.metrics.get("latency_s"),
                    changed=self._time(datetime.fromtimestamp(changed, UTC)) if changed else "-",
                )
            )
        return rows

    def _hour_title(self, start: float) -> str:
        return self._time(datetime.fromtimestamp(start, UTC))

    def _day_title(self, start: float) -> str:
        return datetime.fromtimestamp(start, UTC).astimezone(self.calendar.tz).strftime("%Y-%m-%d")

    def overview(self, request: Request) -> Response:
        now = self.app.engine.clock()
        chosen, filters = self._select(request.query, now)
        by_priority = filters.pop("by_priority")
        pages = max(1, math.ceil(len(chosen) / PAGE_SIZE))
        page = min(_number(request.query, "page", 1), pages)
        shown = chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        everything = self.app.engine.latest()
        failing = sum(1 for r in everything if r.status != "ok")
        kept = {k: v for k, v in filters.items() if v}

        def page_link(n: int) -> str:
            return "/console?" + urlencode({**kept, "page": n})

        return self._page(
            "console_overview.html",
            request,
            problems=self._problems(now),
            maintenance=self._maintenance(now),
            rows=self._rows(shown, by_priority, now),
            filters=filters,
            matched=len(chosen),
            page=page,
            pages=pages,
            prev_link=page_link(page - 1) if page > 1 else "",
            next_link=page_link(page + 1) if page < pages else "",
            heading=f"{len(everything)} checks on {len(self.app.engine.targets)} targets, {failing} not ok",
            priorities=sorted(self.app.config.rules.priorities),
            quote=quote,
        )

    def live(self, request: Request) -> Response:
        """What the overview's script refreshes: headline, problems, the page's checks."""
        now = self.app.engine.clock()
        chosen, filters = self._select(request.query, now)
        page = _number(request.query, "page", 1)
        shown = chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        everything = self.app.engine.latest()
        failing = sum(1 for r in everything if r.status != "ok")
        problems = self._problems(now)
        for p in problems:
            p["tickets"] = [
                {"id": t["external_id"], "url": _safe_url(t.get("url"))} for t in p["tickets"]
            ]
        return json_response(
            {
                "now": self._time(now),
                "heading": f"{len(everything)} checks on {len(self.app.engine.targets)} targets, {failing} not ok",
                "problems": problems,
                "checks": {
                    "|".join(r.key): {
                        "status": r.status,
                        "message": r.message,
                        "at": self._time(r.at),
                    }
                    for r in shown
                },
            }
        )

    # ------------------------------------------------------------ detail pages

    def incident_page(self, request: Request) -> Response:
        incident = self.app.store.incident(request.id_param())
        if incident is None:
            return self._page("console_missing.html", request, 404, what="incident")
        now = self.app.engine.clock()
        live = next((i for i in self.app.engine.incidents() if i.id == incident.id), None)
        incident = live or incident
        escalation = [c.role for c in self.app.config.model.contacts.escalation]
        outbox = [
            {
                "id": row.id,
                "integration": row.integration,
                "action": row.action,
                "state": row.state,
                "attempts": row.attempts,
                "error": row.last_error or "",
            }
            for row in self.app.store.outbox(incident_id=incident.id)
        ]
        recent = self.app.store.recent_results(
            incident.target, incident.probe, incident.item, limit=20
        )
        return self._page(
            "console_incident.html",
            request,
            i=incident,
            view=self._incident_view(incident, now),
            events=self.app.store.events(incident.id or 0),
            recent=recent,
            outbox=outbox,
            escalation=escalation,
            time=self._time,
            safe_url=_safe_url,
        )

    def target_page(self, request: Request) -> Response:
        name = unquote(request.params["name"])
        target = self.app.engine.targets.get(name)
        results = [r for r in self.app.engine.latest() if r.target == name]
        if target is None and not results:
            return self._page("console_missing.html", request, 404, what="target")
        now = self.app.engine.clock()
        by_priority = {
            i.target: i.priority for i in self.app.engine.incidents() if i.active and i.priority
        }
        incidents = [
            self._incident_view(i, now)
            for i in self.app.engine.incidents()
            if i.active and i.target == name
        ]
        return self._page(
            "console_target.html",
            request,
            target_name=name,
            host=getattr(target, "host", None) or "",
            labels=dict(getattr(target, "labels", {}) or {}),
            rows=self._rows(sorted(results, key=lambda r: r.key), by_priority, now),
            incidents=incidents,
            maintenance=[
                (w, end)
                for w, end in self._maintenance(now)
                if w.covers(name, getattr(target, "labels", {}) or {})
            ],
            quote=quote,
        )

    def static(self, request: Request) -> Response:
        name = request.params["name"]
        if name not in _STATIC:
            return Response(404, b"not found\n")
        return Response(200, _static(name), _STATIC[name], {"Cache-Control": "max-age=300"})

    # ----------------------------------------------------------- login, actions

    def login_page(self, request: Request) -> Response:
        return self._page(
            "console_login.html",
            request,
            problem="",
            enabled=bool(self.app.config.model.api_token),
            next=_next(request.query),
        )

    def login(self, request: Request) -> Response:
        form = _form(request)
        target = _next(form)
        try:
            session = self.sessions.login((form.get("token") or [""])[0], request.client)
        except Throttled as exc:
            response = self._page(
                "console_login.html", request, 429, problem=str(exc), enabled=True, next=target
            )
            response.headers["Retry-After"] = str(int(exc.retry_after) + 1)
            return response
        if session is None:
            return self._page(
                "console_login.html",
                request,
                403,
                problem="That is not this watcher's API token."
                if self.app.config.model.api_token
                else "Logins are off: set api_token in watcher.yml.",
                enabled=bool(self.app.config.model.api_token),
                next=target,
            )
        return _redirect(target, set_cookie(session.id, secure=self._secure(request)))

    def logout(self, request: Request) -> Response:
        session = self._checked(request)
        self.sessions.logout(session.id)
        return _redirect("/console", set_cookie("", secure=self._secure(request), clear=True))

    def _secure(self, request: Request) -> bool:
        # The daemon speaks plain HTTP; behind a TLS proxy it learns of TLS from the proxy.
        return request.headers.get("x-forwarded-proto", "").lower() == "https"

    def _checked(self, request: Request) -> Session:
        """The request's session if it is logged in and echoes its CSRF token; else 403."""
        session = self._session(request)
        if session is None:
            raise ClientError(
                403, "log in at /console/login first: the console is read-only without it"
            )
        if not self.sessions.csrf_ok(session, (_form(request).get("csrf") or [""])[0]):
            raise ClientError(
                403, "the form's CSRF token is missing or wrong: reload the page and try again"
            )
        return session

    def _by(self, request: Request) -> str:
        return f"console ({request.client})"

    def act(self, request: Request) -> Response:
        self._checked(request)
        incident_id = request.id_param()
        form = _form(request)
        if request.params["action"] == "ack":
            incident = self.app.engine.acknowledge(
                incident_id, by=self._by(request), source="console"
            )
        else:
            note = (form.get("note") or [""])[0][:500]
            incident = self.app.engine.resolve(incident_id, by=self._by(request), note=note)
        if incident is None:
            raise ClientError(404, "no such incident")
        return _redirect(f"/console/incidents/{incident_id}")

    def add_maintenance(self, request: Request) -> Response:
        self._checked(request)
        form = _form(request)

        def one(name: str) -> str:
            return (form.get(name) or [""])[0].strip()

        body: dict[str, Any] = {
            "name": one("name") or "console window",
            "duration": one("duration") or "1h",
            "reason": one("reason"),
        }
        targets = [t.strip() for t in one("targets").split(",") if t.strip()]
        if targets:
            body["targets"] = targets
        key, _, value = one("label").partition("=")
        if key.strip():
            body["labels"] = {key.strip(): value.strip()}
        view, problem = create_window(self.app, body, by=self._by(request))
        if problem:
            raise ClientError(400, problem)
        return _redirect(_next(form))

    def silence(self, request: Request) -> Response:
        self._checked(request)
        name = unquote(request.params["name"])
        form = _form(request)
        duration = (form.get("duration") or ["1h"])[0].strip() or "1h"
        body = {
            "name": f"silence {name}",
            "targets": [name],
            "duration": duration,
            "reason": (form.get("reason") or [""])[0].strip() or "silenced from the console",
        }
        view, problem = create_window(self.app, body, by=self._by(request))
        if problem:
            raise ClientError(400, problem)
        return _redirect("/console/targets/" + quote(name, safe=""))


# ---------------------------------------------------------------------- helpers


@cache
def _static(name: str) -> bytes:
    return resources.files("watcher.web").joinpath("static", name).read_bytes()


def _form(request: Request) -> dict[str, list[str]]:
    if not hasattr(request, "_form"):
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientError(400, "the form is not UTF-8") from None
        request._form = parse_qs(text, max_num_fields=50)  # type: ignore[attr-defined]
    return request._form  # type: ignore[attr-defined]


def _next(values: dict[str, list[str]]) -> str:
    """Where to go after a form: a console path only, never another site."""
    target = (values.get("next") or ["/console"])[0]
    if not target.startswith("/console") or "//" in target or "\\" in target:
        return "/console"
    return target


def _redirect(location: str, cookie: str | None = None) -> Response:
    headers = {"Location": location}
    if cookie:
        headers["Set-Cookie"] = cookie
    return Response(303, b"", headers=headers)


def _safe_url(url: str | None) -> str:
    """A ticket link only if it is http(s): a javascript: URL stays out of hrefs."""
    return url if url and url.lower().startswith(("http://", "https://")) else ""


def _number(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = (query.get(name) or [""])[0]
    return (
        int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) <= 6 and int(raw) else default
    )


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _cells(spans: list, start: float, size: int, names: list[str]) -> Markup:
    """An uptime bar as SVG, one cell per ``size`` seconds from ``start`` (one per name):
    built here, not in the template, as it holds only numbers and our own date labels,
    and 54 cells on each of 50 rows were most of the page's time as template code."""
    count = len(names)
    totals = [[0, 0] for _ in range(count)]
    for at, _span_s, n, up, _ln, _lt in spans:
        index = int((at - start) // size)
        if 0 <= index < count:
            totals[index][0] += n
            totals[index][1] += up
    parts = []
    for k, (n, up) in enumerate(totals):
        share = up / n if n else None
        css = (
            "none"
            if share is None
            else "up"
            if share >= 0.999
            else "part"
            if share >= 0.9
            else "down"
        )
        title = f"{100 * share:.1f}% of {n} ok" if share is not None else "no data"
        parts.append(
            f'<rect x="{k * 4}" width="3" height="12" class="{css}"><title>{escape(names[k])}: {title}</title></rect>'
        )
    return Markup(
        f'<svg class="bar" viewBox="0 0 {count * 4} 12" width="{count * 4}" height="12" role="img"'
        f' aria-label="uptime per {"hour" if size == 3600 else "day"}, last {count} {"hours" if size == 3600 else "days"}">'
        + "".join(parts)
        + "</svg>"
    )


def _uptime(spans: list, since: float) -> float | None:
    n = sum(s[2] for s in spans if s[0] + s[1] > since)
    up = sum(s[3] for s in spans if s[0] + s[1] > since)
    return 100 * up / n if n else None


def _sparkline(spans: list, start: float) -> str:
    """SVG polyline points for hourly mean latency over 24 h (empty if none)."""
    values: list[tuple[int, float]] = []
    for at, size, _n, _up, ln, lt in spans:
        if size == 3600 and at >= start and ln:
            values.append((int((at - start) // 3600), lt / ln))
    if not values:
        return ""
    top = max(v for _, v in values) or 1.0
    points = [f"{k * 4 + 2},{19 - 17 * v / top:.1f}" for k, v in values]
    if len(points) == 1:  # a lone hour still shows, as a short level line
        k, v = values[0]
        points.insert(0, f"{max(0, k * 4 - 2)},{19 - 17 * v / top:.1f}")
    return " ".join(points)
