"""YAML loading that remembers where every value came from, and ``${ENV}`` expansion.

Config errors must name file, line and column; PyYAML's plain loaders throw positions
away, so this walks the composed node tree and keeps a map from each YAML path to its mark.
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
    """Loaded YAML data with the mark of every value and every mapping key."""

    data: Any
    file: str
    values: dict[PathKey, Mark] = field(default_factory=dict)
    keys: dict[PathKey, Mark] = field(default_factory=dict)

    def mark(self, path: PathKey, *, key: bool = False) -> Mark | None:
        """The mark of ``path``, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Mark(self.file, 1, 1))


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


def expand_env(
    text: str, environ: Mapping[str, str], missing: list[str]
) -> str:
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


class _Loader(yaml.SafeLoader):
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
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(file, mark.line + 1, mark.column + 1) if mark else Mark(file, 1, 1)
        problem = (exc.problem or str(exc)).strip()
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
    located = Located(data=None, file=file)
    issues: list[ConfigIssue] = []
    if root is None:
        located.data = {}
        return located
    located.data = _convert(root, (), located, loader, env, issues)
    if issues:
        raise ConfigError(issues)
    return located


def _convert(
    node: yaml.Node,
    path: PathKey,
    located: Located,
    loader: _Loader,
    env: Mapping[str, str],
    issues: list[ConfigIssue],
) -> Any:
    located.values[path] = _mark(located.file, node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                issues.append(
                    ConfigIssue(_mark(located.file, key_node), format_path(path), "a key must be a plain word")
                )
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                issues.append(
                    ConfigIssue(
                        _mark(located.file, key_node),
                        format_path((*path, key)),
                        f"{key!r} is given twice in the same mapping; the second would silently win",
                        "remove one of them",
                    )
                )
                continue
            located.keys[(*path, key)] = _mark(located.file, key_node)
            out[key] = _convert(value_node, (*path, key), located, loader, env, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, i), located, loader, env, issues) for i, item in enumerate(node.value)
        ]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str) and "$" in value:
        missing: list[str] = []
        value = expand_env(value, env, missing)
        for name in missing:
            issues.append(
                ConfigIssue(
                    _mark(located.file, node),
                    format_path(path),
                    f"environment variable {name} is not set",
                    f"export {name}=... before starting watcher, give a default with "
                    f"${{{name}:-value}}, or write $${{ for a literal '${{'",
                )
            )
    return value
