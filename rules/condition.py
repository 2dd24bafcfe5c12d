"""Rule conditions: a small grammar, parsed once at load time and never ``eval``ed.

    when: "used_percent >= 90 and free_bytes < 5GB"
    when: "failed and reason not in ('slow', 'cert_expiring')"
    when: "error or (latency_s > 2s and not ok)"

Keywords ``ok``, ``failed``, ``error`` and ``failing`` (failed or error) test the status.
Other names are the result's metrics, its labels (``path``) and ``status``, ``reason``,
``message``, ``kind``, ``probe``, ``target``. Numbers may carry units (``5GB``, ``500ms``).

Evaluation is three-valued: a metric the result does not carry, or a status question put
to a result whose probe could not tell (``error``), is *unknown*. Unknown neither starts
nor clears an incident, so a probe that cannot reach its target does not resolve one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes.base import Result
from watcher.core.durations import parse_quantity

__all__ = ["Condition", "ConditionError", "parse_condition", "STATUS_WORDS", "RESULT_FIELDS"]

STATUS_WORDS = frozenset({"ok", "failed", "error", "failing"})
RESULT_FIELDS = frozenset({"status", "reason", "message", "kind", "probe", "target", "duration_s"})
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}


class ConditionError(ValueError):
    """A condition that does not parse; ``column`` points into the condition text."""

    def __init__(self, message: str, column: int, text: str) -> None:
        self.column = column
        self.text = text
        pointer = " " * column + "^"
        super().__init__(f"{message}\n      {text}\n      {pointer}")
        self.short = message


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[A-Za-z]*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|=~|!~|<|>|=|\(|\)|,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ConditionError(f"unexpected character {text[pos]!r}", pos, text)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


Value = float | str | bool
Truth = bool | None  # None: unknown


def _and(values: list[Truth]) -> Truth:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values: list[Truth]) -> Truth:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


@dataclass(frozen=True)
class Condition:
    """A parsed condition: evaluate it against a Result."""

    text: str
    _eval: Callable[[Result], Truth]
    names: frozenset[str]

    def evaluate(self, result: Result) -> Truth:
        return self._eval(result)

    def __str__(self) -> str:
        return self.text


def _lookup(result: Result, name: str) -> Value | None:
    if name in result.metrics:
        return result.metrics[name]
    if name in result.labels:
        return result.labels[name]
    if name == "status":
        return result.status
    if name == "reason":
        return result.reason
    if name == "message":
        return result.message
    if name == "kind":
        return result.kind
    if name == "probe":
        return result.probe
    if name == "target":
        return result.target
    if name == "duration_s":
        return result.duration_s
    return None


def _status_word(word: str) -> Callable[[Result], Truth]:
    def check(result: Result) -> Truth:
        if word == "failing":
            return result.status != "ok"
        if word == "error":
            return result.status == "error"
        if result.status == "error":
            return None  # the probe could not tell whether it is ok or failed
        return result.status == ("ok" if word == "ok" else "fail")

    return check


def _compare(op: str, left: Value, right: Value | list[Value]) -> Truth:
    if op in ("in", "not in"):
        assert isinstance(right, list)
        found = any(_equal(left, item) for item in right)
        return found if op == "in" else not found
    assert not isinstance(right, list)
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in ("=~", "!~"):
        found = re.search(str(right), str(left)) is not None
        return found if op == "=~" else not found
    if not isinstance(left, (int, float)) or not isinstance(right, (int, float)):
        return None
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _equal(left: Value, right: Value) -> bool:
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return float(left) == float(right)
    return str(left) == str(right)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.names: set[str] = set()

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "name" and tok.text.lower() in words

    def fail(self, message: str, tok: _Tok | None = None) -> ConditionError:
        tok = tok or self.peek()
        return ConditionError(message, tok.pos, self.text)

    def parse(self) -> Callable[[Result], Truth]:
        if self.peek().kind == "end":
            raise self.fail("the condition is empty; write e.g. failed, or used_percent >= 90")
        node = self.parse_or()
        if self.peek().kind != "end":
            tok = self.peek()
            hint = " (join conditions with and / or)" if tok.kind in ("name", "number") else ""
            raise self.fail(f"unexpected {tok.text!r}{hint}")
        return node

    def parse_or(self) -> Callable[[Result], Truth]:
        parts = [self.parse_and()]
        while self.word("or"):
            self.take()
            parts.append(self.parse_and())
        if len(parts) == 1:
            return parts[0]

        def either(r: Result) -> Truth:
            return _or([f(r) for f in parts])

        return either

    def parse_and(self) -> Callable[[Result], Truth]:
        parts = [self.parse_not()]
        while self.word("and"):
            self.take()
            parts.append(self.parse_not())
        if len(parts) == 1:
            return parts[0]

        def both(r: Result) -> Truth:
            return _and([f(r) for f in parts])

        return both

    def parse_not(self) -> Callable[[Result], Truth]:
        if self.word("not"):
            self.take()
            inner = self.parse_not()

            def negate(r: Result) -> Truth:
                value = inner(r)
                return None if value is None else not value

            return negate
        return self.parse_atom()

    def parse_atom(self) -> Callable[[Result], Truth]:
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.take()
            node = self.parse_or()
            if not (self.peek().kind == "op" and self.peek().text == ")"):
                raise self.fail("missing ')'")
            self.take()
            return node
        if tok.kind != "name" or tok.text.lower() in _KEYWORDS:
            raise self.fail(
                f"expected a status word or a metric name, found {tok.text or 'the end'!r}"
            )
        self.take()
        name = tok.text
        op = self.operator()
        if op is None:
            if name.lower() in STATUS_WORDS:
                return _status_word(name.lower())
            raise self.fail(
                f"{name!r} alone is not a condition; compare it (e.g. {name} > 0) "
                "or use ok, failed, error, failing",
                tok,
            )
        if name.lower() in STATUS_WORDS:
            raise self.fail(
                f"{name!r} is a status word and cannot be compared; compare status == 'fail'", tok
            )
        right = self.values() if op in ("in", "not in") else self.value(op)
        self.names.add(name)
        if op in ("=~", "!~"):
            assert isinstance(right, str)
            try:
                re.compile(right)
            except re.error as exc:
                raise self.fail(f"bad regular expression: {exc}", tok) from None

        def compare(r: Result) -> Truth:
            left = _lookup(r, name)
            if left is None:
                return None
            return _compare(op, left, right)

        return compare

    def operator(self) -> str | None:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("==", "!=", "<", "<=", ">", ">=", "=~", "!~"):
            self.take()
            return tok.text
        if self.word("in"):
            self.take()
            return "in"
        if (
            self.word("not")
            and self.tokens[self.i + 1].kind == "name"
            and self.tokens[self.i + 1].text.lower() == "in"
        ):
            self.i += 2
            return "not in"
        if tok.kind == "op" and tok.text == "=":
            raise self.fail("use == to compare")
        return None

    def value(self, op: str) -> Value:
        tok = self.take()
        if tok.kind == "number":
            try:
                return parse_quantity(tok.text)
            except ValueError as exc:
                raise self.fail(str(exc), tok) from None
        if tok.kind == "string":
            body = tok.text[1:-1]
            return re.sub(r"\\(.)", r"\1", body)
        if tok.kind == "name" and tok.text.lower() in ("true", "false"):
            return tok.text.lower() == "true"
        raise self.fail(f"expected a number or a 'quoted string' after {op}", tok)

    def values(self) -> list[Value]:
        if not (self.peek().kind == "op" and self.peek().text == "("):
            raise self.fail("expected a list after in, like ('a', 'b')")
        self.take()
        items = [self.value("in")]
        while self.peek().kind == "op" and self.peek().text == ",":
            self.take()
            items.append(self.value("in"))
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            raise self.fail("missing ')' after the list")
        self.take()
        return items


def parse_condition(text: Any) -> Condition:
    if isinstance(text, bool) or not isinstance(text, str):
        raise ConditionError('write the condition as text, e.g. "failed"', 0, str(text))
    parser = _Parser(text)
    evaluate = parser.parse()
    return Condition(text=text, _eval=evaluate, names=frozenset(parser.names))
