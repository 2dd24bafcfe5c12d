"""Hostile text for escaping tests: markup, both quotes, an ampersand and long unicode.

``Poisoner`` puts a different hostile value into every text field of a dataclass tree (an
audit, an incident, a result), so a test can check that each one reaches the page only in
its escaped form, including fields added after the test was written.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from markupsafe import escape

# What a probe, a target or a file name on a target could say (short enough for a
# maintenance window's 100-character name), and a long tail of letters from several
# scripts that checks nothing cuts or mangles multi-byte text.
HOSTILE = "<script>alert(1)</script>\"'& &amp;<img src=x onerror=alert(2)>"
LONG = " Ünïcødé ✓ 日本語 Ελληνικά עברית 🚨" * 8


class Poisoner:
    """Replaces each text field with ``HOSTILE``, ``LONG`` and a marker of its own (``~n~``)."""

    def __init__(self, keep: frozenset[str] = frozenset()) -> None:
        self.keep = keep  # field names left alone (a timezone name must still resolve)
        self.values: dict[str, tuple[str, str]] = {}  # marker -> ("Class.field", value)

    def text(self, where: str, *, long: bool = True) -> str:
        """A new hostile value for ``where``; ``long=False`` keeps it under 100 characters."""
        marker = f"~{len(self.values)}~"
        value = f"{HOSTILE}{LONG if long else ''}{marker}"
        self.values[marker] = (where, value)
        return value

    def poison(self, value: Any, where: str = "") -> Any:
        if isinstance(value, str):
            return self.text(where)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {
                f.name: self.poison(getattr(value, f.name), f"{type(value).__name__}.{f.name}")
                for f in dataclasses.fields(value)
                if f.init and f.name not in self.keep
            }
            return dataclasses.replace(value, **changes)
        if isinstance(value, list):
            return [self.poison(item, where) for item in value]
        if isinstance(value, tuple):
            return tuple(self.poison(item, where) for item in value)
        if isinstance(value, dict):
            return {key: self.poison(item, f"{where}[{key}]") for key, item in value.items()}
        return value

    def shown(self, page: str) -> set[str]:
        """The fields whose value is on ``page``; asserts each shows only escaped, whole."""
        seen = set()
        for marker, (where, value) in self.values.items():
            found = page.count(marker)
            if found:
                whole = page.count(str(escape(value)))
                assert whole == found, f"{where} is on the page {found - whole} time(s) unescaped"
                seen.add(where)
        return seen


# Asked of a hostile page in Chromium: nothing in it may have become an element or an
# attribute, and the hostile text must be there as text.
DOM_QUESTIONS = {
    "scripts": "document.querySelectorAll('script').length",
    "images": "document.querySelectorAll('img').length",
    "handlers": (
        "[...document.querySelectorAll('*')]"
        ".filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length"
    ),
    "as_text": (
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.childElementCount === 0 && e.textContent.includes("
        + json.dumps(HOSTILE)
        + ")).length"
    ),
    "in_attributes": (
        "[...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => "
        "a.value.includes(" + json.dumps(HOSTILE) + "))).length"
    ),
}
