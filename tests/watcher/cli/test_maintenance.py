"""``watcher maintenance`` and /api/maintenance with and without a running daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.base import free_port
from tests.servers.httpd import HTTPTestServer
from tests.servers.mail import SmtpSink
from tests.support.daemon import Daemon
from tests.support.helpers import write_config
from watcher.cli.main import main

TOKEN = "tok-51c3e8a9d0"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``watcher maintenance ...`` as its own process (the config reads the token from the environment)."""
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", "maintenance", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
        env={**os.environ, "WATCHER_API_TOKEN": TOKEN},
    )


def site(tmp_path: Path, port: int, http: HTTPTestServer, sink: SmtpSink, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{port}
        api_token: "${{WATCHER_API_TOKEN}}"
        smtp: {{host: 127.0.0.1, port: {sink.port}}}
        contacts: {{hotline: [{{email: emergency@support.example}}], escalation: []}}
        integrations:
          tickets: [{{email: {{to: [support@helpdesk.example]}}}}]
          paging: [{{email: {{to: hotline}}}}]
        defaults: {{interval: 300ms, timeout: 2s}}
        rules: [default, fast.yml]
        targets:
          - name: shop
            labels: {{role: web}}
            probes: [{{http: {{url: "{http.url_for("/")}"}}}}]
          - name: intranet
            probes: [{{http: {{url: "{http.url_for("/intranet")}"}}}}]
        {extra}
        """,
        extra={
            "fast.yml": "rules:\n  - {name: http-down, probe: http, when: failed, after: 2, priority: P1, summary: '{target}: down'}\n"
        },
    )


def test_the_cli_adds_lists_and_removes_windows_without_a_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        """
        site: acme
        state: state.db
        targets:
          - {name: db1, labels: {role: db}, probes: [{tcp: {host: 127.0.0.1, port: 9}}]}
        maintenance:
          - {name: nightly, targets: [db1], cron: "0 2 * * *", duration: 1h, reason: backups}
        """,
    )
    c = str(config)
    assert (
        main(
            [
                "maintenance",
                "add",
                "upgrade",
                "--target",
                "db1",
                "--duration",
                "2h",
                "--reason",
                "PG 16",
                "-c",
                c,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "maintenance",
                "add",
                "lab",
                "--label",
                "role=db",
                "--days",
                "sat,sun",
                "--from",
                "22:00",
                "--to",
                "06:00",
                "-c",
                c,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "maintenance",
                "add",
                "later",
                "--target",
                "db*",
                "--start",
                "+1d",
                "--duration",
                "30m",
                "-c",
                c,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["maintenance", "list", "--json", "-c", c]) == 0
    views = json.loads(capsys.readouterr().out)
    assert [(v["id"], v["name"], v["source"], v["state"]) for v in views] == [
        (None, "nightly", "config", views[0]["state"]),
        (1, "upgrade", "store", "active"),
        (2, "lab", "store", views[2]["state"]),
        (3, "later", "store", "upcoming"),
    ]
    assert views[1]["reason"] == "PG 16" and views[1]["spec"]["duration"] == "2h"
    assert main(["maintenance", "remove", "1", "--by", "asha", "-c", c]) == 0
    assert main(["maintenance", "remove", "1", "-c", c]) == 1  # removed already
    capsys.readouterr()
    assert main(["maintenance", "list", "--all", "--json", "-c", c]) == 0
    views = {v["name"]: v for v in json.loads(capsys.readouterr().out)}
    assert views["upgrade"]["state"] == "removed" and "by asha" in views["upgrade"]["when"]
    assert main(["maintenance", "-c", c]) == 0  # plain: lists
    assert "nightly" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["x", "--target", "nosuch", "--duration", "1h"], "'nosuch' matches no target"),
        (["x", "--target", "db1"], "needs end: or duration:"),
        (
            ["x", "--target", "db1", "--duration", "1h", "--cron", "61 * * * *"],
            "outside the minute field",
        ),
        (["x", "--duration", "1h"], "needs targets:"),
        (["x", "--target", "db1", "--from", "22:00"], "needs both from: and to:"),
        (["x", "--target", "db1", "--from", "25:00", "--to", "01:00"], "not a time of day"),
        (["x", "--target", "db1", "--start", "tomorrow", "--duration", "1h"], "not a time"),
        (
            ["x", "--target", "db1", "--duration", "1h", "--timezone", "Mars/Base"],
            "unknown timezone",
        ),
        (["x", "--label", "role", "--duration", "1h"], "write KEY=VALUE"),
    ],
)
def test_the_cli_refuses_a_bad_window_with_a_reason(
    args: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        "site: acme\nstate: state.db\ntargets: [{name: db1, probes: [{tcp: {host: 127.0.0.1, port: 9}}]}]\n",
    )
    assert main(["maintenance", "add", *args, "-c", str(config)]) == 2
    assert problem in capsys.readouterr().err


def test_windows_from_the_api_and_the_cli_hold_a_running_daemon_s_notifications(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    port = free_port()
    config = site(tmp_path, port, http_server, smtp_sink)
    daemon = Daemon(config, port, env={"WATCHER_API_TOKEN": TOKEN}).start()
    try:
        window = {
            "name": "shop-release",
            "targets": ["shop"],
            "duration": "1h",
            "reason": "release 4.2",
            "by": "asha",
        }
        assert daemon.post("/api/maintenance", window)[0] == 401
        assert daemon.post("/api/maintenance", window, token="not-the-token")[0] == 401
        status, body = daemon.post(
            "/api/maintenance",
            {"name": "bad", "targets": ["nosuch"], "duration": "1h"},
            token=TOKEN,
        )
        assert status == 400 and "matches no target" in json.loads(body)["error"]
        status, body = daemon.post("/api/maintenance", window, token=TOKEN)
        assert status == 201, body
        created = json.loads(body)
        assert (created["state"], created["created_by"], created["reason"]) == (
            "active",
            "asha",
            "release 4.2",
        )
        listed = json.loads(daemon.get("/api/maintenance")[1])
        assert [w["name"] for w in listed] == ["shop-release"]
        assert [w["name"] for w in json.loads(cli(config, "list", "--json").stdout)] == [
            "shop-release"
        ]

        http_server.set_response("/", status=500, body="release in progress")

        def incident() -> dict | None:
            items = json.loads(daemon.get("/api/incidents?state=open")[1])
            return items[0] if items else None

        held = daemon.wait_for(
            lambda: (i := incident()) and i["suppressed"] == "maintenance" and i,
            30,
            "a held incident",
        )
        assert held["suppressed_why"].startswith("maintenance 'shop-release' until ")
        assert "maintenance" in daemon.get("/")[1] and "Maintenance now" in daemon.get("/")[1]
        assert smtp_sink.messages == []

        # the release overran; the CLI ends the window while the daemon runs
        done = cli(config, "remove", str(created["id"]), "--by", "ravi")
        assert done.returncode == 0, done.stderr
        smtp_sink.wait_for_messages(2, timeout=30)
        daemon.wait_for(lambda: incident()["suppressed"] is None, 30, "the release")
        subjects = sorted(m.subject.split(" ")[0] for m in smtp_sink.messages)
        assert subjects == ["[Emergency]", "[P1][acme]"]

        # a new window from the CLI holds it again; the API ends it; nothing is sent twice
        done = cli(config, "add", "hotfix", "--target", "shop", "--duration", "30m")
        assert done.returncode == 0, done.stderr
        daemon.wait_for(lambda: incident()["suppressed"] == "maintenance", 30, "held again")
        window_id = json.loads(cli(config, "list", "--json").stdout)[0]["id"]
        request_path = f"/api/maintenance/{window_id}"
        assert _delete(daemon, request_path, None)[0] == 401
        assert _delete(daemon, request_path, TOKEN) == (200, {"removed": window_id})
        assert _delete(daemon, request_path, TOKEN)[0] == 404
        daemon.wait_for(lambda: incident()["suppressed"] is None, 30, "released again")
        checked = json.loads(daemon.get("/api/results")[1])[0]["at"]
        daemon.wait_for(
            lambda: json.loads(daemon.get("/api/results")[1])[0]["at"] > checked,
            30,
            "another round",
        )
        assert len(smtp_sink.messages) == 2
    finally:
        assert daemon.stop() == 0
    assert TOKEN not in daemon.log()


def _delete(daemon: Daemon, path: str, token: str | None) -> tuple[int, object]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(daemon.url(path), method="DELETE")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def tokenless(tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink) -> Iterator[Daemon]:
    port = free_port()
    config = site(tmp_path, port, http_server, smtp_sink)
    config.write_text(config.read_text().replace('api_token: "${WATCHER_API_TOKEN}"\n', ""))
    daemon = Daemon(config, port).start()
    yield daemon
    daemon.stop()


def test_the_maintenance_api_is_off_without_an_api_token(tokenless: Daemon) -> None:
    status, body = tokenless.post(
        "/api/maintenance", {"name": "x", "targets": ["shop"], "duration": "1h"}
    )
    assert status == 403 and "api_token" in json.loads(body)["error"]
    assert _delete(tokenless, "/api/maintenance/1", None)[0] == 403
    assert tokenless.get("/api/maintenance") == (200, "[]\n")
