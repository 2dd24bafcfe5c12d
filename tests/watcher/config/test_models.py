"""watcher.yml loading: typed models, ${ENV}, and errors that name file, line and fix."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.helpers import config_from, write_config
from watcher.config.load import load_config
from watcher.config.models import ConfigError
from watcher.core.secret import Secret

BROKEN = Path(__file__).resolve().parents[2] / "configs" / "broken"
BROKEN_CONFIGS = sorted(p for p in BROKEN.glob("*.yml") if not p.name.endswith(".rules.yml"))


def _expectations(path: Path) -> tuple[str, int, list[str]]:
    file, line, texts = path.name, 0, []
    for raw in path.read_text().splitlines():
        if m := re.match(r"# expect-file: (.+)", raw):
            file = m.group(1).strip()
        elif m := re.match(r"# expect-line: (\d+)", raw):
            line = int(m.group(1))
        elif m := re.match(r"# expect: (.+)", raw):
            texts.append(m.group(1).strip())
    return file, line, texts


def test_there_are_at_least_fifteen_broken_configs() -> None:
    assert len(BROKEN_CONFIGS) >= 15


@pytest.mark.parametrize("path", BROKEN_CONFIGS, ids=lambda p: p.stem)
def test_a_broken_config_is_refused_with_file_line_and_fix(path: Path) -> None:
    file, line, texts = _expectations(path)
    environ = {k: v for k, v in os.environ.items() if k != "WATCHER_TEST_SURELY_UNSET"}
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    message = str(caught.value)
    assert f"{file}:{line}:" in message, message
    for text in texts:
        assert text in message, f"{text!r} not in:\n{message}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["unknown_key", "bad_condition", "missing_env"])
def test_nothing_starts_on_a_broken_config(tmp_path: Path, name: str) -> None:
    source = BROKEN / f"{name}.yml"
    for extra in BROKEN.glob(f"{name}.rules.yml"):
        (tmp_path / extra.name).write_text(extra.read_text())
    port = _free_port()
    config = tmp_path / "watcher.yml"
    config.write_text(
        f"state: {tmp_path}/state.db\nlisten: 127.0.0.1:{port}\n" + source.read_text()
    )
    env = {k: v for k, v in os.environ.items() if k != "WATCHER_TEST_SURELY_UNSET"}
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "problem" in done.stderr
    assert "watcher.yml:" in done.stderr or ".rules.yml:" in done.stderr
    assert not (tmp_path / "state.db").exists()
    with socket.socket() as s:  # nothing listens: the port is still free
        s.bind(("127.0.0.1", port))


def test_validate_exits_0_on_a_good_config_and_2_on_a_bad_one(tmp_path: Path) -> None:
    good = write_config(tmp_path, "site: acme\n", name="good.yml")
    bad = write_config(tmp_path, "site: acme\nworkers: many\n", name="bad.yml")
    ok = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "validate", "-c", str(good)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "ok: site acme" in ok.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "validate", "-c", str(bad)],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "bad.yml:2:" in refused.stderr


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        site: acme
        defaults: {interval: soon, timeout: 10s, resolv_after: 3}
        targets:
          - name: web
            probes:
              - http: {url: "http://127.0.0.1:1/", method: FETCH}
              - tcp: {port: 0}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = [str(i) for i in caught.value.issues]
    assert len(lines) == 4, lines
    assert any("did you mean 'resolve_after'?" in line for line in lines)
    assert any("'FETCH' is not allowed" in line for line in lines)


def test_shipped_watcher_yml_is_valid() -> None:
    config = load_config(Path(__file__).resolve().parents[3] / "watcher.yml")
    assert config.site == "localhost"
    assert {s.kind for t in config.model.targets for s in t.probe_specs()} >= {
        "disk",
        "http",
        "tcp",
        "uptime",
    }


def test_env_references_expand_and_dollar_dollar_escapes(tmp_path: Path) -> None:
    config = config_from(
        tmp_path,
        """
        site: "${SITE_NAME}"
        api_token: "${TOKEN}"
        targets:
          - name: web
            probes:
              - http: {url: "http://127.0.0.1:${PORT:-8080}/", contains: "$${literal}"}
        """,
        environ={"SITE_NAME": "acme-pune", "TOKEN": "s3cret-token-value"},
    )
    assert config.site == "acme-pune"
    assert isinstance(config.model.api_token, Secret)
    assert config.model.api_token.reveal() == "s3cret-token-value"
    assert "s3cret" not in repr(config.model)
    http = config.model.targets[0].probe_specs()[0].config
    assert http.url == "http://127.0.0.1:8080/"
    assert http.contains == "${literal}"


def test_durations_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = config_from(
        tmp_path, "site: acme\nstate: data/w.db\ndefaults: {interval: 1h30m, timeout: 90s}\n"
    )
    assert config.model.defaults.interval == timedelta(minutes=90)
    assert config.model.defaults.timeout == timedelta(seconds=90)
    assert config.state_path == tmp_path / "data" / "w.db"
    assert config.model.business_hours.timezone == "Asia/Kolkata"


def test_a_site_pack_replaces_a_shipped_rule_of_the_same_name(tmp_path: Path) -> None:
    config = config_from(
        tmp_path,
        "site: acme\nrules: [default, site.yml]\n",
        extra={
            "site.yml": "rules:\n  - {name: disk-high, probe: disk, when: 'used_percent >= 70', priority: P3}\n"
        },
    )
    rules = {r.name: r for r in config.rules.rules}
    assert rules["disk-high"].when.text == "used_percent >= 70"
    assert list(rules).count("disk-high") == 1


def test_a_rule_may_not_name_a_target_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="target 'mial1' matches no configured target"):
        config_from(
            tmp_path,
            "site: acme\nrules: [default, site.yml]\ntargets: [{name: mail1, probes: [{tcp: {port: 25}}]}]\n",
            extra={
                "site.yml": "rules:\n  - {name: x, target: mial1, when: failed, priority: P2}\n"
            },
        )


def test_a_broken_target_does_not_hide_a_broken_rule_pack(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "site: acme\nrules: [default, site.yml]\ntargets: [{name: web, probes: [{htpp: {}}]}]\n",
        extra={
            "site.yml": "rules:\n  - {name: x, probe: disk, when: 'used_pct > 9', priority: P2}\n"
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "unknown probe kind 'htpp'" in text and "site.yml:2:" in text and "'used_pct'" in text


def test_two_independent_mistakes_in_different_sections_are_reported_in_one_pass(
    tmp_path: Path,
) -> None:
    # smtp.port fails validation; the duplicate target name is a check across targets,
    # which used to run only once everything validated
    path = write_config(
        tmp_path,
        """
        site: acme
        smtp: {host: 127.0.0.1, port: many}
        targets:
          - {name: web, probes: [{tcp: {port: 80}}]}
          - {name: web, probes: [{tcp: {port: 443}}]}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    text = str(caught.value)
    assert "smtp.port" in text and "target name 'web' is used twice" in text


