"""YAML loading that can say where every value came from, and ``${ENV}`` expansion.

Config errors must name file, line and column; PyYAML's plain loaders throw positions
away. The data is built straight from the parser's events (libyaml's when PyYAML has it),
and the mark of a YAML path is found, when an error needs one, by parsing the text again
and walking its nodes.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "Located",
    "Mark",
    "load_yaml",
    "did_you_mean",
    "format_path",
]

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class ConfigIssue:
    """One thing wrong with a config file, said so that the reader can fix it."""

    mark: Mark | None
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = str(self.mark) if self.mark else "<config>"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


# More problems than this are not listed one by one: a generated file with a mistake on
# every line would otherwise print (and hold) a line per value.
MAX_ISSUES = 100


class ConfigError(Exception):
    """Raised with every issue found, not only the first (up to MAX_ISSUES of them)."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        ordered = sorted(
            issues,
            key=lambda i: (i.mark.file, i.mark.line, i.mark.column) if i.mark else ("", 0, 0),
        )
        if len(ordered) > MAX_ISSUES:
            rest = ordered[MAX_ISSUES:]
            count = len(rest)
            ordered = [
                *ordered[:MAX_ISSUES],
                ConfigIssue(
                    rest[0].mark,
                    "",
                    f"and {count} more problem{'s' if count != 1 else ''} from here on",
                    "fix the ones above and run watcher validate again",
                ),
            ]
        self.issues = ordered
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.issues)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration:"
        return "\n".join([head, *(str(i) for i in self.issues)])


# A node of the mark tree: (line, column, kids), 0-based like libyaml's marks; kids is
# {key: (key line, key column, node)} for a mapping, [node, ...] for a sequence, None for
# a scalar. A tuple per value: the composed node tree held two Mark objects per value,
# over 300 MB for a 6 MB file.
_MarkNode = tuple[int, int, Any]


@dataclass
class Located:
    """Loaded YAML data, and the text it came from for the marks of errors.

    A mark is found, only when an error needs one, by reading the text again into a tree
    of positions and walking it: keeping a mark per value, or the node tree, for as long
    as the config is checked cost about 90 MB and seconds for a 10,000-target file.

    ``from_env`` maps the path of every value that ``${VAR}`` expansion changed to what
    the file wrote there, so that an error can name ``${VAR}`` instead of printing its value.
    """

    data: Any
    file: str
    text: str | None = field(default=None, repr=False)
    from_env: dict[PathKey, tuple[str, str]] = field(default_factory=dict, repr=False)
    # ``${VAR}``s not set, when the caller asked to decide about them itself (defer_unset)
    unset: list[ConfigIssue] = field(default_factory=list, repr=False)
    _root: _MarkNode | None = field(default=None, repr=False)

    def mark(self, path: PathKey, *, key: bool = False) -> Mark | None:
        """The mark of ``path`` (of its key, with ``key=True``), or of its nearest
        ancestor that has one."""
        if self._root is None and self.text:
            self._root = _mark_tree(self.text)
        node = self._root
        if node is None:
            return Mark(self.file, 1, 1)
        key_mark: tuple[int, int] | None = None
        for part in path:
            kids = node[2]
            if isinstance(kids, dict) and str(part) in kids:
                line, column, node = kids[str(part)]
                key_mark = (line, column)
            elif isinstance(kids, list) and isinstance(part, int) and 0 <= part < len(kids):
                node, key_mark = kids[part], None
            else:
                break
        line, column = key_mark if key and key_mark is not None else node[:2]
        return Mark(self.file, line + 1, column + 1)


def _mark_tree(text: str) -> _MarkNode | None:
    """The position of every value in ``text``, or None if it does not parse."""
    loader = _Loader(text)
    anchors: dict[str, _MarkNode] = {}

    def node(depth: int) -> _MarkNode:
        event = loader.get_event()
        here = (event.start_mark.line, event.start_mark.column)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor is None:
                return (*here, None)
            return anchors.get(event.anchor, (*here, None))
        if depth > MAX_DEPTH:
            raise yaml.YAMLError("nested too deep")  # the load has refused it already
        kids: Any = None
        if isinstance(event, yaml.SequenceStartEvent):
            kids = []
            while not loader.check_event(yaml.SequenceEndEvent):
                kids.append(node(depth + 1))
            loader.get_event()
        elif isinstance(event, yaml.MappingStartEvent):
            kids = {}
            while not loader.check_event(yaml.MappingEndEvent):
                key_event = loader.peek_event()
                key = node(depth + 1)
                value = node(depth + 1)
                if isinstance(key_event, yaml.ScalarEvent):
                    kids.setdefault(key_event.value, (key[0], key[1], value))
            loader.get_event()
        built = (*here, kids)
        if event.anchor:
            anchors[event.anchor] = built
        return built

    try:
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # document start
        return node(0)
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``did you mean 'interval'?`` when a close choice exists, else the allowed list."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    if len(options) <= 12:
        return "allowed: " + ", ".join(options)
    return ""


