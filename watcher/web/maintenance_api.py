"""The maintenance windows' HTTP API, registered on the daemon's web server.

    GET    /api/maintenance          windows on now and to come (?all=1: ended ones too)
    POST   /api/maintenance          add one (JSON as in watcher.yml; start/end take now, +2h)
    DELETE /api/maintenance/<id>     end a stored window now

Adding and removing need ``Authorization: Bearer <api_token>``; without ``api_token``
they are off. Windows go into the state file, exactly as ``watcher maintenance`` does.
"""

from __future__ import annotations

from typing import Any

from watcher.engine.maintenance import (
    Maintenance,
    Window,
    add_window,
    check_windows,
    remove_window,
    window_from_request,
)
from watcher.web.server import ClientError, Request, Response, WebServer, json_response

__all__ = ["create_window", "routes"]


def routes(web: WebServer, app: Any) -> None:
    """``app`` gives ``config``, ``store`` and ``engine`` (for its clock)."""

    def now() -> Any:
        return app.engine.clock()

    def listing(request: Request) -> Response:
        maintenance = Maintenance(app.store)
        maintenance.configure(
            app.config.model.maintenance, app.config.model.business_hours.timezone
        )
        maintenance.refresh()
        moment = now()
        views = [w.view(moment) for w in maintenance.windows]
        if request.query.get("all", ["0"])[0] not in ("1", "true", "yes"):
            views = [v for v in views if v["state"] != "ended"]
        return json_response(views)

    def add(request: Request) -> Response:
        try:
            body = request.json()
        except ClientError as exc:
            raise ClientError(
                exc.status,
                f"{exc.message}; send {{name, targets or labels, and start/end, duration, cron or from/to}}",
            ) from None
        view, problem = create_window(app, body, by=_by(body, request))
        if problem:
            return json_response({"error": problem}, 400)
        return json_response(view, 201)

    def remove(request: Request) -> Response:
        window_id = request.id_param()
        by = _by(request.json(), request)
        if remove_window(app.store, window_id, by=by, now=now()):
            return json_response({"removed": window_id})
        return json_response(
            {
                "error": f"no stored maintenance window {window_id} (config windows are removed by editing watcher.yml)"
            },
            404,
        )

    web.route("GET", "/api/maintenance", listing)
    web.route("POST", "/api/maintenance", add, token=True)
    web.route("DELETE", r"/api/maintenance/(?P<id>\d+)", remove, token=True)


def create_window(app: Any, body: dict[str, Any], *, by: str) -> tuple[dict[str, Any], str]:
    """Stores the window ``body`` describes (as in watcher.yml) and returns its view, or
    an empty view and the problem with it; the HTTP API and the console both add here."""
    timezone = app.config.model.business_hours.timezone
    moment = app.engine.clock()
    try:
        window = window_from_request(body, default_timezone=timezone, now=moment)
    except (ValueError, TypeError) as exc:  # TypeError: a field of the wrong JSON type
        return {}, str(exc).splitlines()[0][:300]
    problems = check_windows(
        [window], app.config.targets, [o.name for o in app.config.model.outages]
    )
    if problems:
        return {}, "; ".join(p[2] for p in problems)
    window_id = add_window(app.store, window, by=by, now=moment)
    view = Window(
        window, window.timezone or timezone, id=window_id, created_by=by, created_at=moment
    ).view(moment)
    return view, ""


def _by(body: dict[str, Any], request: Request) -> str:
    """Who acts: the body's ``by`` (text), else the client's address."""
    by = body.pop("by", None)
    if by is not None and not isinstance(by, str):
        raise ClientError(400, '"by" must be text: who is acting')
    return by[:80] if by else f"api ({request.client})"
