"""A string type for passwords, tokens and keys whose printable forms are masked."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

from pydantic_core import core_schema

__all__ = ["Secret", "protect_basic_auth", "protect_url", "registered_secrets", "redact"]

# Every secret value ever constructed, so that text leaving the process (logs, tickets,
# evidence, error messages) can be scrubbed even when a secret slipped into it by accident,
# e.g. a server echoing a password back in an error body.
_SECRETS: set[str] = set()


class Secret:
    """Holds a sensitive string. ``str()`` and ``repr()`` never show it; ``reveal()`` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 4:
            _SECRETS.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: str(s)),
            json_schema_input_schema=core_schema.str_schema(),
        )

    @classmethod
    def _validate(cls, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError('expected a string (write it as "${ENV_VAR}")')
        return cls(value)


def registered_secrets() -> frozenset[str]:
    return frozenset(_SECRETS)


# Query parameters that carry credentials by their name: ?api_key=, ?access_token=, ?sig=
_CREDENTIAL_PARAM = re.compile(
    r"(?i)^(?:(?:api|access|auth|app|client|private|session|x)[_.-]?)?"
    r"(?:token|key|secret|password|passwd|pass|pwd|sig|signature|auth)$"
)
# Shorter query values (?auth=basic, ?key=id) are more likely words than credentials:
# registering them would mask the word everywhere.
_MIN_QUERY_SECRET = 6
# A path piece that looks like a token (letters and digits, 8 or more): /services/T0/B0/XyZ123...
_TOKENISH = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[^\s]{8,}$")
# user:password@ in any URL, wherever it turns up (a library's exception, a redirect)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@")


def protect_url(url: str, *, path_tokens: bool = False) -> str:
    """Registers the credentials a configured URL carries as secrets, and returns it.

    A URL is a plain string in the config, yet ``https://user:${PW}@host`` or
    ``?api_key=${KEY}`` puts a secret into it, and every message that names the URL (an
    HTTP status, a ``requests`` exception) would carry it. The password, credential-named
    query values and, with ``path_tokens`` (webhook URLs), token-like path pieces are
    masked by :func:`redact` from then on, both as written and decoded.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url  # not a URL: the field's own validation says so
    pieces = [password or ""]
    if password:
        # an HTTP client turns user:password@ into an Authorization: Basic header
        protect_basic_auth(unquote(parts.username or ""), unquote(password))
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if (
            _CREDENTIAL_PARAM.match(unquote_plus(name))
            and len(unquote_plus(value)) >= _MIN_QUERY_SECRET
        ):
            pieces += [value, unquote_plus(value)]
    if path_tokens:
        pieces += [p for p in parts.path.split("/") if _TOKENISH.match(unquote(p))]
    for piece in pieces:
        for form in {piece, unquote(piece)}:
            if form:
                Secret(form)
    return url


def protect_basic_auth(user: str, password: str) -> None:
    """Registers the ``Authorization: Basic`` value a user and password make as a secret.

    The header carries the password only base64-encoded, so a server or proxy that echoes
    request headers (into a body, an error page, the evidence of a check) would show a
    value that masking the password alone does not catch.
    """
    if not password:
        return
    for encoding in ("utf-8", "latin-1"):  # requests encodes latin-1, http.client utf-8
        try:
            pair = f"{user}:{password}".encode(encoding)
        except UnicodeEncodeError:
            continue
        Secret(base64.b64encode(pair).decode("ascii"))


def redact(text: str) -> str:
    """Replaces every known secret value in ``text``, and any URL's password, with asterisks."""
    if not text:
        return text
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(r"\1********@", text)
    if not _SECRETS:
        return text
    for value in sorted(_SECRETS, key=len, reverse=True):
        if value in text:
            text = text.replace(value, "********")
    return _mask_cut_ends(text)


# A secret's piece at a cut edge is masked when it is this long and not only letters:
# shorter pieces, and words ("password" at the start of a message), are too likely text.
_MIN_PIECE = 8


def _mask_cut_ends(text: str) -> str:
    """Masks a secret that a length cap cut before the text got here: its start at the
    very end of the text (``body[:300]``), or its end at the very start (``text[-200:]``)."""
    for value in _SECRETS:
        if len(value) <= _MIN_PIECE or not text:
            continue
        if text[-1] in value:
            for size in range(len(value) - 1, _MIN_PIECE - 1, -1):
                if text.endswith(value[:size]) and not value[:size].isalpha():
                    text = text[:-size] + "********"
                    break
        if text[0] in value:
            for size in range(len(value) - 1, _MIN_PIECE - 1, -1):
                if text.startswith(value[-size:]) and not value[-size:].isalpha():
                    text = "********" + text[size:]
                    break
    return text
