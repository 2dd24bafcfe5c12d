"""A string type for passwords, tokens and keys whose printable forms are masked."""

from __future__ import annotations

from typing import Any

from pydantic_core import core_schema

__all__ = ["Secret", "registered_secrets", "redact"]

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
            raise ValueError("expected a string (write it as \"${ENV_VAR}\")")
        return cls(value)


def registered_secrets() -> frozenset[str]:
    return frozenset(_SECRETS)


def redact(text: str) -> str:
    """Replaces every known secret value in ``text`` with asterisks."""
    if not text or not _SECRETS:
        return text
    for value in sorted(_SECRETS, key=len, reverse=True):
        if value in text:
            text = text.replace(value, "********")
    return text
