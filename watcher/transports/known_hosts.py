"""known_hosts as OpenSSH reads it: plain, hashed (``|1|``) and wildcard host patterns,
``@revoked`` keys, and the ``SHA256:`` fingerprints ``ssh-keygen -l`` prints."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko

__all__ = ["KnownHostsEntry", "fingerprint", "host_matches", "known_hosts_name", "matching_entries"]

log = logging.getLogger("watcher.ssh")


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The host field OpenSSH writes in known_hosts: brackets only for a port other than 22."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass
class KnownHostsEntry:
    key: paramiko.PKey
    lineno: int
    revoked: bool = False


def matching_entries(path: Path | None, name: str) -> list[KnownHostsEntry]:
    """known_hosts entries for ``name``: plain, hashed (``|1|``) and wildcard patterns.

    Read line by line so one malformed line does not hide the rest. ``@revoked`` lines
    come back marked, to be refused; ``@cert-authority`` lines are skipped (paramiko does
    not verify host certificates).
    """
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return []
    found = []
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        revoked = text.startswith("@revoked ")
        if revoked:
            text = text.removeprefix("@revoked ").strip()
        if not text or text.startswith(("#", "@")):
            continue
        fields = text.split()
        if len(fields) < 3 or not host_matches(fields[0], name):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(" ".join(fields[:3]), lineno)
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            entry = None
        if entry is None or entry.key is None:
            log.warning("%s line %d: cannot read this host key, skipped", path, lineno)
            continue
        found.append(KnownHostsEntry(entry.key, lineno, revoked))
    return found


def host_matches(patterns: str, name: str) -> bool:
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            hit = paramiko.HostKeys.hash_host(name, pattern) == pattern
        else:
            # Only * and ? are wildcards in known_hosts; [host]:port brackets are literal.
            regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
            hit = re.fullmatch(regex, name, re.IGNORECASE) is not None
        if hit and negated:
            return False
        matched = matched or hit
    return matched
