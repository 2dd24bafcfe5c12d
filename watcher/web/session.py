"""Console logins: the API token exchanged for a session cookie, with CSRF tokens.

A login posts the API token (compared in constant time); the session it opens is a random
id kept only in this process's memory, with an expiry, so a restart logs everyone out and
nothing about sessions reaches the state file. Each session carries its own CSRF token,
which every form repeats in a hidden field and every POST must echo. Failed logins from
one client are throttled.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from watcher.core.secret import Secret

__all__ = ["COOKIE", "Session", "Sessions", "Throttled"]

COOKIE = "watcher_session"
SESSION_TTL = 12 * 3600.0
# Failed logins a client may make per window before it must wait.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
# Sessions kept at once; the oldest goes first when a new one would pass it.
MAX_SESSIONS = 1000


class Throttled(Exception):
    """Too many failed logins from one client: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {int(retry_after) + 1} s")
        self.retry_after = retry_after


@dataclass
class Session:
    id: str
    csrf: str
    expires: float
    client: str


class Sessions:
    """Sessions in memory, keyed by their random id; the clock is injectable for tests."""

    def __init__(
        self,
        token: Secret | None | Callable[[], Secret | None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A getter follows config reloads: a changed api_token takes effect for new logins.
        self._token = token if callable(token) else (lambda: token)
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def login(self, given: str, client: str) -> Session | None:
        """A new session if ``given`` is the API token; None if not; Throttled if the
        client failed too often lately (checked before the token, so guessing is slow)."""
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if t > now - FAILURE_WINDOW]
            self._failures[client] = recent
            if len(recent) >= MAX_FAILURES:
                raise Throttled(recent[0] + FAILURE_WINDOW - now)
        token = self._token()
        if not token or not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
            with self._lock:
                if client not in self._failures and len(self._failures) >= MAX_SESSIONS * 10:
                    # Bounded memory whatever the number of addresses guessing: the
                    # oldest-remembered client is forgotten first.
                    del self._failures[next(iter(self._failures))]
                self._failures.setdefault(client, []).append(now)
            return None
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + SESSION_TTL, client
        )
        with self._lock:
            self._failures.pop(client, None)
            self._expire(now)
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown or expired)."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.expires <= self.clock():
                self._sessions.pop(session_id, None)
                return None
            return session

    def logout(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


def cookie_value(header: str | None) -> str | None:
    """The session id from a Cookie header, if it has one."""
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def set_cookie(session_id: str, *, secure: bool, clear: bool = False) -> str:
    """The Set-Cookie value: HttpOnly, SameSite=Strict, the whole site's path."""
    parts = [f"{COOKIE}={'' if clear else session_id}", "HttpOnly", "SameSite=Strict", "Path=/"]
    parts.append("Max-Age=0" if clear else f"Max-Age={int(SESSION_TTL)}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
