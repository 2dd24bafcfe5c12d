"""Reading Alertmanager's and Grafana's webhook posts, and what an alert becomes.

Payloads are the documented examples (Alertmanager's webhook_config, version 4;
Grafana's webhook contact point), kept as fixture files in tests/probes/payloads/.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from probes.alertmanager import (
    AlertmanagerSettings,
    PayloadError,
    alert_result,
    parse_post,
    target_index,
    target_of,
)
from tests.support.helpers import config_from
from watcher.config.models import ConfigError

PAYLOADS = Path(__file__).parent / "payloads"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_the_documented_alertmanager_post_is_read_whole() -> None:
    post = parse_post((PAYLOADS / "alertmanager-v4.json").read_bytes())
    assert post.source == "alertmanager" and post.status == "firing"
    assert post.truncated == 0 and post.group_key.startswith("{}/{severity")
    (alert,) = post.alerts
    assert alert.name == "ProbeFailure" and alert.status == "firing"
    assert alert.labels["severity"] == "critical"
    assert alert.starts_at == datetime(2023, 2, 6, 13, 8, 45, 828000, tzinfo=UTC)
    assert alert.ends_at is None  # 0001-01-01T00:00:00Z: still firing
    assert alert.fingerprint == "1a30ba71cca2921f"


def test_the_documented_grafana_post_is_read_with_its_links_and_values() -> None:
    post = parse_post((PAYLOADS / "grafana.json").read_bytes())
    assert post.source == "grafana" and post.title.startswith("[FIRING:2]")
    memory, cpu = post.alerts
    assert memory.labels == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}
    assert memory.extra["values"] == {"B": 44.23943737541908, "C": 1.0}
    assert memory.extra["silenceURL"].startswith("https://play.grafana.org/alerting/silence")
    assert "dashboardURL" not in memory.extra  # empty in the example
    result = alert_result(memory, "alerts", "", NOW, post=post)
    assert result.message == "This alert was triggered for zone us-1"
    assert "Runbook: https://myrunbook.com/runbook/1234" in result.evidence
    assert "Values: B=44.2394, C=1" in result.evidence
    assert "Sent by: Grafana" in result.evidence


def test_nanosecond_times_and_offsets_are_read_as_utc() -> None:
    data = payload("alertmanager-v4.json")
    data["alerts"][0]["startsAt"] = "2018-08-03T09:52:26.739266876+02:00"
    (alert,) = parse_post(body(data)).alerts
    assert alert.starts_at == datetime(2018, 8, 3, 7, 52, 26, 739266, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        (lambda d: d.update(version="3"), "version", "unsupported payload version '3'"),
        (lambda d: d.pop("version"), "version", "unsupported payload version 'None'"),
        (lambda d: d.update(status="pending"), "schema", "status must be firing or resolved"),
        (lambda d: d.update(alerts={"a": 1}), "schema", "alerts must be a list"),
        (lambda d: d["alerts"][0].pop("labels"), "labels", "alerts[0] has no labels"),
        (lambda d: d["alerts"][0]["labels"].pop("alertname"), "labels", "no alertname"),
        (
            lambda d: d["alerts"][0]["labels"].update(n=5),
            "schema",
            "alerts[0].labels.n must be a string",
        ),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "schema", "not an RFC 3339 time"),
        (lambda d: d["alerts"][0].update(startsAt="2026-01-01T00:00:00"), "schema", "no time zone"),
        (lambda d: d["alerts"][0].pop("startsAt"), "schema", "alerts[0].startsAt must be a string"),
        (lambda d: d["alerts"][0].update(status="ok"), "schema", "alerts[0].status must be"),
        (lambda d: d.update(truncatedAlerts=-1), "schema", "truncatedAlerts"),
        (lambda d: d["alerts"].append("x"), "schema", "alerts[1] must be an object"),
    ],
)
def test_a_malformed_post_is_refused_with_a_reason(change, reason: str, words: str) -> None:  # type: ignore[no-untyped-def]
    data = payload("alertmanager-v4.json")
    change(data)
    with pytest.raises(PayloadError, match=words.replace("(", r"\(").replace("[", r"\[")) as caught:
        parse_post(body(data))
    assert caught.value.reason == reason


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b""])
def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_post(raw)
    assert caught.value.reason == "json"


def test_more_alerts_than_max_alerts_are_refused_whole() -> None:
    data = payload("alertmanager-v4.json")
    data["alerts"] = data["alerts"] * 11
    with pytest.raises(PayloadError, match="11 alerts in one post, at most 10") as caught:
        parse_post(body(data), max_alerts=10)
    assert caught.value.reason == "too_many"


def test_one_bad_alert_among_good_ones_refuses_the_post() -> None:
    data = payload("alertmanager-v4.json")
    good = data["alerts"][0]
    data["alerts"] = [good, {**good, "labels": {"instance": "x"}}, good]
    with pytest.raises(PayloadError, match=r"alerts\[1\].labels has no alertname"):
        parse_post(body(data))


SETTINGS = AlertmanagerSettings()
KNOWN = target_index({"db1": "127.20.0.7", "web": None})


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"instance": "db1"}, ("db1", "instance")),
        ({"instance": "db1:9100"}, ("db1", "instance")),
        ({"instance": "127.20.0.7:9100"}, ("db1", "instance")),  # a configured target's host
        ({"instance": "https://web/health"}, ("web", "instance")),  # blackbox: a URL
        ({"instance": "[::1]:9100"}, ("::1", "instance")),
        ({"instance": "cache3:9121"}, ("cache3", "instance")),  # not configured: its host
        ({"job": "backups"}, ("backups", "job")),
        ({"instance": " ", "job": "backups"}, ("backups", "job")),
        ({"team": "blue"}, ("alerts", "")),  # Grafana, no instance or job
    ],
)
def test_the_target_is_named_by_instance_then_job_then_the_default(
    labels: dict[str, str], expected: tuple[str, str]
) -> None:
    assert target_of(labels, SETTINGS, KNOWN) == expected


def test_the_target_label_is_configurable() -> None:
    settings = AlertmanagerSettings(target_label="host", fallback_labels=[], default_target="prom")
    assert target_of({"host": "db1", "instance": "x:1"}, settings, KNOWN) == ("db1", "host")
    assert target_of({"instance": "x:1"}, settings, KNOWN) == ("prom", "")


def test_an_alert_becomes_one_failing_check_whose_item_is_its_labels() -> None:
    (alert,) = parse_post((PAYLOADS / "alertmanager-v4.json").read_bytes()).alerts
    result = alert_result(alert, "server.example.org", "instance", NOW)
    assert (result.kind, result.probe, result.status, result.reason) == (
        "alertmanager",
        "alertmanager",
        "fail",
        "firing",
    )
    assert "instance" not in result.labels  # the target says it
    assert result.labels["severity"] == "critical"
    assert result.item == "ProbeFailure http_checks master critical"
    assert result.message == "BlackBox Probe Failure: https://server.example.org"
    assert "Source: http://prometheus.example.org:9090/graph" in result.evidence
    assert result.metrics["firing_for_s"] > 0


def test_the_summary_falls_back_to_the_description_then_the_alert_name() -> None:
    data = payload("alertmanager-v4.json")
    data["alerts"][0]["annotations"] = {"description": "disk at 91%"}
    (alert,) = parse_post(body(data)).alerts
    assert alert_result(alert, "t", "instance", NOW).message == "disk at 91%"
    data["alerts"][0]["annotations"] = {}
    (alert,) = parse_post(body(data)).alerts
    assert alert_result(alert, "t", "instance", NOW).message == "ProbeFailure firing"


def test_an_alertmanager_probe_under_a_target_is_refused_with_a_pointer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="alerts are pushed by Alertmanager"):
        config_from(
            tmp_path,
            """
            site: s
            targets:
              - name: db1
                probes: [alertmanager: {}]
            """,
        )


def test_the_shipped_pack_maps_severity_to_priority(tmp_path: Path) -> None:
    config = config_from(
        tmp_path,
        """
        site: s
        rules: [default, alertmanager]
        alertmanager: {token: x}
        """,
    )
    data = payload("alertmanager-v4.json")
    expected = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P4", "other": "P4"}
    for severity, priority in expected.items():
        data["alerts"][0]["labels"]["severity"] = severity
        (alert,) = parse_post(body(data)).alerts
        result = alert_result(alert, "t", "instance", NOW)
        holding = [e.rule.priority for e in config.rules.evaluate(result, {}, None) if e.value]
        assert min(holding) == priority, severity
    data["alerts"][0]["labels"].pop("severity")
    (alert,) = parse_post(body(data)).alerts
    result = alert_result(alert, "t", "instance", NOW)
    assert [e.rule.name for e in config.rules.evaluate(result, {}, None) if e.value] == [
        "alert-firing"
    ]


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"resolve_silent_after": "30s"}, "resolve_silent_after must be at least 1m"),
        ({"max_alerts": 0}, "greater than or equal to 1"),
        ({"tokn": "x"}, "tokn"),
    ],
)
def test_a_bad_alertmanager_section_stops_the_config(
    tmp_path: Path, settings: dict, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        config_from(tmp_path, f"site: s\nalertmanager: {json.dumps(settings)}\n")


def test_the_default_silence_is_three_of_alertmanagers_default_repeat_interval() -> None:
    assert AlertmanagerSettings().resolve_silent_after.total_seconds() == 3 * 4 * 3600
