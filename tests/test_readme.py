"""README.md is for a new user: built from docs/readme/, short, its links and those of the
reader docs in docs/ resolve (file and #anchor), and the `watcher validate` output it shows
is what validate prints."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_built_from_its_parts() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_readme.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text


def test_readme_is_under_15_kb() -> None:
    assert len(README.read_bytes()) < 15 * 1024


def test_every_doc_says_who_it_is_for() -> None:
    for page in PAGES[1:]:
        text = re.sub(r"<!--.*?-->\n*", "", page.read_text(), flags=re.S)
        title, opening = text.split("\n\n", 2)[:2]
        assert title.startswith("# "), page.name
        assert re.search(r"\bfor\b", title + " " + opening, re.I), page.name


def _prose(text: str) -> str:
    """The text outside fenced code blocks, where a `#` line is a comment, not a heading."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -N on repeats."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves_to_a_file_and_its_anchor(page: Path) -> None:
    for link in re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text())):
        if "://" in link or link.startswith("mailto:"):
            continue
        name, _, anchor = link.partition("#")
        target = (page.parent / name).resolve() if name else page
        assert target.exists(), f"{page.name} links to missing {name}"
        if anchor:
            assert anchor in _anchors(target), f"{page.name} links to missing {link}"


def _validate_blocks() -> list[str]:
    blocks = re.findall(r"```sh\n(\$ \.venv/bin/watcher validate .*?)```", README.read_text(), re.S)
    assert len(blocks) == 2  # the shipped watcher.yml, then with a first rule override
    return blocks


def test_the_validate_output_the_tour_shows_is_what_validate_prints(tmp_path: Path) -> None:
    plain, overridden = _validate_blocks()
    shutil.copy(ROOT / "watcher.yml", tmp_path / "watcher.yml")
    override = re.search(r"Write `site-rules.yml`:\n\n```yaml\n(.*?)```", README.read_text(), re.S)
    assert override is not None
    (tmp_path / "site-rules.yml").write_text(override.group(1))
    for block, rules in ((plain, "[default]"), (overridden, "[default, site-rules.yml]")):
        config = (ROOT / "watcher.yml").read_text().replace("rules: [default]", f"rules: {rules}")
        (tmp_path / "watcher.yml").write_text(config)
        done = subprocess.run(
            [str(Path(sys.executable).parent / "watcher"), "validate", "-c", "watcher.yml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        printed = (done.stdout + done.stderr).replace(str(ROOT / "rules") + "/", "rules/")
        shown = block.split("\n", 1)[1]
        assert printed.strip() == shown.strip()
