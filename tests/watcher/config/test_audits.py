"""``audits:`` in watcher.yml: what is accepted, and the errors that name the fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.helpers import config_from
from watcher.config.models import ConfigError

BASE = """
site: acme
smtp: {host: 127.0.0.1, port: 2525, from: watcher@acme.example}
contacts:
  managers: [{name: IT manager, email: it@acme.example}]
"""


def test_an_audit_schedule_with_its_defaults(tmp_path: Path) -> None:
    config = config_from(tmp_path, BASE + 'audits: [{every: "mon 08:00"}]\n', environ={})
    [audit] = config.model.audits
    assert (audit.key, audit.since, audit.format, audit.attach) == (
        "mon 08:00",
        None,
        "html",
        False,
    )
    assert audit.recipients(config.model.contacts) == ["it@acme.example"]


def test_every_option_written_out(tmp_path: Path) -> None:
    config = config_from(
        tmp_path,
        BASE
        + """audits:
  - name: monthly-board
    every: "monthly 1 09:00"
    since: 30d
    to: [managers, cto@acme.example, it@acme.example]
    format: md
    attach: true
    subject: Monthly audit
    thresholds: {disk_high: 80, sla_target: 90}
""",
        environ={},
    )
    [audit] = config.model.audits
    assert audit.key == "monthly-board" and audit.since == timedelta(days=30)
    assert audit.recipients(config.model.contacts) == ["it@acme.example", "cto@acme.example"]
    assert audit.thresholds == {"disk_high": 80.0, "sla_target": 90.0}


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ('audits: [{every: "mon 8am"}]', "audits[0].every", "does not end with a time of day"),
        (
            'audits: [{every: "mon 08:00", to: [board]}]',
            "audits[0].to",
            "'board' is neither a mail address nor a contact list",
        ),
        ('audits: [{every: "mon 08:00", format: pdf}]', "audits[0].format", "'pdf' is not allowed"),
        (
            'audits: [{every: "mon 08:00", thresholds: {disk_hgh: 80}}]',
            "audits[0].thresholds",
            "unknown threshold 'disk_hgh'",
        ),
        (
            'audits: [{every: "mon 08:00", to: [escalation]}]',
            "audits[0].to",
            "no address to mail this audit to: contacts.escalation has no email",
        ),
        (
            'audits: [{every: "mon 08:00"}, {every: "mon 08:00", format: md}]',
            "audits[1]",
            "each needs its own name",
        ),
        ('audits: [{every: "mon 08:00", sine: 7d}]', "audits[0].sine", "unknown key 'sine'"),
    ],
)
def test_a_wrong_audit_is_refused_with_where_and_why(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from(tmp_path, BASE + text + "\n", environ={})
    rendered = str(caught.value)
    assert where in rendered and message in rendered, rendered


def test_scheduled_audits_need_the_mail_relay(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from(
            tmp_path,
            'site: acme\naudits: [{every: "daily 07:00", to: [ops@acme.example]}]\n',
            environ={},
        )
    assert "scheduled audits are mailed through the smtp: relay, which is not set" in str(
        caught.value
    )
    assert "watcher.yml:2:" in str(caught.value)
