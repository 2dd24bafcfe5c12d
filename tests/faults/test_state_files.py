"""State files watcher must not use: another program's database, a newer watcher's, a
damaged file, a directory, a file another watcher runs on through a link. Each is refused
by a real ``watcher run`` with exit 2 and one line naming the file, and left as it was."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers.base import free_port
from tests.support.daemon import Daemon
from tests.support.helpers import write_config
from watcher.store import MIGRATIONS, SCHEMA_VERSION, Store, _statements
from watcher.store.sqlite_file import APPLICATION_ID


def _config(directory: Path, state: str, *, listen: int | None = None) -> Path:
    return write_config(
        directory,
        f"""
        site: acme
        state: {state}
        listen: {f"127.0.0.1:{listen}" if listen else "null"}
        defaults: {{interval: 1s, timeout: 1s}}
        targets:
          - name: shop
            probes: [{{tcp: {{host: 127.0.0.1, port: {free_port()}}}}}]
        """,
        name=f"watcher-{state.replace('/', '-')}.yml",
    )


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
    )


def _fingerprint(path: Path) -> str:
    if path.is_dir():
        return "dir:" + ",".join(sorted(os.listdir(path)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _watcher_db(path: Path) -> None:
    store = Store(path)
    store.set_meta("site", "acme")
    store.close()


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER);"
        "INSERT INTO customers (name) VALUES ('acme');"
    )
    db.close()


def _foreign_with_incidents(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE incidents (id INTEGER PRIMARY KEY, title TEXT, severity INTEGER);"
        "INSERT INTO incidents (title, severity) VALUES ('printer on fire', 1);"
    )
    db.close()


def _foreign_marked(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript("PRAGMA application_id=1195461700; CREATE TABLE layers (name TEXT);")
    db.close()


def _newer(path: Path) -> None:
    _watcher_db(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 3}")
    db.close()


def _truncated(path: Path) -> None:
    _watcher_db(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


def _truncated_at_a_page(path: Path) -> None:
    _watcher_db(path)
    data = path.read_bytes()
    path.write_bytes(data[: 4096 * 2])


def _junk(path: Path) -> None:
    path.write_bytes(os.urandom(12288))


def _overwritten(path: Path) -> None:
    path.write_text("site: acme\nstate: watcher.db\n")


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("kept\n")


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "another program's database": (_foreign, "another program's SQLite database"),
    "another program's database with an incidents table": (
        _foreign_with_incidents,
        "another program's SQLite database",
    ),
    "a database marked as another program's": (_foreign_marked, "application id"),
    "a newer watcher's database": (_newer, "newer watcher"),
    "a truncated database": (_truncated, "truncated"),
    "a database truncated at a page boundary": (_truncated_at_a_page, "truncated"),
    "a file of junk": (_junk, "not a SQLite database"),
    "a file overwritten with text": (_overwritten, "not a SQLite database"),
    "a directory": (_directory, "is a directory"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_watcher_run_refuses_a_state_file_that_is_not_its_own_and_leaves_it_untouched(
    tmp_path: Path, case: str
) -> None:
    make, says = CASES[case]
    state = tmp_path / "state.db"
    make(state)
    before = _fingerprint(state)
    beside_before = sorted(p.name for p in tmp_path.iterdir())

    done = _run(_config(tmp_path, "state.db"), "run")

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert "state.db" in lines[0] and says in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    assert _fingerprint(state) == before
    beside = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".yml"))
    assert beside == [n for n in beside_before if not n.endswith(".yml")]  # no -wal, -shm, .lock


def test_a_damaged_state_file_is_refused_with_how_to_recover(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    _truncated(state)
    done = _run(_config(tmp_path, "state.db"), "run")
    assert done.returncode == 2
    assert "restore it from a backup" in done.stderr and "move it aside" in done.stderr
    assert "adopted by fingerprint" in done.stderr


def test_the_incidents_command_refuses_another_programs_database_untouched(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    _foreign_with_incidents(state)
    before = _fingerprint(state)
    done = _run(_config(tmp_path, "state.db"), "incidents", "list", "--json")
    assert done.returncode == 2 and "another program's SQLite database" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _fingerprint(state) == before and not (tmp_path / "state.db-wal").exists()


def test_a_state_file_from_before_watcher_marked_its_files_opens_migrates_and_is_marked(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    db = sqlite3.connect(state, isolation_level=None)
    for number in range(5):  # as the watcher before two-phase delivery wrote it
        for statement in _statements(MIGRATIONS[number]):
            db.execute(statement)
    db.execute("PRAGMA user_version=5")
    db.execute("INSERT INTO meta (key, value) VALUES ('kept', 'yes')")
    db.close()
    port = free_port()
    daemon = Daemon(_config(tmp_path, "state.db", listen=port), port).start()
    assert daemon.stop() == 0
    db = sqlite3.connect(state)
    try:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT value FROM meta WHERE key='kept'").fetchall() == [("yes",)]
    finally:
        db.close()


def test_a_new_state_file_is_marked_as_watchers(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    _watcher_db(state)
    db = sqlite3.connect(state)
    try:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        db.close()


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_second_watcher_on_a_link_to_a_running_watchers_state_is_refused(
    tmp_path: Path, link: str
) -> None:
    port = free_port()
    first = Daemon(_config(tmp_path, "state.db", listen=port), port).start()
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        linked = elsewhere / "other.db"
        if link == "symlink":
            linked.symlink_to(tmp_path / "state.db")
        else:
            os.link(tmp_path / "state.db", linked)

        done = _run(_config(elsewhere, "other.db", listen=free_port()), "run")

        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "another watcher is running on" in lines[0], done.stderr
        assert "other.db" in lines[0]
        assert not (elsewhere / "other.db-wal").exists()
        assert first.get("/healthz")[0] == 200
    finally:
        assert first.stop() == 0
