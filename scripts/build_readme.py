#!/usr/bin/env python3
"""Builds README.md from the parts in docs/readme/ (``--check``: fail if it is stale).

README.md is for a new user and stays short (a test keeps it under 15 KB); everything
else lives in the reader docs under docs/, which the README links to.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ["intro.md", "tour.md", "next.md"]


def build() -> str:
    text = "\n".join((ROOT / "docs" / "readme" / name).read_text().strip() + "\n" for name in PARTS)
    headings = re.findall(r"^## (.+)$", text, re.M)
    contents = "## Contents\n\n" + "".join(f"- [{h}](#{_anchor(h)})\n" for h in headings)
    # the contents go after the opening, before the first section
    opening, rest = text.split("\n## ", 1)
    return "\n".join([opening, contents, "## " + rest])


def _anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def main() -> int:
    readme = ROOT / "README.md"
    text = build()
    if "--check" in sys.argv:
        if readme.read_text() != text:
            print("README.md is stale: run scripts/build_readme.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
