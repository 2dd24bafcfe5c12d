"""/metrics: a few series per check, detail on request, shards that add up to the whole."""

from __future__ import annotations

import gzip
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from probes.base import Result
from tests.servers.base import make_workdir
from tests.servers.prometheus import Prometheus, promtool_check_metrics
from tests.support.helpers import config_from
from watcher.web.metrics import Metrics, detail_name, parse_shard
from watcher.web.server import WebServer

AT = datetime(2026, 11, 23, 5, 30, tzinfo=UTC)
CHECK_FAMILIES = (
    "watcher_check_success",
    "watcher_check_duration_seconds",
    "watcher_check_cert_expiry_timestamp_seconds",
)


def _result(
    target: str,
    probe: str,
    status: str,
    metrics: dict[str, float],
    labels: dict[str, str] | None = None,
    duration: float = 0.012345678,
) -> Result:
    return Result(
        target, probe, probe.split("-")[0], status, "m", metrics, labels or {}, "", duration, AT
    )  # type: ignore[arg-type]


def _site(targets: int) -> list[Result]:
    """Every target: https with its certificate, disk on two paths, an SSH command."""
    results = []
    for i in range(targets):
        name = f"srv{i:03d}"
        results.append(
            _result(
                name,
                "https",
                "ok" if i % 7 else "fail",
                {"latency_s": 0.04, "status_code": 200, "body_bytes": 512, "cert_days_left": 30.5},
            )
        )
        for path, used in (("/", 40.0), ("/var", 90.0 + i % 10)):
            results.append(
                _result(
                    name,
                    "disk",
                    "ok" if used < 95 else "fail",
                    {"used_percent": used, "free_bytes": 1e9},
                    {"path": path},
                    duration=0.2 + i / 1000,
                )
            )
        results.append(_result(name, "backup", "ok", {"exit_code": 0, "latency_s": 0.1}))
    return results


ODD = [
    _result(
        "db", "disk", "ok", {"used_percent": 91.5, "free_bytes": 123456789012.0}, {"path": "/var"}
    ),
    _result(
        "db", "disk", "error", {"used_percent": 1e-7}, {"path": '/odd "quoted"\\path\nnewline'}
    ),
    _result(
        "mail",
        "nagios-x",
        "ok",
        {"rta ms": 1.5, "pl%": 0.0, "huge": 1e22, "neg": -3.25, "runs": 2, "procs_total": 9},
    ),
    _result("q", "mail_queue", "ok", {"oldest_age_s": 61.5, "queued": 3}),
]