_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: Mapping[str, str], missing: list[str]) -> str:
    """Expands ``${VAR}`` and ``${VAR:-default}``; ``$${`` stands for a literal ``${``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    return _ENV.sub(replace, text)


# libyaml's parser when PyYAML has it: about 3x faster on a large config, same nodes and marks.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


# Bounds on what a config file may make the loader do. A site's real config is far below
# each (10,000 targets write about 2.6 MB); past them a file is refused with a sentence
# instead of eating the machine. Within them, memory grows with the file's size.
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
# Aliases are references, cheap to load, but every later step (validation, an error
# message) walks them expanded: "billion laughs" is a few lines of YAML. A file's aliases
# may add this many values, plus as many as the file writes itself.
MAX_ALIAS_VALUES = 100_000

_HINT_SYNTAX = (
    "indent with spaces, not tabs; quote values that contain ': ' or start "
    "with '{', '[', '*', '&', '!' or '%'"
)
# What YAML 1.1 lets a file contain (libyaml's check), spelled as the characters refused.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MAX_REPORTED = 10


class _Abort(Exception):
    """Stops building: going on would cost without bound (too deep, too many aliases)."""


def load_yaml(
    path: str | Path,
    *,
    text: str | None = None,
    environ: Mapping[str, str] | None = None,
    defer_unset: bool = False,
) -> Located:
    """Loads one YAML file; raises ConfigError with every problem found in it. With
    ``defer_unset``, an unset ``${VAR}`` reads as empty and its issue goes to
    ``Located.unset`` instead, for the caller to report or let pass."""
    file = str(path)
    if text is None:
        text = _read_text(Path(path), file)
    bad = _unprintable(text, file)
    if bad:
        raise ConfigError(bad)
    env = os.environ if environ is None else environ
    located = Located(data=None, file=file, text=text)
    issues: list[ConfigIssue] = []
    loader = _Loader(text)
    try:
        unset = located.unset if defer_unset else issues
        located.data = _Builder(loader, file, env, issues, located.from_env, unset).document()
    except _Abort:
        pass  # its issue is in ``issues``
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(file, mark.line + 1, mark.column + 1) if mark else Mark(file, 1, 1)
        problem = _say_which_character((exc.problem or str(exc)).strip(), text, mark)
        context = f" ({exc.context.strip()})" if exc.context else ""
        raise ConfigError(
            [ConfigIssue(where, "", f"YAML syntax error: {problem}{context}", _HINT_SYNTAX)]
        ) from None
    except yaml.reader.ReaderError as exc:  # a character the scan above did not know
        raise ConfigError(
            [
                ConfigIssue(
                    _mark_at(file, text, exc.position),
                    "",
                    f"character {exc.character!r} is not allowed in a YAML file",
                    "remove it",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            [ConfigIssue(Mark(file, 1, 1), "", f"YAML error: {_short_text(str(exc))}")]
        ) from None
    finally:
        loader.dispose()
    if issues:
        raise ConfigError(issues)
    return located


def _read_text(path: Path, file: str) -> str:
    try:
        with path.open("rb") as handle:
            raw = _read_bounded(handle)
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(None, "", f"{file}: no such file")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(None, "", f"{file}: cannot read it ({exc})")]) from None
    if raw is None:
        raise ConfigError(
            [
                ConfigIssue(
                    Mark(file, 1, 1),
                    "",
                    f"the file is over {MAX_FILE_BYTES // 2**20} MiB; a config is far smaller",
                    "is this the right file?",
                )
            ]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        head = raw[: exc.start]
        line = head.count(b"\n") + 1
        column = len(head[head.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise ConfigError(
            [
                ConfigIssue(
                    Mark(file, line, column),
                    "",
                    f"byte 0x{raw[exc.start]:02x} is not UTF-8 ({exc.reason})",
                    "save the file as UTF-8",
                )
            ]
        ) from None


def _read_bounded(handle: BinaryIO) -> bytes | None:
    """The file's bytes, or None if it is over MAX_FILE_BYTES."""
    if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:
        return None
    # In pieces, as a pipe has no size; read(MAX_FILE_BYTES) would allocate all of it.
    chunks, size = [], 0
    while size <= MAX_FILE_BYTES and (chunk := handle.read(1 << 16)):
        chunks.append(chunk)
        size += len(chunk)
    return None if size > MAX_FILE_BYTES else b"".join(chunks)


