"""The mail probes against scripted servers that answer without end: what a probe reads
from one connection is capped, whatever the server sends."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from probes.base import ProbeContext, Result, run_probe
from probes.imap import ImapConfig, ImapProbe
from probes.pop3 import Pop3Config, Pop3Probe
from probes.smtp import SmtpConfig, SmtpProbe
from watcher.delivery.httpclient import HttpClients

HTTP = HttpClients()
FLOOD = 8 * 1024 * 1024  # well past the cap, little enough to send in a moment


Script = Callable[[socket.socket, Any], None]


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], int]]:
    """``serve(script)`` -> a port where one connection is handed to ``script``."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def serve(script: Script) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def run() -> None:
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                with conn:
                    script(conn, conn.makefile("rb"))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    yield serve
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


def run(probe: Any, config: Any) -> Result:
    ctx = ProbeContext(
        site="acme", target="mail1", host="127.0.0.1", labels={}, timeout=10.0, http=HTTP
    )
    (result,) = run_probe(probe(config), ctx, probe.kind)
    return result


def lines(prefix: bytes, total: int = FLOOD) -> bytes:
    line = prefix + b"x" * 998 + b"\r\n"
    return line * (total // len(line))


def test_an_smtp_reply_without_end_is_cut_off(scripted: Callable[[Script], int]) -> None:
    def server(conn: socket.socket, reader: Any) -> None:
        conn.sendall(b"220 mail1 ESMTP\r\n")
        reader.readline()  # EHLO
        conn.sendall(lines(b"250-") + b"250 SIZE 1000\r\n")
        reader.readline()  # QUIT, if it comes
        conn.sendall(b"221 bye\r\n")

    r = run(SmtpProbe, SmtpConfig(port=scripted(server)))
    assert (r.status, r.reason) == ("fail", "protocol"), r.message
    assert "in one conversation" in r.message, r.message


def test_imap_untagged_lines_without_end_are_cut_off(scripted: Callable[[Script], int]) -> None:
    def server(conn: socket.socket, reader: Any) -> None:
        conn.sendall(b"* OK IMAP4rev1 ready\r\n")
        tag = reader.readline().split()[0]  # CAPABILITY
        conn.sendall(lines(b"* OK ") + b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
        tag = reader.readline().split()[0]  # LOGOUT
        conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")

    r = run(ImapProbe, ImapConfig(port=scripted(server)))
    assert (r.status, r.reason) == ("fail", "protocol"), r.message
    assert "in one conversation" in r.message, r.message


def test_an_imap_literal_of_any_announced_size_is_not_read(
    scripted: Callable[[Script], int],
) -> None:
    def server(conn: socket.socket, reader: Any) -> None:
        conn.sendall(b"* OK IMAP4rev1 ready\r\n")
        reader.readline()
        conn.sendall(b"* CAPABILITY IMAP4rev1 {100000000000}\r\n" + b"x" * 65536)
        reader.readline()

    r = run(ImapProbe, ImapConfig(port=scripted(server)))
    assert (r.status, r.reason) == ("fail", "protocol"), r.message
    assert "in one conversation" in r.message, r.message


def test_a_pop3_capability_list_without_end_is_cut_off(scripted: Callable[[Script], int]) -> None:
    def server(conn: socket.socket, reader: Any) -> None:
        conn.sendall(b"+OK POP3 ready\r\n")
        reader.readline()  # CAPA
        conn.sendall(b"+OK\r\n" + lines(b"X-") + b"STLS\r\n.\r\n")
        reader.readline()

    r = run(Pop3Probe, Pop3Config(port=scripted(server), starttls=True))
    assert (r.status, r.reason) == ("fail", "protocol"), r.message
    assert "in one conversation" in r.message, r.message
