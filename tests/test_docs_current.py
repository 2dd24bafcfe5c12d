"""The reader docs in docs/ say what the code does: generated parts are regenerated and
compared, links point at files that exist, and the audit picture is a real, small PNG."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
READER_DOCS = ["ops.md", "config.md", "helpdesk.md", "audits.md", "integrations.md"]


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_config_reference_matches_the_config_models() -> None:
    done = _run("build_config_doc.py")
    assert done.returncode == 0, done.stderr


def test_the_sample_ticket_is_what_the_renderer_writes_today() -> None:
    done = _run("build_ticket_sample.py")
    assert done.returncode == 0, done.stderr


def test_the_config_reference_names_every_probe_and_integration_kind() -> None:
    import integrations
    import probes

    text = (DOCS / "config.md").read_text()
    for kind in [*probes.kinds(), *integrations.kinds()]:
        assert f"### `{kind}`" in text, kind


@pytest.mark.parametrize("name", READER_DOCS)
def test_relative_links_in_the_reader_docs_point_at_files_that_exist(name: str) -> None:
    text = (DOCS / name).read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (DOCS / target).resolve().exists(), f"{name} links to missing {target}"


def test_the_audit_sample_picture_is_a_png_small_enough_to_mail() -> None:
    picture = DOCS / "img" / "audit-sample.png"
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(data) <= 300 * 1024
