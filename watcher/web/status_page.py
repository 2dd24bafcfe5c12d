"""The status page: open incidents, maintenance on now and the latest results, as HTML.

The web side chooses what to show (``watcher.app``); this module lays it out through
``templates/status.html``, which escapes every name, message and note it prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from probes.base import Result
from watcher.delivery.render import counted
from watcher.engine.incident import Incident
from watcher.engine.maintenance import Window
from watcher.engine.sla import BusinessCalendar
from watcher.engine.suppression import describe
from watcher.web.server import Response
from watcher.web.templating import render

__all__ = ["STATUS_CSP", "page_response", "render_status_page", "waiting_text"]

# Nothing on the page is fetched and nothing runs: its only style is inline, and a name
# that slipped through as markup still could neither run a script nor load anything.
STATUS_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
REFRESH_S = 30
TIME_FORMAT = "%Y-%m-%d %H:%M"


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
    first_runs: Sequence[float] = (),
) -> str:
    """The page for ``site`` (of ``targets`` targets, times shown in ``calendar``'s zone):
    ``incidents`` not resolved (shown by priority), the maintenance windows on now with
    their ends, and ``shown``, the first of ``matched`` results chosen from ``everything``
    (whose count heads the table). ``first_runs`` are the seconds until each check that
    has not reported yet does, so an empty page after a start says when it fills."""
    failing = sum(1 for r in everything if r.status != "ok")
    tz = calendar.tz
    moment = (now or datetime.now(UTC)).astimezone(tz)
    return render(
        "status.html",
        site=site,
        refresh=REFRESH_S,
        incidents=sorted(incidents, key=lambda i: (i.priority or "P9", i.id or 0)),
        maintenance=[
            (window, _scope(window), end.astimezone(tz).strftime(TIME_FORMAT))
            for window, end in maintenance
        ],
        results=shown,
        matched=matched,
        heading=(
            f"{counted(len(everything), 'check')} on {counted(targets, 'target')}, {failing} not ok"
        ),
        waiting=waiting_text(first_runs),
        describe=describe,
        local_time=lambda at: "-" if at is None else at.astimezone(tz).strftime(TIME_FORMAT),
        # One zone for every time on the page, named once: the site's
        zone=f"{tz} ({moment.strftime('%Z')})" if str(tz) != moment.strftime("%Z") else str(tz),
        rendered=moment.strftime("%Y-%m-%d %H:%M:%S"),
    )


def waiting_text(first_runs: Sequence[float]) -> str:
    """What to say while checks have not reported yet, or nothing."""
    if not first_runs:
        return ""
    soonest, latest = math.ceil(min(first_runs)), math.ceil(max(first_runs))
    said = f"{counted(len(first_runs), 'check')} not run yet since the start: "
    if latest == soonest:
        return said + f"results in {latest} s."
    return said + f"first results in {soonest} s, all within {latest} s."


def page_response(html: str) -> Response:
    """A rendered page as an HTTP answer, with the page's Content-Security-Policy."""
    return Response(
        200, html.encode(), "text/html; charset=utf-8", {"Content-Security-Policy": STATUS_CSP}
    )
