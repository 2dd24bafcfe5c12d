"""pydantic validation errors as ConfigIssues: the file and line of the value, a message a person
reads, the keys allowed there and an example, never a secret value."""

from __future__ import annotations

import reprlib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    Tag,
    ValidationError,
)

import integrations
import probes
from watcher.core.secret import Secret
from watcher.core.yamlsource import (
    MAX_ISSUES,
    ConfigIssue,
    Located,
    did_you_mean,
    format_path,
)


def validation_issues(
    exc: ValidationError, located: Located, root: type[BaseModel]
) -> list[ConfigIssue]:
    issues = []
    errors = exc.errors(include_url=False)
    for error in errors[:MAX_ISSUES]:
        raw_loc = tuple(error["loc"])
        path = _data_path(raw_loc, located.data)
        kind = error["type"]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        hint = ""
        mark = located.mark(path)
        if kind == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            mark = located.mark(path, key=True)
            allowed = _allowed_keys(root, raw_loc[:-1])
            message = f"unknown key {key!r}"
            hint = did_you_mean(key, allowed) if allowed else ""
        elif kind == "missing":
            field_name = str(raw_loc[-1])
            mark = located.mark(path)
            message = f"{field_name!r} is required here"
            path = (*path, field_name) if not path or path[-1] != field_name else path
            hint = _example_for(field_name)
        elif kind == "union_tag_invalid":
            tag = error.get("ctx", {}).get("tag", "?")
            is_probe = "probes" in raw_loc
            choices = probes.kinds() if is_probe else integrations.kinds()
            message = f"unknown {'probe' if is_probe else 'integration'} kind {tag!r}"
            hint = did_you_mean(str(tag), choices) or "known: " + ", ".join(choices)
            mark = located.mark((*path, tag), key=True)
        elif kind == "union_tag_not_found":
            is_probe = "probes" in raw_loc
            what = "probe" if is_probe else "integration"
            message = f"write each {what} as '- kind: {{options}}', one kind per item"
            hint = (
                "e.g. '- http: {url: \"https://example.org\"}'"
                if is_probe
                else "e.g. '- email: {to: [helpdesk@example.org]}'"
            )
        elif kind == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            message = f"{_short(error.get('input'))} is not allowed"
            hint = f"write one of {expected}"
        elif kind.startswith(("int_", "float_", "bool_", "string_", "list_", "dict_", "model_")):
            # A secret in the wrong shape (basic_auth: "${PW}", headers as one string)
            # must not be printed: name what was written, not its value.
            shown = (
                _kind_of(error.get("input"))
                if kind.startswith(("dict_", "model_")) or _holds_secret(_type_at(root, raw_loc))
                else _short(error.get("input"))
            )
            message = f"{message} (got {shown})"
            if kind.startswith("bool"):
                hint = "write true or false"
            elif kind.startswith(("dict_", "model_")):
                hint = "this takes a mapping of key: value lines"
            elif kind.startswith("list_"):
                hint = "this takes a list: [a, b] or '- a' lines"
        issues.append(ConfigIssue(mark, format_path(path), message, hint))
    # A union reports each member's complaint; the deepest path is the useful one.
    paths = {i.path for i in issues}
    deepest = [
        i
        for i in issues
        if not any(
            p != i.path and (p.startswith(i.path + ".") or p.startswith(i.path + "["))
            for p in paths
        )
    ]
    if len(errors) > MAX_ISSUES:
        path = _data_path(tuple(errors[MAX_ISSUES]["loc"]), located.data)
        deepest.append(
            ConfigIssue(
                located.mark(path),
                format_path(path),
                f"and {len(errors) - MAX_ISSUES} more problems from here on",
                "fix the ones above and run watcher validate again",
            )
        )
    return deepest


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def _short(value: Any) -> str:
    # reprlib: an input may be big (a list of ten thousand targets where a string belongs)
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_of(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "true/false"}
    names |= {list: "a list", dict: "a mapping", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _holds_secret(tp: Any, depth: int = 0) -> bool:
    """Whether a value of type ``tp`` is, or contains, a Secret."""
    if tp is None or depth > 8:
        return False
    if tp is Secret:
        return True
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return any(_holds_secret(f.annotation, depth + 1) for f in tp.model_fields.values())
    return any(_holds_secret(arg, depth + 1) for arg in get_args(tp) if not isinstance(arg, str))


def without_env_values(issue: ConfigIssue, located: Located) -> ConfigIssue:
    """The issue with every value ``${VAR}`` gave at, above or below its path replaced by
    what the file wrote: validate must not print a secret that came from the environment."""
    if issue.mark is None or issue.mark.file != located.file:
        return issue
    text, hint = issue.message, issue.hint
    for env_path, (written, value) in located.from_env.items():
        where = format_path(env_path)
        if issue.path and not (
            issue.path == where
            or where.startswith((issue.path + ".", issue.path + "["))
            or issue.path.startswith((where + ".", where + "["))
        ):
            continue
        # the bare value only when long enough not to match inside unrelated words
        pairs = [(repr(value), repr(written))] + ([(value, written)] if len(value) >= 3 else [])
        for form, shown in pairs:
            text, hint = text.replace(form, shown), hint.replace(form, shown)
    if text == issue.message and hint == issue.hint:
        return issue
    return ConfigIssue(issue.mark, issue.path, text, hint)


def _example_for(field_name: str) -> str:
    examples = {
        "site": "site: acme-pune",
        "name": "name: mail1",
        "url": 'url: "https://example.org/health"',
        "when": 'when: "failed" (or a comparison like "used_percent >= 90")',
        "priority": "priority: P2",
        "port": "port: 443",
        "run": 'run: ["systemctl", "is-active", "nginx"]',
    }
    return f"add {examples[field_name]}" if field_name in examples else ""


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Keeps the parts of a pydantic location that exist in the data (dropping union tags
    and member names), plus a final key the data lacks (a missing field)."""
    path: list[Any] = []
    node = data
    for index, part in enumerate(loc):
        if (
            isinstance(node, list)
            and isinstance(part, int)
            and part < len(node)
            or isinstance(node, dict)
            and part in node
        ):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and index == len(loc) - 1:
            path.append(part)
    return tuple(path)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts, for did-you-mean hints."""
    tp, _ = _unwrap(_type_at(root, loc), None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _type_at(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The type declared at a pydantic error location, or None if it cannot be told."""
    tp: Any = root
    for part in loc:
        tp, was_tag = _unwrap(tp, part)
        if tp is None:
            return None
        if was_tag:
            continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(part) or next(
                (f for f in tp.model_fields.values() if f.alias == part), None
            )
            if info is None:
                return None
            tp = info.annotation
        elif get_origin(tp) is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
    return tp


def _unwrap(tp: Any, part: Any) -> tuple[Any, bool]:
    """Strips Annotated and Optional; picks a tagged union's member by ``part``."""
    for _ in range(10):
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            tagged = {}
            for arg in args:
                for meta in getattr(arg, "__metadata__", ()):
                    if isinstance(meta, Tag):
                        tagged[meta.tag] = get_args(arg)[0]
            if tagged:
                return tagged.get(part), True
            tp = (
                args[0]
                if len(args) == 1
                else next(
                    (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0]
                )
            )
            continue
        return tp, False
    return tp, False