def test_a_check_reading_a_setting_that_failed_is_left_out_rather_than_misleading(
    tmp_path: Path,
) -> None:
    # contacts fail, so the audit's recipients cannot be checked against them
    path = write_config(
        tmp_path,
        """
        site: acme
        contacts: {managers: [{email: 5}]}
        audits: [{every: "mon 08:00", to: [managers]}]
        targets: [{name: web, probes: [{tcp: {port: 80}}]}]
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert [i.path.split("[")[0] for i in caught.value.issues] == ["contacts.managers"]


def test_unset_variables_are_problems_reported_with_everything_else(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        site: acme
        smtp: {host: 127.0.0.1, port: many, password: "${SMTP_PW}"}
        targets:
          - {name: web, probes: [{tcp: {port: 80}}]}
          - {name: web, probes: [{tcp: {port: 443}}]}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    text = str(caught.value)
    assert "SMTP_PW is not set" in text and "smtp.port" in text and "used twice" in text


def test_read_only_loading_takes_unset_secrets_as_absent_and_lists_them(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        site: acme
        smtp: {host: 127.0.0.1, password: "${SMTP_PW}"}
        targets: [{name: web, probes: [{tcp: {port: 80}}]}]
        """,
    )
    config = load_config(path, environ={}, secrets="optional")
    assert config.model.smtp is not None and not config.model.smtp.password
    assert [str(i).split(": ", 1)[1] for i in config.unset] == [
        "smtp.password: environment variable SMTP_PW is not set\n"
        "    hint: export SMTP_PW=... before starting watcher, give a default with "
        "${SMTP_PW:-value}, or write $${ for a literal '${'"
    ]
    with pytest.raises(ConfigError, match="SMTP_PW is not set"):
        load_config(path, environ={})


def test_a_site_rule_without_when_changes_only_the_keys_it_gives_of_a_shipped_rule(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """
        site: acme
        rules: [default, site.yml]
        targets: [{name: web, probes: [{disk: {paths: [/]}}]}]
        """,
        extra={"site.yml": "rules:\n  - {name: disk-high, for: 5m, priority: P2}\n"},
    )
    config = load_config(path, environ={})
    plain = tmp_path / "plain.yml"
    plain.write_text(path.read_text().replace("rules: [default, site.yml]", "rules: [default]"))
    shipped = load_config(plain, environ={})
    [rule] = [r for r in config.rules.rules if r.name == "disk-high"]
    assert rule.for_ == timedelta(minutes=5) and rule.priority == "P2"
    assert rule.when.text and rule.probe == ["disk"]  # the rest as the shipped rule says
    names = [r.name for r in config.rules.rules]
    assert names == [r.name for r in shipped.rules.rules] and names.count("disk-high") == 1
    [said] = config.rules.overrides
    assert "rule disk-high changes for, priority of" in said and "default.yml" in said
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "rule disk-high changes for, priority" in done.stdout


def test_a_change_to_a_rule_no_earlier_pack_has_is_an_error_listing_the_names(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """
        site: acme
        rules: [default, site.yml]
        targets: [{name: web, probes: [{disk: {paths: [/]}}]}]
        """,
        extra={"site.yml": "rules:\n  - {name: disk-hihg, for: 5m}\n"},
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    [issue] = caught.value.issues
    assert "'disk-hihg' has no when:" in issue.message and issue.mark is not None
    assert issue.mark.file.endswith("site.yml") and issue.mark.line == 2
    assert "did you mean 'disk-high'?" in issue.hint and "disk-critical" in issue.hint
