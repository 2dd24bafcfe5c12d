"""The shared template environment: escapes by default, refuses unknown names, and the
templates reach an installed copy of watcher as package data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jinja2 import UndefinedError

import watcher
from watcher.web.templating import environment

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = Path(watcher.__file__).parent / "web" / "templates"
TEMPLATE_NAMES = [
    "charts.html",
    "console_base.html",
    "console_incident.html",
    "console_login.html",
    "console_macros.html",
    "console_missing.html",
    "console_overview.html",
    "console_target.html",
    "report.html",
    "status.html",
]


def test_every_value_a_template_prints_is_escaped() -> None:
    template = environment().from_string('<td title="{{ v }}">{{ v }}</td>')
    page = template.render(v="<script>alert(1)</script>\"'&")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;"
    assert page == f'<td title="{escaped}">{escaped}</td>'


def test_a_name_the_template_was_not_given_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(UndefinedError, match="site"):
        environment().from_string("<h1>{{ site }}</h1>").render()


def test_no_template_turns_escaping_off() -> None:
    names = sorted(p.name for p in TEMPLATES.glob("*.html"))
    assert names == TEMPLATE_NAMES
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert re.search(r"\|\s*safe\b|autoescape\s+false|Markup", text) is None, path.name


def test_a_built_copy_of_watcher_carries_its_templates(tmp_path: Path) -> None:
    """What setuptools copies into a wheel (build_py), run from that copy alone."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("watcher", "probes", "rules", "integrations"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    build = "import sys; from setuptools import setup; sys.argv[1:] = ['-q', 'build_py', '-d', 'out']; setup()"
    subprocess.run(
        [sys.executable, "-c", build], cwd=tmp_path, check=True, capture_output=True, timeout=120
    )
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "watcher" / "web" / "templates").iterdir()) == sorted(
        p.name for p in TEMPLATES.glob("*.html")
    )
    probe = (
        "import json, watcher; from watcher.web.templating import environment; "
        "print(json.dumps([watcher.__file__, sorted(environment().list_templates())]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=out,
        env={"PYTHONPATH": str(out), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    where, listed = json.loads(done.stdout)
    assert Path(where).is_relative_to(out)
    assert listed == TEMPLATE_NAMES
    # the console's stylesheet and script, served from the package
    assert sorted(p.name for p in (out / "watcher" / "web" / "static").iterdir()) == [
        "console.css",
        "console.js",
    ]
