"""pytest plugin with the real-server fixtures; load with
``pytest_plugins = ["tests.servers.fixtures"]`` in the top-level conftest.

Every fixture stops what it started in its teardown (also when the test fails), and
``pytest_sessionfinish`` runs :func:`base.cleanup_all` as a second net, so no server, mount,
namespace or temp dir outlives the session. Servers left by an earlier session that was
killed outright are reaped at session start.
"""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .base import cleanup_all, make_workdir, reap_stale_servers
from .certs import TestPKI, make_test_pki
from .disk import SmallFs
from .httpd import HTTPTestServer
from .mail import MailServer, SmtpSink
from .postgres import PostgresServer
from .prometheus import BlackboxExporter, Prometheus
from .redmine import Redmine
from .rt import RequestTracker
from .sshd import (
    BastionPair,
    ClientKeys,
    Sshd,
    TestUser,
    cleanup_stale_namespaces,
    ensure_test_user,
    make_client_keys,
    namespaces_available,
)

# --------------------------------------------------------------------------- session hooks


def _sigterm_to_keyboard_interrupt(signum: int, frame: object) -> None:
    # A CI job timeout sends SIGTERM; as KeyboardInterrupt pytest still runs the fixture
    # teardowns, so the servers get stopped instead of orphaned.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session: pytest.Session) -> None:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_keyboard_interrupt)
    # A session killed with SIGKILL (OOM, CI cancel) could not clean up; do it now.
    reaped = reap_stale_servers()
    if namespaces_available():
        cleanup_stale_namespaces()
    if reaped:
        print(
            f"\ntests/servers: cleaned up after a killed session: {'; '.join(reaped)}",
            file=sys.stderr,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    errors = cleanup_all()
    if errors:
        warnings.warn("server cleanup problems: " + "; ".join(errors), stacklevel=1)


# --------------------------------------------------------------------------- certificates / HTTP


@pytest.fixture(scope="session")
def test_pki() -> TestPKI:
    """A test CA with valid, expired and self-signed certs for 127.0.0.1/localhost.

    ``test_pki.ca.cert_path`` is the file to pass as cafile/verify=.
    """
    return make_test_pki(make_workdir("pki"))


@pytest.fixture
def http_server() -> Iterator[HTTPTestServer]:
    """A running plain-HTTP HTTPTestServer (default answer: 200 "OK")."""
    server = HTTPTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def https_server(test_pki: TestPKI) -> Iterator[HTTPTestServer]:
    """A running HTTPS HTTPTestServer whose certificate is signed by ``test_pki.ca``."""
    server = HTTPTestServer(tls=test_pki.valid).start()
    yield server
    server.stop()


@pytest.fixture
def http_server_factory() -> Iterator[Callable[..., HTTPTestServer]]:
    """``make(tls=None|CertPair, port=None, default=None)`` -> a started HTTPTestServer."""
    servers: list[HTTPTestServer] = []

    def make(**kwargs: Any) -> HTTPTestServer:
        server = HTTPTestServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.stop()


# --------------------------------------------------------------------------- SSH


@pytest.fixture(scope="session")
def ssh_test_user() -> TestUser:
    """The unprivileged login user (``watchertest``) every test sshd accepts."""
    return ensure_test_user()


@pytest.fixture(scope="session")
def ssh_client_keys() -> ClientKeys:
    """ed25519 / ecdsa / rsa / passphrase-protected ed25519 client keys, shared by all sshds."""
    return make_client_keys(make_workdir("ssh-client-keys"))


@pytest.fixture
def sshd(ssh_test_user: TestUser, ssh_client_keys: ClientKeys) -> Iterator[Sshd]:
    """A running OpenSSH server on 127.0.0.1 (fresh per test: tests may kill or re-key it)."""
    server = Sshd(make_workdir("sshd"), user=ssh_test_user, client_keys=ssh_client_keys).start()
    yield server
    server.stop()


@pytest.fixture
def sshd_factory(
    ssh_test_user: TestUser, ssh_client_keys: ClientKeys
) -> Iterator[Callable[..., Sshd]]:
    """``make(extra_config=[...], port=None, start=True)`` -> an Sshd, stopped at teardown."""
    servers: list[Sshd] = []

    def make(*, start: bool = True, **kwargs: Any) -> Sshd:
        server = Sshd(
            make_workdir("sshd"), user=ssh_test_user, client_keys=ssh_client_keys, **kwargs
        )
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def bastion_pair(ssh_test_user: TestUser, ssh_client_keys: ClientKeys) -> Iterator[BastionPair]:
    """``bastion, inner, inner_host, inner_port = bastion_pair``: the inner sshd is reachable
    only through the bastion (network namespace) unless ``bastion_pair.isolated`` is False."""
    pair = BastionPair(make_workdir("bastion"), user=ssh_test_user, client_keys=ssh_client_keys)
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def small_fs() -> Iterator[SmallFs]:
    """An 8 MiB tmpfs mounted at ``small_fs.path``; ``small_fs.fill_to(percent)``."""
    fs = SmallFs(make_workdir("fs") / "mnt").mount()
    yield fs
    fs.unmount()


# --------------------------------------------------------------------------- mail


@pytest.fixture(scope="session")
def mail_server(test_pki: TestPKI) -> Iterator[MailServer]:
    """Postfix + Dovecot, shared by the session (start-up ~1.5 s). Tests that break it
    (stop a daemon, break delivery, swap the cert) should use ``fresh_mail_server``."""
    server = MailServer(make_workdir("mail"), pki=test_pki).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_mail_server(mail_server: MailServer) -> MailServer:
    """The session's mail server, reset: both daemons up, delivery on, valid cert, empty box."""
    return mail_server.reset()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A plain aiosmtpd sink that records messages (``smtp_sink.messages``)."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp_sink_factory(test_pki: TestPKI) -> Iterator[Callable[..., SmtpSink]]:
    """``make(starttls=False, require_starttls=False, auth=None|(user, pw), port=None)``."""
    sinks: list[SmtpSink] = []

    def make(*, starttls: bool = False, **kwargs: Any) -> SmtpSink:
        sink = SmtpSink(tls=test_pki.valid if starttls else None, **kwargs).start()
        sinks.append(sink)
        return sink

    yield make
    for sink in reversed(sinks):
        sink.stop()


# --------------------------------------------------------------------------- Request Tracker


@pytest.fixture(scope="session")
def request_tracker() -> Iterator[RequestTracker]:
    """RT 5 with REST 2, a fresh SQLite DB, CF "Watcher Fingerprint" on queue General
    (~5 s to set up). Shared: give each test its own fingerprint values."""
    rt = RequestTracker(make_workdir("rt")).start()
    yield rt
    rt.stop()


# --------------------------------------------------------------------------- Redmine


@pytest.fixture(scope="session")
def redmine() -> Iterator[Redmine]:
    """Redmine 5 with the REST API on, a fresh SQLite DB, project "ops", custom field
    "Watcher Fingerprint" (~8 s to set up). Shared: give each test its own fingerprints."""
    server = Redmine(make_workdir("redmine")).start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- Prometheus


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., Prometheus]]:
    """``make(["127.0.0.1:PORT"], job="watcher", metrics_path="/metrics")`` -> a started
    Prometheus scraping every 1 s. Its first scrape comes ~5 s after start (a fixed
    target-update delay inside Prometheus 2.42), so prefer one per module."""
    servers: list[Prometheus] = []

    def make(targets: list[str], **kwargs: Any) -> Prometheus:
        prom = Prometheus(make_workdir("prometheus"), targets, **kwargs).start()
        servers.append(prom)
        return prom

    yield make
    for prom in reversed(servers):
        prom.stop()


@pytest.fixture
def blackbox_exporter(test_pki: TestPKI) -> Iterator[BlackboxExporter]:
    """Blackbox exporter trusting ``test_pki.ca`` ."""
    exporter = BlackboxExporter(make_workdir("blackbox"), ca_file=test_pki.ca.cert_path).start()
    yield exporter
    exporter.stop()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """PostgreSQL 15 for the session; ``postgres.new_url()`` is a fresh database."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def state_location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test's state lives, once per backend: a new SQLite file, or a new
    database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return tmp_path / "state" / "watcher.db"
    return request.getfixturevalue("postgres").new_url()
