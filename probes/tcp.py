"""``tcp``: a TCP connect, optionally with TLS, a line sent and a banner expected back."""

from __future__ import annotations

import re
import socket
import ssl
import time
from typing import ClassVar

from pydantic import field_validator

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext, decode_output
from watcher.core.types import check_regex

__all__ = ["TcpProbe", "TcpConfig"]


class TcpConfig(ProbeConfig):
    port: int
    host: str | None = None
    tls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    send: str | None = None
    expect: str | None = None
    read_bytes: int = 4096

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError("a port is between 1 and 65535")
        return value

    @field_validator("expect")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return check_regex(value)


class TcpProbe(Probe):
    kind = "tcp"
    Config = TcpConfig
    metrics: ClassVar[frozenset[str]] = frozenset({"connect_s", "latency_s"})
    config: TcpConfig

    def check(self, ctx: ProbeContext) -> Outcome:
        cfg = self.config
        host = cfg.host or ctx.host or "127.0.0.1"
        where = f"{host}:{cfg.port}"
        started = time.perf_counter()
        deadline = time.monotonic() + ctx.timeout
        try:
            sock = socket.create_connection((host, cfg.port), timeout=ctx.timeout)
        except ConnectionRefusedError:
            return Outcome.fail(f"connection to {where} refused", reason="refused")
        except socket.gaierror as exc:
            return Outcome.fail(f"cannot resolve {host}: {exc.strerror}", reason="dns")
        except TimeoutError:
            return Outcome.fail(
                f"no connection to {where} within {ctx.timeout:.1f}s", reason="timeout"
            )
        except OSError as exc:
            return Outcome.fail(
                f"cannot connect to {where}: {exc.strerror or exc}", reason="refused"
            )
        metrics = {"connect_s": time.perf_counter() - started}
        received = b""
        try:
            if cfg.tls:
                context = ctx.http.ssl_context(verify=cfg.tls_verify, ca_file=cfg.ca_file)
                try:
                    sock = context.wrap_socket(sock, server_hostname=host)
                except ssl.SSLError as exc:
                    return Outcome.fail(
                        f"TLS with {where} failed: {exc}", metrics=metrics, reason="tls"
                    )
            if cfg.send is None and cfg.expect is None:
                metrics["latency_s"] = time.perf_counter() - started
                return Outcome.ok(
                    f"connected to {where} in {metrics['connect_s'] * 1000:.1f} ms", metrics=metrics
                )
            if cfg.send is not None:
                sock.sendall(cfg.send.encode().decode("unicode_escape").encode("latin-1"))
            while cfg.expect is not None and len(received) < cfg.read_bytes:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(cfg.read_bytes - len(received))
                if not chunk:
                    break
                received += chunk
                if re.search(cfg.expect, decode_output(received)):
                    break
        except TimeoutError:
            return Outcome.fail(
                f"{where} sent no matching answer within {ctx.timeout:.1f}s",
                metrics=metrics,
                evidence=decode_output(received),
                reason="timeout",
            )
        except OSError as exc:
            return Outcome.fail(
                f"{where} dropped the connection: {exc}", metrics=metrics, reason="protocol"
            )
        finally:
            sock.close()
        metrics["latency_s"] = time.perf_counter() - started
        text = decode_output(received)
        if cfg.expect is not None and not re.search(cfg.expect, text):
            first = text.splitlines()[0] if text else "nothing"
            return Outcome.fail(
                f"{where} answered {first!r}, expected /{cfg.expect}/",
                metrics=metrics,
                evidence=text,
                reason="content",
            )
        return Outcome.ok(
            f"{where} answered in {metrics['latency_s'] * 1000:.1f} ms",
            metrics=metrics,
            evidence=text,
        )
