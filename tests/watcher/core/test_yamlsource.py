"""YAML loading built from parser events: values, merges, anchors and the marks of errors."""

from __future__ import annotations

import pytest

from watcher.core.yamlsource import ConfigError, load_yaml


def _issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_yaml("w.yml", text=text, environ={})
    return [str(i) for i in caught.value.issues]


def test_merge_keys_merge_mappings_and_explicit_keys_win() -> None:
    text = "base: &base {interval: 60s, timeout: 10s}\nweb:\n  <<: *base\n  timeout: 5s\nboth: {<<: [{a: 1}, {a: 2, b: 2}]}\n"
    data = load_yaml("w.yml", text=text, environ={}).data
    assert data["web"] == {"interval": "60s", "timeout": "5s"}
    assert data["both"] == {"a": 1, "b": 2}


def test_anchors_aliases_and_scalar_types_read_as_pyyaml_reads_them() -> None:
    text = (
        "ports: &p [22, 80]\ncopy: *p\nflags: {up: yes, down: no, none: ~, n: 1.5, s: !!str 12}\n"
    )
    data = load_yaml("w.yml", text=text, environ={}).data
    assert data["copy"] == [22, 80]
    assert data["flags"] == {"up": True, "down": False, "none": None, "n": 1.5, "s": "12"}


def test_errors_name_the_line_of_the_value_or_key() -> None:
    located = load_yaml(
        "w.yml", text="site: a\ntargets:\n  - name: t1\n  - name: t2\n    host: h\n", environ={}
    )
    assert str(located.mark(("targets", 1, "host"))) == "w.yml:5:11"
    assert str(located.mark(("targets", 1, "host"), key=True)) == "w.yml:5:5"
    assert str(located.mark(("targets", 1, "missing"))) == "w.yml:4:5"  # nearest ancestor


def test_duplicates_bad_keys_undefined_aliases_and_unset_variables_are_all_reported() -> None:
    issues = _issues("a: 1\na: 2\n? [x]\n: 3\nb: *nowhere\nc: ${NOT_SET_ANYWHERE}\n")
    assert any("w.yml:2:1" in i and "given twice" in i for i in issues)
    assert any("w.yml:3:3" in i and "a key must be a plain word" in i for i in issues)
    assert any("w.yml:5:4" in i and "*nowhere names no anchor" in i for i in issues)
    assert any("w.yml:6:4" in i and "NOT_SET_ANYWHERE is not set" in i for i in issues)


def test_a_tab_is_named_in_the_syntax_error() -> None:
    [issue] = _issues("a:\n\t- b\n")
    assert "w.yml:2:1" in issue and "found character '\\t'" in issue and "spaces, not tabs" in issue


def test_an_empty_file_is_an_empty_mapping_and_two_documents_are_refused() -> None:
    assert load_yaml("w.yml", text="", environ={}).data == {}
    [issue] = _issues("a: 1\n---\nb: 2\n")
    assert "single document" in issue