def _unprintable(text: str, file: str) -> list[ConfigIssue]:
    """Every character YAML refuses (libyaml would name only the first, by offset)."""
    issues = []
    for count, match in enumerate(_NOT_PRINTABLE.finditer(text)):
        if count == _MAX_REPORTED:
            issues.append(
                ConfigIssue(
                    _mark_at(file, text, match.start()),
                    "",
                    "and more such characters after this one",
                )
            )
            break
        char = match.group()
        issues.append(
            ConfigIssue(
                _mark_at(file, text, match.start()),
                "",
                f"control character U+{ord(char):04X} is not allowed in a YAML file, "
                "not even in a comment",
                f"remove it; inside a double-quoted string it can be written as \\x{ord(char):02x}"
                if ord(char) < 0x100
                else "remove it",
            )
        )
    return issues


def _mark_at(file: str, text: str, offset: int) -> Mark:
    line = text.count("\n", 0, offset) + 1
    return Mark(file, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _short_text(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


_MERGE = "tag:yaml.org,2002:merge"


def _say_which_character(problem: str, text: str, mark: yaml.Mark | None) -> str:
    """libyaml leaves out the character it stopped at; a tab is the usual one, so say it."""
    if mark is None or problem != "found character that cannot start any token":
        return problem
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    return (
        f"found character {line[mark.column]!r} that cannot start any token"
        if mark.column < len(line)
        else problem
    )


class _Builder:
    """Builds the data straight from the parser's events, never holding a node tree.

    Composing a node tree first (PyYAML's way) holds a node and two marks per value: for
    a 10,000-target file that peaked at about 90 MB more, most of which the process kept.
    Merge keys (``<<: *anchor``) merge mappings, explicit keys winning, as YAML says.
    Nesting deeper than MAX_DEPTH and aliases adding more than MAX_ALIAS_VALUES stop the
    build (with an issue): both would make every later step unbounded.
    """

    def __init__(
        self,
        loader: _Loader,
        file: str,
        env: Mapping[str, str],
        issues: list[ConfigIssue],
        from_env: dict[PathKey, tuple[str, str]],
        unset: list[ConfigIssue] | None = None,
    ) -> None:
        self.unset = issues if unset is None else unset
        self.loader = loader
        self.file = file
        self.env = env
        self.issues = issues
        self.from_env = from_env
        self.anchors: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}  # values an anchor stands for, aliases expanded
        self.written = 0  # values the file writes
        self.aliased = 0  # values its aliases add
        self.depth = 0

    def mark(self, event: yaml.Event) -> Mark:
        start = event.start_mark
        assert start is not None  # the parser marks every event it hands out
        return Mark(self.file, start.line + 1, start.column + 1)

    def check_issues(self, event: yaml.Event) -> None:
        if len(self.issues) >= MAX_ISSUES:
            self.abort(
                event,
                (),
                f"stopped reading here after {MAX_ISSUES} problems",
                "fix the ones above and run watcher validate again",
            )

    def abort(self, event: yaml.Event, path: PathKey, message: str, hint: str = "") -> None:
        where = format_path(path[:8]) + ("..." if len(path) > 8 else "")
        self.issues.append(ConfigIssue(self.mark(event), where, message, hint))
        raise _Abort

    def document(self) -> Any:
        loader = self.loader
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return {}
        start = loader.get_event()  # document start
        data = self.value(())
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            extra = loader.get_event()
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                start.start_mark,
                "but found another document",
                extra.start_mark,
            )
        return data

    def value(self, path: PathKey) -> Any:
        event = self.loader.get_event()
        self.check_issues(event)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                self.issues.append(
                    ConfigIssue(
                        self.mark(event),
                        format_path(path),
                        f"*{event.anchor} names no anchor (&{event.anchor}) above it",
                    )
                )
                return None
            self.aliased += self.sizes[event.anchor]
            if self.aliased > MAX_ALIAS_VALUES + self.written:
                self.abort(
                    event,
                    path,
                    f"the aliases up to *{event.anchor} expand to over {self.aliased:,} values, "
                    f"more than a config needs (at most {MAX_ALIAS_VALUES:,} more than the "
                    "file writes)",
                    "write the repeated part out, or alias smaller pieces",
                )
            return self.anchors[event.anchor]
        self.written += 1
        before = self.written + self.aliased
        if isinstance(event, yaml.ScalarEvent):
            value = self.scalar(event, path)
            if isinstance(value, str) and "$" in value:
                value = self.expand(value, event, path)
        elif isinstance(event, yaml.SequenceStartEvent):
            self.enter(event, path)
            value = []
            while not self.loader.check_event(yaml.SequenceEndEvent):
                value.append(self.value((*path, len(value))))
            self.loader.get_event()
            self.depth -= 1
        else:
            self.enter(event, path)
            value = self.mapping(path)
            self.depth -= 1
        if event.anchor:
            self.anchors[event.anchor] = value
            self.sizes[event.anchor] = self.written + self.aliased - before + 1
        return value

    def enter(self, event: yaml.Event, path: PathKey) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.abort(
                event,
                path,
                f"nested more than {MAX_DEPTH} levels deep; a config needs a handful",
                "check the brackets and indentation here",
            )

    def mapping(self, path: PathKey) -> dict[str, Any]:
        loader = self.loader
        out: dict[str, Any] = {}
        merged: list[Any] = []
        while not loader.check_event(yaml.MappingEndEvent):
            key_event = loader.peek_event()
            if not isinstance(key_event, yaml.ScalarEvent):
                self.value(path)  # a list or mapping as a key: read past it, and its value
                self.value(path)
                self.issues.append(
                    ConfigIssue(
                        self.mark(key_event), format_path(path), "a key must be a plain word"
                    )
                )
                continue
            loader.get_event()
            if self.tag(key_event) == _MERGE:
                merged.append((self.value(path), key_event))
                continue
            key = self.scalar(key_event, path)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                self.value(path)
                self.issues.append(
                    ConfigIssue(
                        self.mark(key_event), format_path(path), "a key must be a plain word"
                    )
                )
                continue
            key = key if isinstance(key, str) else str(key)
            if key in out:
                self.value(path)
                self.issues.append(
                    ConfigIssue(
                        self.mark(key_event),
                        format_path((*path, key)),
                        f"{key!r} is given twice in the same mapping; the second would silently win",
                        "remove one of them",
                    )
                )
                continue
            out[key] = self.value((*path, key))
        loader.get_event()
        for source, key_event in merged:
            for mapping in source if isinstance(source, list) else [source]:
                if not isinstance(mapping, dict):
                    self.issues.append(
                        ConfigIssue(
                            self.mark(key_event),
                            format_path(path),
                            "<< merges a mapping (*anchor) or a list of them",
                        )
                    )
                    break
                for key, value in mapping.items():
                    out.setdefault(key, value)
        return out

    def tag(self, event: yaml.ScalarEvent) -> str:
        if event.tag is None or event.tag == "!":
            return str(self.loader.resolve(yaml.ScalarNode, event.value, event.implicit))
        return str(event.tag)

    def scalar(self, event: yaml.ScalarEvent, path: PathKey) -> Any:
        tag = self.tag(event)
        node = yaml.ScalarNode(
            tag,
            event.value,
            event.start_mark,  # type: ignore[arg-type]  # the C parser's marks, same fields
            event.end_mark,  # type: ignore[arg-type]
            style=event.style,
        )
        try:
            value = self.loader.construct_object(node, deep=True)
        except Exception as exc:  # noqa: BLE001
            # A tagged scalar PyYAML cannot read raises whatever its constructor happens
            # to: ValueError for 2026-02-30 or !!int abc, KeyError for !!bool maybe, ...
            problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
            self.issues.append(
                ConfigIssue(
                    self.mark(event),
                    format_path(path),
                    f"{_short_text(event.value, 60)!r} cannot be read as "
                    f"{tag.removeprefix('tag:yaml.org,2002:')}: {problem}",
                    "write a date that exists, as YYYY-MM-DD"
                    if tag.endswith(":timestamp")
                    else 'quote it to keep it as text ("..."), or write a valid value',
                )
            )
            return None
        finally:
            self.loader.constructed_objects.pop(node, None)
        if isinstance(value, float) and not math.isfinite(value):
            self.issues.append(
                ConfigIssue(
                    self.mark(event),
                    format_path(path),
                    f"{event.value!r} is not a finite number",
                    "write a number, e.g. 30 or 2.5",
                )
            )
            return None
        return value

    def expand(self, value: str, event: yaml.Event, path: PathKey) -> str:
        missing: list[str] = []
        written = value
        value = expand_env(value, self.env, missing)
        for name in missing:
            self.unset.append(
                ConfigIssue(
                    self.mark(event),
                    format_path(path),
                    f"environment variable {name} is not set",
                    f"export {name}=... before starting watcher, give a default with "
                    f"${{{name}:-value}}, or write $${{ for a literal '${{'",
                )
            )
        if value != written:
            self.from_env[path] = (written, value)
        return value
