"""The daemon's own HTTP answers: /metrics, /healthz, the status page and the JSON API over
results and incidents (acknowledge and resolve with the token), read from the running app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from probes.base import Result
from watcher.engine.incident import ACTIVE_STATES, public_view
from watcher.web.alertmanager_api import attach as attach_alertmanager
from watcher.web.console import Console
from watcher.web.maintenance_api import routes as maintenance_routes
from watcher.web.server import (
    ClientError,
    Request,
    Response,
    WebServer,
    json_response,
    text_response,
)
from watcher.web.status_page import page_response, render_status_page, waiting_text

if TYPE_CHECKING:
    from watcher.app.daemon import App

__all__ = ["DaemonApi", "PAGE_ROWS", "select_results"]

# Rows of latest results the status page shows; a large site narrows them by query.
PAGE_ROWS = 500


class DaemonApi:
    """The routes a running app answers besides check-ins and the maintenance and
    Alertmanager APIs, which it registers too. Reads the app at each request, so a reload's
    new config and engine are what answers."""

    def __init__(self, app: App) -> None:
        self.app = app

    def routes(self, web: WebServer) -> None:
        web.route("GET", "/metrics", self._metrics)
        web.route("GET", "/healthz", self._healthz)
        web.route("GET", "/", self._status_page)
        web.route("GET", "/api/results", self._api_results)
        web.route("GET", "/api/incidents", self._api_incidents)
        web.route("GET", r"/api/incidents/(?P<id>\d+)", self._api_incident)
        web.route("POST", r"/api/incidents/(?P<id>\d+)/ack", self._api_ack, token=True)
        web.route("POST", r"/api/incidents/(?P<id>\d+)/resolve", self._api_resolve, token=True)
        self.app.checkins.routes(web)
        maintenance_routes(web, self.app)
        attach_alertmanager(self.app).routes(web)
        Console(self.app).routes(web)

    def _metrics(self, request: Request) -> Response:
        return self.app.metrics.respond(request)

    def _healthz(self, request: Request) -> Response:
        ok, why = self.app.healthy
        return text_response(f"{why}\n", 200 if ok else 503)

    def _api_results(self, request: Request) -> Response:
        chosen, problem = select_results(self.app.engine.latest(), request.query)
        if problem:
            return json_response({"error": problem}, 400)
        offset, limit = _window(request.query)
        response = json_response(
            [x.to_dict() for x in chosen[offset : offset + limit if limit else None]]
        )
        waiting = waiting_text(self.app.scheduler.first_runs())
        if waiting:
            # a header, so the body stays the list clients read: why it may be short
            response.headers["Watcher-Waiting"] = waiting
        return response

    def _api_incidents(self, request: Request) -> Response:
        states = _incident_states(request.query.get("state"))
        items = (
            self.app.store.incidents(states=states)
            if states
            else self.app.store.incidents(limit=500)
        )
        return json_response([public_view(i) for i in items])

    def _api_incident(self, request: Request) -> Response:
        incident = self.app.store.incident(request.id_param())
        if incident is None:
            return json_response({"error": "no such incident"}, 404)
        data = public_view(incident)
        data["timeline"] = [
            {"at": e.at.isoformat(), "kind": e.kind, "message": e.message}
            for e in self.app.store.events(incident.id or 0)
        ]
        data["tickets"] = self.app.store.tickets(incident.id or 0)
        return json_response(data)

    def _who(self, request: Request) -> str:
        by = request.json().get("by")
        if by is not None and not isinstance(by, str):
            raise ClientError(400, '"by" must be text: who is acting')
        return by[:80] if by else f"api ({request.client})"

    def _api_ack(self, request: Request) -> Response:
        # Everything is read before anything is done: a bad request changes nothing.
        incident_id, by = request.id_param(), self._who(request)
        incident = self.app.engine.acknowledge(incident_id, by=by, source="api")
        if incident is None:
            return json_response({"error": "no such incident"}, 404)
        return json_response(public_view(incident))

    def _api_resolve(self, request: Request) -> Response:
        incident_id, by = request.id_param(), self._who(request)
        incident = self.app.engine.resolve(incident_id, by=by)
        if incident is None:
            return json_response({"error": "no such incident"}, 404)
        return json_response(public_view(incident))

    def _status_page(self, request: Request) -> Response:
        everything = self.app.engine.latest()
        chosen, problem = select_results(everything, request.query)
        if problem:
            return text_response(problem + "\n", 400)
        if not request.query:
            # Problems first: on a large site the page shows what needs eyes, not the
            # first few hundred healthy checks in name order.
            chosen.sort(key=lambda r: (r.status == "ok", r.key))
        html = render_status_page(
            site=self.app.config.site,
            calendar=self.app.config.calendar,
            targets=len(self.app.config.model.targets),
            incidents=[i for i in self.app.engine.incidents() if i.state != "resolved"],
            maintenance=self.app.engine.suppressor.maintenance.active(self.app.engine.clock()),
            shown=chosen[:PAGE_ROWS],
            matched=len(chosen),
            everything=everything,
            first_runs=self.app.scheduler.first_runs(),
        )
        return page_response(html)


def select_results(results: list[Result], query: dict[str, list[str]]) -> tuple[list[Result], str]:
    """The latest results narrowed by ``?target=`` and ``?status=`` (each may repeat or list
    values with commas), in key order; or a problem to answer 400 with."""

    def values(name: str) -> set[str]:
        return {v.strip() for raw in query.get(name, []) for v in raw.split(",") if v.strip()}

    targets, statuses = values("target"), values("status")
    unknown = statuses - {"ok", "fail", "error"}
    if unknown:
        return [], f"status must be ok, fail or error, not {sorted(unknown)[0][:20]!r}"
    chosen = [
        r
        for r in results
        if (not targets or r.target in targets) and (not statuses or r.status in statuses)
    ]
    return sorted(chosen, key=lambda r: r.key), ""


def _window(query: dict[str, list[str]]) -> tuple[int, int]:
    """``offset`` and ``limit`` (0: no limit); anything unreadable counts as absent."""

    def number(name: str) -> int:
        raw = (query.get(name) or ["0"])[0]
        # isdigit alone takes "²", which int() refuses; nine digits outnumber any site.
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0

    return number("offset"), number("limit")


def _incident_states(asked: list[str] | None) -> list[str] | None:
    """The incident states a ``?state=`` filter names. ``open`` means not resolved (open and
    acknowledged alike), because an acknowledged incident is still a problem on the site."""
    if not asked:
        return None
    known = ("pending", "open", "acknowledged", "resolved")
    states: list[str] = []
    for value in (v for item in asked for v in item.split(",") if v):
        if value not in known:
            raise ClientError(400, f"unknown state {value!r}; states: {', '.join(known)}")
        states.extend(ACTIVE_STATES if value == "open" else (value,))
    return states
