"""YAML loading that can say where every value came from, and ``${ENV}`` expansion.

Config errors must name file, line and column; PyYAML's plain loaders throw positions
away. The data is built straight from the parser's events (libyaml's when PyYAML has it),
and the mark of a YAML path is found, when an error needs one, by parsing the text again
and walking its nodes.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class ConfigError(Exception):
    """Raised with every issue found, not only the first."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = sorted(
            issues,
            key=lambda i: (i.mark.file, i.mark.line, i.mark.column) if i.mark else ("", 0, 0),
        )
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.issues)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration:"
        return "\n".join([head, *(str(i) for i in self.issues)])


@dataclass
class Located:
    """Loaded YAML data, and the text it came from for the marks of errors.

    A mark is found, only when an error needs one, by composing the text again and walking
    the YAML nodes: keeping a mark per value, or the node tree, for as long as the config
    is checked cost about 90 MB and seconds for a 10,000-target file.
    """

    data: Any
    file: str
    text: str | None = field(default=None, repr=False)
    _root: yaml.Node | None = field(default=None, repr=False)

    def mark(self, path: PathKey, *, key: bool = False) -> Mark | None:
        """The mark of ``path`` (of its key, with ``key=True``), or of its nearest
        ancestor that has one."""
        if self._root is None and self.text:
            loader = _Loader(self.text)
            try:
                self._root = loader.get_single_node()
            except yaml.YAMLError:
                self._root = None
            finally:
                loader.dispose()
        node = self._root
        if node is None:
            return Mark(self.file, 1, 1)
        key_node: yaml.Node | None = None
        for part in path:
            child = _child(node, part)
            if child is None:
                break
            key_node, node = child
        return _mark(self.file, key_node if key and key_node is not None else node)


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                return key_node, value_node
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return None, node.value[part]
    return None


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


def _mark(file: str, node: yaml.Node) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


def load_yaml(
    path: str | Path,
    *,
    text: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Located:
    """Loads one YAML file; raises ConfigError with every problem found in it."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([ConfigIssue(None, "", f"{file}: no such file")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([ConfigIssue(None, "", f"{file}: cannot read it ({exc})")]) from None
    env = os.environ if environ is None else environ
    located = Located(data=None, file=file, text=text)
    issues: list[ConfigIssue] = []
    loader = _Loader(text)
    try:
        located.data = _Builder(loader, file, env, issues).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(file, mark.line + 1, mark.column + 1) if mark else Mark(file, 1, 1)
        problem = _say_which_character((exc.problem or str(exc)).strip(), text, mark)
        context = f" ({exc.context.strip()})" if exc.context else ""
        raise ConfigError(
            [
                ConfigIssue(
                    where,
                    "",
                    f"YAML syntax error: {problem}{context}",
                    "indent with spaces, not tabs; quote values that contain ': ' or start "
                    "with '{', '[', '*', '&', '!' or '%'",
                )
            ]
        ) from None
    finally:
        loader.dispose()
    if issues:
        raise ConfigError(issues)
    return located


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
    """

    def __init__(
        self, loader: _Loader, file: str, env: Mapping[str, str], issues: list[ConfigIssue]
    ) -> None:
        self.loader = loader
        self.file = file
        self.env = env
        self.issues = issues
        self.anchors: dict[str, Any] = {}

    def mark(self, event: yaml.Event) -> Mark:
        start = event.start_mark
        assert start is not None  # the parser marks every event it hands out
        return Mark(self.file, start.line + 1, start.column + 1)

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
            return self.anchors[event.anchor]
        if isinstance(event, yaml.ScalarEvent):
            value = self.scalar(event)
            if isinstance(value, str) and "$" in value:
                value = self.expand(value, event, path)
        elif isinstance(event, yaml.SequenceStartEvent):
            value = []
            while not self.loader.check_event(yaml.SequenceEndEvent):
                value.append(self.value((*path, len(value))))
            self.loader.get_event()
        else:
            value = self.mapping(path)
        if event.anchor:
            self.anchors[event.anchor] = value
        return value

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
            key = self.scalar(key_event)
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

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        node = yaml.ScalarNode(
            self.tag(event),
            event.value,
            event.start_mark,  # type: ignore[arg-type]  # the C parser's marks, same fields
            event.end_mark,  # type: ignore[arg-type]
            style=event.style,
        )
        try:
            return self.loader.construct_object(node, deep=True)
        finally:
            self.loader.constructed_objects.pop(node, None)

    def expand(self, value: str, event: yaml.Event, path: PathKey) -> str:
        missing: list[str] = []
        value = expand_env(value, self.env, missing)
        for name in missing:
            self.issues.append(
                ConfigIssue(
                    self.mark(event),
                    format_path(path),
                    f"environment variable {name} is not set",
                    f"export {name}=... before starting watcher, give a default with "
                    f"${{{name}:-value}}, or write $${{ for a literal '${{'",
                )
            )
        return value
