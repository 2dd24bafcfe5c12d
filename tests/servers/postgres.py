"""A PostgreSQL 15 server of the test session's own: ``initdb`` as the ``postgres`` user
into a temp dir, listening on 127.0.0.1 at a free port and on a socket in that dir,
stopped at the end. Each test gets a database of its own (``new_url``)."""

from __future__ import annotations

import itertools
import secrets
import shutil
from pathlib import Path

from tests.servers.base import (
    LOOPBACK,
    free_port,
    make_workdir,
    register_cleanup,
    require_binary,
    require_root,
    run,
    unregister_cleanup,
)

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "watcher"


class PostgresServer:
    def __init__(self) -> None:
        require_root("starting PostgreSQL as its own user")
        require_binary(str(BIN / "pg_ctl"))
        self.dir = make_workdir("pg")
        self.data = self.dir / "data"
        self.password = secrets.token_urlsafe(12)
        self.port = free_port()
        self._names = itertools.count(1)
        self._cleanup: int | None = None

    def _as_postgres(self, *argv: str, timeout: float = 120) -> None:
        run(["runuser", "-u", "postgres", "--", *argv], timeout=timeout)

    def start(self) -> PostgresServer:
        if not self.data.exists():
            shutil.chown(self.dir, "postgres")
            pwfile = self.dir / "pw"
            pwfile.write_text(self.password + "\n")
            shutil.chown(pwfile, "postgres")
            self._as_postgres(
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
            )
        self._ctl("start")
        if self._cleanup is None:
            self._cleanup = register_cleanup(self.stop)
        return self

    def _ctl(self, action: str) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={LOOPBACK}"
            # Test data need not survive a power cut: faster databases and commits.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-m",
            "fast",
            "-w",
            action,
        )

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._ctl("stop")
        if self._cleanup is not None:
            unregister_cleanup(self._cleanup)
            self._cleanup = None

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        auth = f"{USER}:{self.password}" if password else USER
        return f"postgresql://{auth}@{LOOPBACK}:{self.port}/{database}"

    def new_url(self) -> str:
        """A new, empty database's URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def sql(self, database_url: str, statement: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []
