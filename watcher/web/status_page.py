"""The status page: open incidents, maintenance on now and the latest results, as HTML.

The web side chooses what to show (``watcher.app``); this module lays it out through
``templates/status.html``, which escapes every name, message and note it prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from probes.base import Result
from watcher.delivery.render import local_time
from watcher.engine.incident import Incident
from watcher.engine.maintenance import Window
from watcher.engine.sla import BusinessCalendar
from watcher.engine.suppression import describe
from watcher.web.server import Response
from watcher.web.templating import render

__all__ = ["STATUS_CSP", "page_response", "render_status_page"]

# Nothing on the page is fetched and nothing runs: its only style is inline, and a name
# that slipped through as markup still could neither run a script nor load anything.
STATUS_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
REFRESH_S = 30


def _scope(window: Window) -> str:
    """Whom a maintenance window covers: its targets, then its labels as key=value."""
    labels = (f"{key}={value}" for key, value in window.config.labels.items())
    return ", ".join([*window.config.targets, *labels])


def render_status_page(
    *,
    site: str,
    calendar: BusinessCalendar,
    targets: int,
    incidents: Sequence[Incident],
    maintenance: Sequence[tuple[Window, datetime]],
    shown: Sequence[Result],
    matched: int,
    everything: Sequence[Result],
    now: datetime | None = None,
) -> str:
    """The page for ``site`` (of ``targets`` targets, times shown in ``calendar``'s zone):
    ``incidents`` not resolved (shown by priority), the maintenance windows on now with
    their ends, and ``shown``, the first of ``matched`` results chosen from ``everything``
    (whose count heads the table)."""
    failing = sum(1 for r in everything if r.status != "ok")
    return render(
        "status.html",
        site=site,
        refresh=REFRESH_S,
        incidents=sorted(incidents, key=lambda i: (i.priority or "P9", i.id or 0)),
        maintenance=[
            (window, _scope(window), end.astimezone(calendar.tz).strftime("%Y-%m-%d %H:%M %Z"))
            for window, end in maintenance
        ],
        results=shown,
        matched=matched,
        heading=f"{len(everything)} checks on {targets} targets, {failing} not ok",
        describe=describe,
        local_time=lambda moment: local_time(moment, calendar),
        rendered=(now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def page_response(html: str) -> Response:
    """A rendered page as an HTTP answer, with the page's Content-Security-Policy."""
    return Response(
        200, html.encode(), "text/html; charset=utf-8", {"Content-Security-Policy": STATUS_CSP}
    )