def _samples(text: str) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return [
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _check_series(text: str) -> Counter[tuple[str, str]]:
    """Series per (target, check) in the check families."""
    return Counter(
        (dict(labels)["target"], dict(labels)["check"])
        for name, labels, _ in _samples(text)
        if name.startswith(("watcher_check_", "watcher_probe_")) and "target" in dict(labels)
    )


def _exposition(results: list[Result], **kw: object) -> str:
    metrics = Metrics()
    metrics.watch_results(lambda: results)
    return metrics.exposition(**kw).decode()  # type: ignore[arg-type]


def test_each_check_is_at_most_three_series_by_default() -> None:
    text = _exposition(_site(30))
    per_check = _check_series(text)
    assert len(per_check) == 90
    assert max(per_check.values()) <= 3
    assert per_check[("srv001", "https")] == 3  # success, duration, certificate expiry
    assert per_check[("srv001", "disk")] == 2  # two paths, still one check
    assert per_check[("srv001", "backup")] == 2
    families = {name for name, _, _ in _samples(text) if name.startswith("watcher_check_")}
    assert families == set(CHECK_FAMILIES)


def test_a_check_with_items_passes_only_when_every_item_does() -> None:
    samples = {(n, dict(labels)["target"]): v for n, labels, v in _samples(_exposition(_site(6)))
               if n.startswith("watcher_check_") and dict(labels)["check"] == "disk"}  # fmt: skip
    # srv005's /var is at 95 %: its disk check fails though / is fine
    assert samples[("watcher_check_success", "srv004")] == 1.0
    assert samples[("watcher_check_success", "srv005")] == 0.0
    assert samples[("watcher_check_duration_seconds", "srv005")] == 0.205


def test_the_certificate_expiry_is_a_timestamp() -> None:
    text = _exposition(_site(1))
    [(_, _, value)] = [s for s in _samples(text) if s[0].startswith("watcher_check_cert_")]
    assert value == int(AT.timestamp() + 30.5 * 86400)


def test_no_label_is_empty_no_family_repeats_and_numbers_are_short() -> None:
    text = _exposition(_site(5) + ODD)
    assert 'item=""' not in text and '=""' not in text
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    assert "0.012345678" not in text and "watcher_check_duration_seconds" in text
    ok, output = promtool_check_metrics(text)
    assert ok, output


class _Model:
    """A config model with the site-wide detail switch on."""

    class metrics:  # noqa: N801 - mirrors the config's key
        detail = True

    targets: list[object] = []


def test_detail_families_carry_their_unit_in_the_name_and_pass_promtool() -> None:
    metrics = Metrics()
    metrics.watch_results(lambda: _site(2) + ODD, lambda: _Model)  # type: ignore[arg-type,return-value]
    text = metrics.exposition().decode()
    ok, output = promtool_check_metrics(text)
    assert ok, output
    values = {(n, dict(labels).get("item", "")): v for n, labels, v in _samples(text)
              if dict(labels).get("target") in ("db", "mail", "q")}  # fmt: skip
    assert values[("watcher_probe_used_ratio", "/var")] == 0.915
    assert values[("watcher_probe_free_bytes", "/var")] == 123456789012.0
    assert values[("watcher_probe_rta_seconds", "")] == 0.0015
    assert values[("watcher_probe_pl_ratio", "")] == 0.0
    assert values[("watcher_probe_oldest_age_seconds", "")] == 61.5
    assert values[("watcher_probe_procs", "")] == 9  # _total is for counters
    assert values[("watcher_probe_runs_value", "")] == 2  # watcher_probe_runs is watcher's own
    assert values[("watcher_check_item_success", '/odd "quoted"\\path\nnewline')] == 0.0
    assert values[("watcher_check_error", "")] == 0.0
    odd = _exposition_with(_Model, [_result("x", "nagios", "ok", {"a": float("nan"), "b": -1e400})])
    assert 'watcher_probe_a{target="x",check="nagios"} NaN' in odd
    assert 'watcher_probe_b{target="x",check="nagios"} -Inf' in odd
    names = {n for n, _, _ in _samples(text)}
    # latency repeats the duration; days left are the expiry timestamp
    assert not any("latency" in n or "cert_days" in n for n in names)


@pytest.mark.parametrize(
    ("metric", "family", "factor"),
    [
        ("used_percent", "watcher_probe_used_ratio", 0.01),
        ("connect_s", "watcher_probe_connect_seconds", 1.0),
        ("rta_ms", "watcher_probe_rta_seconds", 1e-3),
        ("devices_total", "watcher_probe_devices", 1.0),
        ("status_code", "watcher_probe_status_code", 1.0),
        ("Backup Age (hours)", "watcher_probe_backup_age_seconds", 3600.0),
        ("pl%", "watcher_probe_pl_ratio", 0.01),
        ("%", "watcher_probe_percent", 1.0),
        ("s", "watcher_probe_s", 1.0),
        ("", "watcher_probe_value", 1.0),
    ],
)
def test_a_probe_metric_name_becomes_a_family_with_its_unit(
    metric: str, family: str, factor: float
) -> None:
    assert detail_name(metric) == (family, factor)


def test_detail_is_exported_only_for_the_checks_that_ask(tmp_path: Path) -> None:
    config = config_from(
        tmp_path,
        """
        site: acme
        targets:
          - name: srv000
            probes:
              - disk: {paths: [/, /var], detail_metrics: true}
              - command: {name: backup, run: ["true"]}
        """,
    )
    metrics = Metrics()
    metrics.watch_results(lambda: _site(2), lambda: config.model)
    text = metrics.exposition().decode()
    detailed = {(dict(labels)["target"], dict(labels)["check"]) for n, labels, _ in _samples(text)
                if n.startswith("watcher_probe_") and "target" in dict(labels)}  # fmt: skip
    assert detailed == {("srv000", "disk")}
    whole = config_from(tmp_path, "site: acme\nmetrics: {detail: true}\n")
    assert "watcher_probe_" in _exposition_with(whole.model)


def _exposition_with(model: object, results: list[Result] | None = None) -> str:
    metrics = Metrics()
    metrics.watch_results(lambda: results or _site(1), lambda: model)  # type: ignore[arg-type,return-value]
    return metrics.exposition().decode()


def test_the_shards_together_are_the_whole_with_no_overlap() -> None:
    results = _site(50) + ODD
    metrics = Metrics()
    metrics.watch_results(lambda: results, lambda: _Model)  # type: ignore[arg-type,return-value]
    whole = _samples(metrics.exposition().decode())
    for count in (1, 2, 4, 7):
        parts = [
            _samples(metrics.exposition(shard=parse_shard(f"{i}/{count}")).decode())
            for i in range(1, count + 1)
        ]
        union = [sample for part in parts for sample in part]
        assert sorted(union) == sorted(whole)  # nothing lost, nothing twice
        for part in parts:  # a target's checks stay together
            targets = {dict(labels).get("target") for _, labels, _ in part} - {None}
            others = {
                dict(labels).get("target") for p in parts if p is not part for _, labels, _ in p
            }
            assert not targets & others
    shard_two = metrics.exposition(shard=parse_shard("2/4")).decode()
    assert "watcher_scheduler_lag_seconds" not in shard_two  # watcher's own are in shard 1


@pytest.mark.parametrize(
    "text",
    ["0/4", "5/4", "1/0", "1", "a/b", "1/4/2", "-1/4", "1/1001", "", "\u0661/\u0664", "1/4\x00"],
)
def test_a_shard_that_is_not_i_of_n_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="shard must be I/N"):
        parse_shard(text)


