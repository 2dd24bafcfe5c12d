"""The one Jinja2 environment behind watcher's HTML: the status page and the audit report.

Templates live in ``watcher/web/templates/`` and ship as package data. Every template escapes
what it prints (names, messages and file names come from targets and probes), and a name
the template does not get is an error at render time, never an empty string.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

__all__ = ["environment", "render"]


@cache
def environment() -> Environment:
    """Built once, on first use: loading templates is the slow part, not rendering."""
    return Environment(
        loader=PackageLoader("watcher.web", "templates"),
        # On for every template, whatever its name ends in: all of them are HTML or SVG.
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # package data: it changes only with the package
    )


def render(name: str, **context: Any) -> str:
    """Renders ``watcher/web/templates/<name>`` with ``context``."""
    return environment().get_template(name).render(**context)
