"""The maintenance windows' HTTP API, registered on the daemon's web server.

    GET    /api/maintenance          windows on now and to come (?all=1: ended ones too)
    POST   /api/maintenance          add one (JSON as in watcher.yml; start/end take now, +2h)
    DELETE /api/maintenance/<id>     end a stored window now

Adding and removing need ``Authorization: Bearer <api_token>``; without ``api_token``
they are off. Windows go into the state file, exactly as ``watcher maintenance`` does.
"""

from __future__ import annotations

from typing import Any

from watcher.maintenance import (
    Maintenance,
    Window,
    add_window,
    check_windows,
    remove_window,
    window_from_request,
)
from watcher.web import Request, Response, WebServer, json_response

__all__ = ["routes"]


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
        body = request.json()
        if not isinstance(body, dict):
            return json_response(
                {
                    "error": "send a JSON object: {name, targets or labels, and start/end, duration, cron or from/to}"
                },
                400,
            )
        by = str(body.pop("by", "") or f"api ({request.client})")[:80]
        timezone = app.config.model.business_hours.timezone
        moment = now()
        try:
            window = window_from_request(body, default_timezone=timezone, now=moment)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        problems = check_windows(
            [window], app.config.targets, [o.name for o in app.config.model.outages]
        )
        if problems:
            return json_response({"error": "; ".join(p[2] for p in problems)}, 400)
        window_id = add_window(app.store, window, by=by, now=moment)
        view = Window(
            window, window.timezone or timezone, id=window_id, created_by=by, created_at=moment
        ).view(moment)
        return json_response(view, 201)

    def remove(request: Request) -> Response:
        body = request.json() or {}
        by = (
            str(body.get("by", "") if isinstance(body, dict) else "")[:80]
            or f"api ({request.client})"
        )
        window_id = int(request.params["id"])
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