def test_a_gzip_exposition_unpacks_to_the_same_text() -> None:
    metrics = Metrics()
    metrics.watch_results(lambda: _site(5))
    for shard in (None, parse_shard("3/4")):
        plain = metrics.exposition(shard=shard)
        assert gzip.decompress(metrics.exposition(gzip=True, shard=shard)) == plain


def test_removed_checks_are_forgotten_and_changed_results_rewritten() -> None:
    latest = _site(3)
    metrics = Metrics()
    metrics.watch_results(lambda: latest)
    assert 'target="srv001",check="backup"} 1' in metrics.exposition().decode()
    latest[:] = [r for r in latest if r.target != "srv002"]
    latest[-1] = _result("srv001", "backup", "fail", {})
    text = metrics.exposition().decode()
    assert 'target="srv002"' not in text
    assert 'watcher_check_success{target="srv001",check="backup"} 0' in text


@pytest.fixture
def served() -> Iterator[tuple[WebServer, list[Result]]]:
    results = _site(40)
    metrics = Metrics()
    metrics.watch_results(lambda: results)
    web = WebServer("127.0.0.1:0", api_token=None)
    web.route("GET", "/metrics", metrics.respond)
    web.start()
    yield web, results
    web.stop()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_bad_shard_gets_400_with_the_reason(served: tuple[WebServer, list[Result]]) -> None:
    web, _ = served
    assert _get(web.port, "/metrics?shard=1/4")[0] == 200
    status, body = _get(web.port, "/metrics?shard=9/4")
    assert status == 400 and "shard must be I/N" in body
    status, body = _get(web.port, "/metrics?shard=1/4&shard=2/4")
    assert status == 400 and "one shard" in body
    for hostile in ("%00", "1%2F" + "9" * 5000, "%D9%A1/%D9%A4", "1/4%0Ax"):
        status, body = _get(web.port, f"/metrics?shard={hostile}")
        assert status == 400 and "shard must be I/N" in body and len(body) < 200


def test_prometheus_scraping_four_shards_gets_every_series(
    served: tuple[WebServer, list[Result]],
) -> None:
    web, results = served
    address = f"127.0.0.1:{web.port}"
    prometheus = Prometheus(
        make_workdir("prometheus-shards"),
        [address],
        job="whole",
        extra_scrape_configs=[
            {
                "job_name": "watcher",
                "static_configs": [
                    {"targets": [address], "labels": {"__param_shard": f"{i}/4"}}
                    for i in range(1, 5)
                ],
                "relabel_configs": [{"source_labels": ["__param_shard"], "target_label": "shard"}],
            }
        ],
    ).start()
    try:
        expected = {n: len(_check_series_by(results, n)) for n in CHECK_FAMILIES}

        def counts(job: str) -> dict[str, float]:
            found = prometheus.query(f'count by (__name__) ({{job="{job}",check!=""}})')
            return {r["metric"]["__name__"]: float(r["value"][1]) for r in found}

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            counts("watcher") != expected or counts("whole") != expected
        ):
            time.sleep(0.5)
        assert counts("watcher") == expected == counts("whole")
        up = prometheus.query('up{job="watcher"}')
        assert sorted(r["metric"]["shard"] for r in up) == ["1/4", "2/4", "3/4", "4/4"]
        assert all(r["value"][1] == "1" for r in up)
        own = prometheus.query(
            'count by (shard) (watcher_scheduler_lag_seconds_count{job="watcher"})'
        )
        assert [r["metric"]["shard"] for r in own] == ["1/4"]
    finally:
        prometheus.stop()


def _check_series_by(results: list[Result], family: str) -> set[tuple[str, str]]:
    checks = {(r.target, r.probe) for r in results}
    if family.endswith("cert_expiry_timestamp_seconds"):
        checks = {(r.target, r.probe) for r in results if "cert_days_left" in r.metrics}
    return checks
