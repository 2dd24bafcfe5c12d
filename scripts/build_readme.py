#!/usr/bin/env python3
"""Builds README.md from the parts in docs/readme/ (``--check``: fail if it is stale).

The parts stay separate so that each is tested where its examples live (tests load the
config examples of the integration and alert-quality parts as written).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = [
    "intro.md",
    "00-config.md",
    "10-probes-core.md",
    "ssh.md",
    "mail-and-checkins.md",
    "20-rules.md",
    "integrations.md",
    "alertmanager.md",
    "alert-quality.md",
    "audits.md",
    "80-cli-http.md",
    "console.md",
    "85-deploy.md",
    "performance.md",
    "90-not-done.md",
]


def build() -> str:
    texts = [(ROOT / "docs" / "readme" / name).read_text().strip() + "\n" for name in PARTS]
    headings = [h for text in texts[1:] for h in re.findall(r"^## (.+)$", text, re.M)]
    contents = "## Contents\n\n" + "".join(f"- [{h}](#{_anchor(h)})\n" for h in headings)
    intro, rest = texts[0], texts[1:]
    return "\n".join([intro, contents, *rest])


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
